"""Split the cohort into train and test halves, keeping each person on one side.

Snakemake entry script of rule ``split_cohort``. Inputs: ``cohort``
(results/cohort/cohort.csv), ``features`` (results/features/features.npz,
for the 128-d face descriptors). Params: ``split`` (the config's split
section: ``test_fraction``, ``identity_threshold``, ``linkage``),
``age_bins``, ``seed``. Outputs: ``table`` (results/split/cohort_split.csv:
the cohort rows plus ``identity_group`` and ``split``) and ``report``
(results/split/identity_clusters.json). Log: ``log[0]``.
"""

# No `from __future__` import: Snakemake prepends its preamble to entry scripts.
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from phenoface import io
from phenoface.errors import PhenofaceError
from phenoface.runtime import setup_logging
from phenoface.split import align_features, split_cohort

LOGGER = logging.getLogger("split_cohort")

TEXT_COLUMNS = {"image_id": str, "group": str, "sex": str, "subject_id": str}


def read_cohort(path: str | Path) -> pd.DataFrame:
    """Read the cohort table; ids, group, sex and subject ids stay text (blank, not NaN)."""
    if not Path(path).is_file():
        raise PhenofaceError(f"cohort table {path} not found; run sample_matched_controls")
    return pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values={"age": [""]})


def read_descriptors(path: str | Path, image_ids: Sequence[str]) -> np.ndarray:
    """The face descriptors of ``image_ids``, in that order."""
    with np.load(path, allow_pickle=False) as data:
        rows = align_features(list(image_ids), data["image_id"].astype(str).tolist(), source=str(path))
        return np.asarray(data["descriptor"], dtype=np.float32)[rows]


def run(
    cohort_path: str | Path,
    features_path: str | Path,
    outputs: Mapping[str, str | Path],
    split_config: Mapping[str, Any],
    age_bins: Sequence[int],
    seed: int,
) -> pd.DataFrame:
    """Split the cohort and write the table and the identity report; return the table."""
    cohort = read_cohort(cohort_path)
    descriptors = read_descriptors(features_path, cohort["image_id"])
    table, report = split_cohort(
        cohort,
        descriptors,
        test_fraction=float(split_config.get("test_fraction", 0.5)),
        threshold=float(split_config.get("identity_threshold", 0.6)),
        age_bins=[int(edge) for edge in age_bins],
        seed=seed,
        linkage=str(split_config.get("linkage", "complete")),
    )
    io.write_table(outputs["table"], table)
    io.write_json(outputs["report"], report)
    LOGGER.info(
        "wrote %s (%d train, %d test)",
        outputs["table"],
        report["counts"]["train"],
        report["counts"]["test"],
    )
    return table


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Entry point: the only place that touches ``snakemake``."""
    setup_logging(snakemake.log[0])
    run(
        cohort_path=snakemake.input.cohort,
        features_path=snakemake.input.features,
        outputs={"table": snakemake.output.table, "report": snakemake.output.report},
        split_config=dict(snakemake.params.split),
        age_bins=list(snakemake.params.age_bins),
        seed=int(snakemake.params.seed),
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
