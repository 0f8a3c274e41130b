"""The cohort vocabulary: groups, sex codes, the cohort table's reader and the case/control label."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .errors import PhenofaceError

GROUPS = ("case", "control")
#: Sex codes, in the order tables and figures list them.
SEXES = ("M", "F")
#: Columns of results/cohort/cohort.csv, in order.
COHORT_COLUMNS = ["image_id", "group", "age", "sex", "subject_id", "stratum"]
_TEXT_COLUMNS = ("image_id", "group", "sex", "subject_id", "stratum")


def case_labels(groups: Iterable[str]) -> np.ndarray:
    """1 for ``case``, 0 for ``control`` (int); any other group is an error."""
    values = pd.Series(list(groups), dtype="object").astype(str)
    unknown = sorted(set(values) - set(GROUPS))
    if unknown:
        raise PhenofaceError(f"group value(s) {unknown} are not case/control; check the cohort or sheet")
    return (values == "case").to_numpy(dtype=int)


def read_cohort(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check ``cohort.csv``: text ids and labels (blank, not NaN), integer ages.

    An empty sex is a control of unknown sex (an age-only bin of a pool
    without sex): it enters the "all" analyses and no per-sex cell.
    """
    if not os.path.isfile(path):
        raise PhenofaceError(f"cohort table {path} not found; run sample_matched_controls")
    table = pd.read_csv(path, dtype={column: str for column in _TEXT_COLUMNS}, keep_default_na=False)
    missing = set(COHORT_COLUMNS) - set(table.columns) - {"subject_id"}
    if missing:
        raise PhenofaceError(f"{path}: missing columns {sorted(missing)}; rerun sample_matched_controls")
    for column, allowed in (("group", GROUPS), ("sex", SEXES + ("",))):
        bad = table[~table[column].isin(allowed)]
        if len(bad):
            raise PhenofaceError(
                f"{path}: row of image {bad.iloc[0]['image_id']!r} has {column} {bad.iloc[0][column]!r}; "
                f"expected one of {list(allowed)}"
            )
    ages = pd.to_numeric(table["age"], errors="coerce")
    if ages.isna().any():
        first = table.loc[ages.isna(), "image_id"].iloc[0]
        raise PhenofaceError(f"{path}: image {first!r} has no numeric age; fix the sample sheet")
    duplicated = table["image_id"][table["image_id"].duplicated()]
    if len(duplicated):
        raise PhenofaceError(f"{path}: image {duplicated.iloc[0]!r} appears twice in the cohort")
    table["age"] = ages.astype(int)
    return table
