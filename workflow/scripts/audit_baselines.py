"""Rule audit_baselines: baselines and shortcut audits on the classifier's own train/test split."""

import logging
from typing import Any

import numpy as np
import pandas as pd

from phenoface import audit, io, plots_eval, stats
from phenoface.qc import read_qc
from phenoface.split import feature_rows, read_split_table

LOGGER = logging.getLogger("audit_baselines")


def reference_audit(
    split_table: pd.DataFrame, features_path: str, head_path: str, reference_path: str, confidence: float
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, stats.AucResult]]:
    """Score the second healthy sheet and the held-out pool controls with the trained head."""
    from phenoface.model import HEAD_INPUT, load_model, predict_head

    head = load_model(head_path)
    controls = split_table[(split_table["split"] == "test") & (split_table["group"] == "control")]
    control_probs = predict_head(head, feature_rows(features_path, controls["image_id"], HEAD_INPUT))
    with np.load(reference_path, allow_pickle=False) as data:
        reference_probs = predict_head(head, np.asarray(data[HEAD_INPUT]))
    result = audit.reference_separation(control_probs, reference_probs, confidence)
    LOGGER.info(
        "reference sheet (%d images) vs %d test controls: %s",
        len(reference_probs),
        len(control_probs),
        result.label(confidence),
    )
    labels = np.concatenate([np.zeros(len(control_probs), int), np.ones(len(reference_probs), int)])
    scores = np.concatenate([control_probs, reference_probs])
    return audit.reference_row(result, len(reference_probs), len(control_probs)), (labels, scores, result)


def run(inputs: dict[str, Any], outputs: dict[str, str], params: Any) -> pd.DataFrame:
    """Compute every baseline, write the outputs, return the baselines table."""
    confidence = params.confidence
    split_table = read_split_table(inputs["split"])
    descriptors = feature_rows(inputs["features"], split_table["image_id"], "descriptor")
    qc = read_qc(inputs["qc"])
    cohort_qc = qc[qc["image_id"].isin(set(split_table["image_id"]))]
    LOGGER.info("image statistics for %d cohort images", len(cohort_qc))
    image_stats = audit.collect_image_statistics(cohort_qc)
    baselines, predictions = audit.run_baselines(
        split_table,
        descriptors,
        image_stats,
        params.seed,
        confidence,
        matched=tuple(params.match_on),
    )

    curves = {
        name: (predictions["y_true"].to_numpy(), predictions[name].to_numpy(), None)
        for name in ("descriptor", "age_sex", "image_statistics")
    }
    for row in baselines.itertuples(index=False):
        y, scores, _ = curves[row.baseline]
        curves[row.baseline] = (y, scores, stats.auc_delong(y, scores, confidence))
    if inputs.get("reference_features"):
        row, curve = reference_audit(
            split_table, inputs["features"], inputs["head"], inputs["reference_features"], confidence
        )
        curves["reference_sheet vs test controls"] = curve
    else:
        LOGGER.info("audit.reference_sheet not configured: reference-sheet audit skipped")
        row = audit.reference_row(None, 0, 0)
    baselines = pd.concat([baselines, pd.DataFrame([row])], ignore_index=True)[audit.BASELINE_COLUMNS]

    io.write_table(outputs["baselines"], baselines)
    io.write_table(outputs["image_stats"], image_stats)
    figure = plots_eval.plot_roc(curves, title="Baselines and audits, held-out test set")
    io.save_figure(outputs["roc_png"], figure, dpi=150)
    return baselines


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
