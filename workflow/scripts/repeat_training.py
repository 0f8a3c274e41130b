"""Rule repeat_training: split + training repeated with seeds derived from the master seed.

One split's test AUC depends on which people fell in the test half; the
spread over repeats says how much.
"""

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from phenoface import audit, io, stats
from phenoface.runtime import describe_device

LOGGER = logging.getLogger("repeat_training")

#: Columns split_cohort adds; dropped so the split table becomes the cohort again.
SPLIT_COLUMNS = ("split", "identity_group", "stratum")


def summary_rows(summary: Mapping[str, float]) -> pd.DataFrame:
    """The AUC mean, SD, min and max as rows appended below the repeats."""
    return pd.DataFrame(
        {"repeat": name, "auc": summary[f"auc_{name}"]} for name in ("mean", "sd", "min", "max")
    )


def run(inputs: Mapping[str, Any], outputs: Mapping[str, Any], params: Any) -> pd.DataFrame:
    """Run every repeat and write the table; return it."""
    from phenoface.model import HEAD_INPUT, HeadConfig, predict_head, train_head
    from phenoface.split import align_features, read_split_table, split_cohort

    LOGGER.info(describe_device())
    split_table = read_split_table(inputs["split"])
    cohort = split_table.drop(columns=[c for c in SPLIT_COLUMNS if c in split_table.columns])
    with np.load(inputs["features"], allow_pickle=False) as data:
        rows = align_features(
            list(cohort["image_id"]), data["image_id"].astype(str).tolist(), inputs["features"]
        )
        descriptors = np.asarray(data["descriptor"])[rows]
        features = np.asarray(data[HEAD_INPUT])[rows]
    head_config = HeadConfig.from_params(params)

    def split(table: pd.DataFrame, seed: int) -> pd.DataFrame:
        return split_cohort(
            table,
            descriptors,
            test_fraction=params.test_fraction,
            threshold=params.identity_threshold,
            age_bins=params.age_bins,
            seed=seed,
            linkage=params.linkage,
        )[0]

    def train(x: np.ndarray, y: np.ndarray, seed: int):
        return train_head(x, y, head_config, seed)[0]

    seeds = stats.derive_seeds(params.seed, params.repeats)
    LOGGER.info("%d repeats, seeds %s", len(seeds), seeds)
    table, summary = audit.run_repeats(cohort, features, seeds, split, train, predict_head)
    LOGGER.info(
        "test AUC over %d repeats: mean %.3f, SD %.3f, range %.3f-%.3f",
        summary["n"],
        summary["auc_mean"],
        summary["auc_sd"],
        summary["auc_min"],
        summary["auc_max"],
    )
    table = pd.concat([table.astype({"repeat": str}), summary_rows(summary)], ignore_index=True)
    table = table.astype({"seed": "Int64", "n_train": "Int64", "n_test": "Int64"})
    io.write_table(outputs["repeats"], table)
    return table


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
