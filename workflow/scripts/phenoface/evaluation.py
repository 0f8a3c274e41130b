"""Held-out evaluation of the trained head: predictions, headline metrics, external sets and warnings."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import audit, stats
from .cohort import case_labels
from .errors import PhenofaceError
from .runtime import make_rng
from .split import feature_rows

LOGGER = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["image_id", "group", "y_true", "prob", "pred", "split", "sex", "age"]
#: Fewer test cases or controls than this earns a warning about wide intervals.
MIN_TEST_PER_CLASS = 30
#: Train AUC above test AUC by more than this earns an overfitting warning.
OVERFIT_GAP = 0.10
#: Repeat AUC SD above this earns a warning that one split is not representative.
REPEAT_SD_WARN = 0.05


def predict_all(split_table: pd.DataFrame, probs: np.ndarray, threshold: float) -> pd.DataFrame:
    """The predictions table of every cohort image (train and test)."""
    table = split_table.copy()
    table["y_true"] = case_labels(table["group"])
    table["prob"] = np.asarray(probs, dtype=float)
    table["pred"] = (table["prob"] >= threshold).astype(int)
    return table[PREDICTION_COLUMNS]


def baselines_summary(baselines: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """metrics.json's ``baselines`` object: AUC, CI and status per baseline."""
    summary = {}
    for row in baselines.to_dict("records"):
        summary[row["baseline"]] = {
            "auc": row["auc"],
            "auc_ci_low": row["auc_ci_low"],
            "auc_ci_high": row["auc_ci_high"],
            "n_test": row["n_test"],
            "status": row["status"],
        }
    return summary


def repeats_summary(path: str | Path | None) -> dict[str, Any] | None:
    """metrics.json's ``repeats`` object from repeats.csv (None when not run)."""
    if not path:
        return None
    table = pd.read_csv(path, dtype={"repeat": str})
    runs = table[table["repeat"].str.isdigit()]
    summary: dict[str, Any] = stats.summarise_repeats(runs["auc"].astype(float).tolist())
    summary["seeds"] = [int(s) for s in runs["seed"]]
    return summary


def evaluation_warnings(
    metrics: dict[str, Any], subgroups: pd.DataFrame, baselines: pd.DataFrame, warn_auc: float, age_sex_range
) -> list[str]:
    """Every warning sentence for metrics.json, audits first."""
    warnings = audit.baseline_warnings(baselines, warn_auc, tuple(age_sex_range))
    smaller = min(metrics["n_test_case"], metrics["n_test_control"])
    if smaller < MIN_TEST_PER_CLASS:
        warnings.append(
            f"The test set holds only {metrics['n_test_case']} cases and {metrics['n_test_control']} controls; "
            "confidence intervals are wide and the AUC is imprecise."
        )
    if math.isfinite(metrics["auc_train"]) and metrics["auc_train"] - metrics["auc"] > OVERFIT_GAP:
        warnings.append(
            f"Training-half AUC {metrics['auc_train']:.2f} exceeds the test AUC {metrics['auc']:.2f} by more "
            f"than {OVERFIT_GAP:.2f}: the head overfits."
        )
    descriptor = metrics["baselines"].get("descriptor", {})
    if descriptor.get("status") == "ok" and descriptor["auc"] > metrics["auc"]:
        warnings.append(
            f"A logistic regression on the 128-d dlib descriptor (AUC {descriptor['auc']:.2f}) does better "
            f"than the trained head (AUC {metrics['auc']:.2f})."
        )
    repeats = metrics.get("repeats")
    if repeats and math.isfinite(repeats.get("auc_sd", math.nan)) and repeats["auc_sd"] > REPEAT_SD_WARN:
        warnings.append(
            f"Across {repeats['n']} repeated splits the test AUC varies with SD {repeats['auc_sd']:.3f} "
            f"(range {repeats['auc_min']:.2f}-{repeats['auc_max']:.2f}): one split's AUC is not representative."
        )
    for row in subgroups.itertuples(index=False):
        if row.note.startswith("only"):
            warnings.append(
                f"Subgroup {row.variable}={row.subgroup} holds {row.note}; it is left out of subgroup AUCs."
            )
    return warnings


def score_external_sets(
    head,
    names: Sequence[str],
    feature_paths: Sequence[str],
    label_paths: Sequence[str],
    key: str,
    threshold,
    confidence,
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Score each external labelled set; one table row and one json object per set."""
    if not (len(names) == len(feature_paths) == len(label_paths)):
        raise ValueError("external names, feature files and label tables must be aligned")
    results: dict[str, dict] = {}
    for name, features_path, labels_path in zip(names, feature_paths, label_paths):
        labels_table = pd.read_csv(labels_path, dtype={"image_id": str, "group": str}, keep_default_na=False)
        features = feature_rows(features_path, labels_table["image_id"], key)
        summary = audit.score_external(
            head,
            features,
            case_labels(labels_table["group"]),
            threshold=threshold,
            confidence=confidence,
        )
        LOGGER.info("external %s: AUC %.3f on %d images", name, summary["auc"], summary["n"])
        results[name] = summary
    rows = [{"external": name, **summary} for name, summary in results.items()]
    columns = ["external", "n", "n_case", "n_control", "auc", "auc_ci_low", "auc_ci_high", "auc_se", "accuracy",
               "sensitivity", "specificity", "ppv", "npv", "brier"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns), results


def headline_metrics(
    predictions: pd.DataFrame,
    confidence: float,
    threshold: float,
    n_bootstrap: int,
    seed: int,
    source: str = "the split table",
) -> dict[str, Any]:
    """Test-half AUC (DeLong, bootstrap cross-check), rates at ``threshold`` and counts."""
    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    train = predictions[predictions["split"] == "train"]
    y_test, p_test = test["y_true"].to_numpy(), test["prob"].to_numpy()
    if np.unique(y_test).size < 2:
        raise PhenofaceError(
            f"{source}: the test split holds {len(test)} image(s) of one group only; "
            "evaluation needs cases and controls in it. Check the cohort and split.test_fraction."
        )
    summary = stats.classification_summary(y_test, p_test, threshold, confidence)
    metrics: dict[str, Any] = {
        key: value for key, value in summary.items() if key not in ("n", "n_case", "n_control")
    }
    replicates = stats.stratified_bootstrap(y_test, p_test, stats.auc_score, make_rng(seed), n_bootstrap)
    boot_low, boot_high = stats.bootstrap_ci(replicates, confidence)
    metrics.update(
        {
            "auc_ci_method": "DeLong (fast midrank), Wald interval",
            "auc_bootstrap_ci_low": boot_low,
            "auc_bootstrap_ci_high": boot_high,
            "auc_train": stats.auc_score(train["y_true"].to_numpy(), train["prob"].to_numpy()),
            "proportion_ci_method": "Wilson score",
            "n_test": summary["n"],
            "n_test_case": summary["n_case"],
            "n_test_control": summary["n_control"],
            "n_train": int(len(train)),
            "threshold": threshold,
            "confidence": confidence,
            "seed": seed,
        }
    )
    LOGGER.info(
        "test set: %s; accuracy %.3f",
        stats.auc_delong(y_test, p_test, confidence).label(confidence),
        metrics["accuracy"],
    )
    return metrics
