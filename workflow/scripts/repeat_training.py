"""Repeat split + training with seeds derived from the master seed.

One split's test AUC depends on which people fell in the test half; this
rule redoes the split and the training ``evaluation.repeats`` times and
reports the spread of the test AUC.

Snakemake entry script of rule ``repeat_training``. Inputs: ``split``
(results/split/cohort_split.csv, whose rows are the cohort), ``features``
(results/features/features.npz). Params: ``seed``, ``repeats``,
``age_bins``, ``split`` (the config's split section) and ``training`` (the
config's head hyper-parameters). Output: ``repeats`` (csv: one row per
repeat, then rows ``mean``, ``sd``, ``min``, ``max`` of the AUC).
Log: ``log[0]``.
"""


import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from phenoface import audit, io, stats
from phenoface.runtime import describe_device, setup_logging

LOGGER = logging.getLogger("repeat_training")

#: Columns split_cohort adds; dropped so the split table becomes the cohort again.
SPLIT_COLUMNS = ("split", "identity_group", "stratum")


def summary_rows(summary: Mapping[str, float]) -> pd.DataFrame:
    """The AUC mean, SD, min and max as rows appended below the repeats."""
    return pd.DataFrame(
        {"repeat": name, "auc": summary[f"auc_{name}"]} for name in ("mean", "sd", "min", "max")
    )


def run(inputs: dict[str, str], output: str | Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """Run every repeat and write the table; return it."""
    from phenoface.model import HEAD_INPUT, HeadConfig, predict_head, train_head
    from phenoface.split import align_features, read_split_table, split_cohort

    split_table = read_split_table(inputs["split"])
    cohort = split_table.drop(columns=[c for c in SPLIT_COLUMNS if c in split_table.columns])
    with np.load(inputs["features"], allow_pickle=False) as data:
        rows = align_features(
            list(cohort["image_id"]), data["image_id"].astype(str).tolist(), inputs["features"]
        )
        descriptors = np.asarray(data["descriptor"])[rows]
        features = np.asarray(data[HEAD_INPUT])[rows]
    split_config = dict(params.get("split") or {})
    head_config = HeadConfig.from_mapping(dict(params.get("training") or {}))
    age_bins = [int(edge) for edge in params["age_bins"]]

    def split(table: pd.DataFrame, seed: int) -> pd.DataFrame:
        return split_cohort(
            table,
            descriptors,
            test_fraction=float(split_config.get("test_fraction", 0.5)),
            threshold=float(split_config.get("identity_threshold", 0.6)),
            age_bins=age_bins,
            seed=seed,
            linkage=str(split_config.get("linkage", "complete")),
        )[0]

    def train(x: np.ndarray, y: np.ndarray, seed: int):
        return train_head(x, y, head_config, seed)[0]

    seeds = stats.derive_seeds(int(params["seed"]), int(params["repeats"]))
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
    io.write_table(output, table)
    return table


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Entry point: the only place that touches ``snakemake``."""
    setup_logging(snakemake.log[0])
    logging.getLogger("repeat_training").info(describe_device())
    run(
        {"split": snakemake.input.split, "features": snakemake.input.features},
        snakemake.output.repeats,
        dict(snakemake.params.items()),
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
