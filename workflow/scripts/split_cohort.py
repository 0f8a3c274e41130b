"""Rule split_cohort: train and test halves, stratified, with each person on one side."""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenoface import io
from phenoface.cohort import read_cohort
from phenoface.split import align_features, split_cohort

LOGGER = logging.getLogger("split_cohort")


def read_descriptors(path: str | Path, image_ids: Sequence[str]) -> np.ndarray:
    """The face descriptors of ``image_ids``, in that order."""
    with np.load(path, allow_pickle=False) as data:
        rows = align_features(list(image_ids), data["image_id"].astype(str).tolist(), source=str(path))
        return np.asarray(data["descriptor"], dtype=np.float32)[rows]


def run(inputs: Mapping[str, Any], outputs: Mapping[str, Any], params: Any) -> pd.DataFrame:
    """Split the cohort and write the table and the identity report; return the table."""
    cohort = read_cohort(inputs["cohort"])
    descriptors = read_descriptors(inputs["features"], cohort["image_id"])
    table, report = split_cohort(
        cohort,
        descriptors,
        test_fraction=params.test_fraction,
        threshold=params.identity_threshold,
        age_bins=params.age_bins,
        seed=params.seed,
        linkage=params.linkage,
    )
    io.write_table(outputs["table"], table)
    io.write_json(outputs["report"], report)
    LOGGER.info(
        "wrote %s (%d train, %d test)", outputs["table"], report["counts"]["train"], report["counts"]["test"]
    )
    return table


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
