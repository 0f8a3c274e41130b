"""Rule evaluate_classifier: the trained head on the held-out half, and the headline metrics.json."""

import logging
from typing import Any

import pandas as pd

from phenoface import io, plots_eval, stats
from phenoface.evaluation import (
    baselines_summary,
    evaluation_warnings,
    headline_metrics,
    predict_all,
    repeats_summary,
    score_external_sets,
)
from phenoface.split import feature_rows, read_split_table

LOGGER = logging.getLogger("evaluate_classifier")


def run(inputs: dict[str, Any], outputs: dict[str, str], params: Any) -> dict[str, Any]:
    """Evaluate, write every output and return the metrics object."""
    from phenoface.model import HEAD_INPUT, load_model, predict_head

    threshold, confidence = params.threshold, params.confidence
    split_table = read_split_table(inputs["split"])
    features = feature_rows(inputs["features"], split_table["image_id"], HEAD_INPUT)
    head = load_model(inputs["head"])
    predictions = predict_all(split_table, predict_head(head, features), threshold)
    metrics = headline_metrics(
        predictions, confidence, threshold, params.n_bootstrap, params.seed, inputs["split"]
    )
    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    y_test, p_test = test["y_true"].to_numpy(), test["prob"].to_numpy()
    subgroups = stats.subgroup_metrics(test, params.age_bins, threshold, confidence)
    calibration = stats.calibration_table(y_test, p_test, params.calibration_bins)
    baselines = pd.read_csv(inputs["baselines"], keep_default_na=False, na_values=[""])
    metrics["baselines"] = baselines_summary(baselines)
    metrics["repeats"] = repeats_summary(inputs.get("repeats"))
    external_table, metrics["external"] = score_external_sets(
        head,
        params.external_names,
        inputs.get("external_features", []),
        inputs.get("external_labels", []),
        HEAD_INPUT,
        threshold,
        confidence,
    )
    metrics["warnings"] = evaluation_warnings(
        metrics, subgroups, baselines, params.warn_auc, params.age_sex_range
    )
    for sentence in metrics["warnings"]:
        LOGGER.warning(sentence)

    io.write_table(outputs["predictions"], predictions)
    io.write_table(outputs["subgroups"], subgroups)
    io.write_table(outputs["calibration"], calibration)
    io.write_table(outputs["external"], external_table)
    result = stats.auc_delong(y_test, p_test, confidence)
    io.save_figure(outputs["roc_png"], plots_eval.plot_roc({"classifier": (y_test, p_test, result)}), dpi=150)
    io.save_figure(
        outputs["calibration_png"],
        plots_eval.plot_calibration(calibration, p_test, metrics["brier"]),
        dpi=150,
    )
    io.write_json(outputs["metrics"], stats.json_ready(metrics))
    return metrics


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
