"""Gather every strength of the power analysis into its tables and figures (rule summarize_power).

Inputs (one file per repeat x strength, in the order of ``params.runs``):
``metrics`` (evaluation/metrics.json), ``shape_tests`` (faces/shape_tests.csv),
``cohort`` (cohort.csv), ``region_tests`` (explain/region_tests.csv),
``landmark_tests`` (faces/landmark_tests.csv), ``morphometry``
(faces/morphometry.json). Params: ``runs`` (``[repeat, strength]`` pairs),
``min_detection_rate``, ``confidence``. Outputs: ``table`` (power.csv),
``summary`` (power.json), ``figure`` (power.png), ``regions``
(power_regions.csv), ``regions_png``, ``landmarks`` (power_landmarks.csv).
"""

import json
import logging

import pandas as pd


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Build power.csv/json/png and the evidence tables."""
    from phenoface import io, plots_power, power
    from phenoface.runtime import setup_logging
    from phenoface.stats import json_ready

    setup_logging(snakemake.log[0])
    log = logging.getLogger("summarize_power")
    inputs = snakemake.input
    rows, regions, landmarks = [], [], []
    for index, (repeat, strength) in enumerate(snakemake.params.runs):
        strength = float(strength)
        metrics = json.loads(open(inputs.metrics[index]).read())
        shape_tests = pd.read_csv(
            inputs.shape_tests[index], keep_default_na=False, na_values={"diff": [""], "p_perm": [""]}
        )
        cohort = pd.read_csv(inputs.cohort[index], dtype={"group": str}, keep_default_na=False)
        rows.append(power.power_row(strength, repeat, metrics, shape_tests, cohort))
        regions.append(power.region_share_rows(strength, repeat, pd.read_csv(inputs.region_tests[index])))
        landmark_tests = pd.read_csv(inputs.landmark_tests[index], keep_default_na=False)
        summary = json.loads(open(inputs.morphometry[index]).read())
        landmarks.append(power.landmark_rows(strength, repeat, landmark_tests, summary))
    table = power.power_table(rows)
    detection = power.detection_summary(table, float(snakemake.params.min_detection_rate))
    for row in detection["by_strength"]:
        log.info(
            "strength %s: AUC %.3f [%.3f, %.3f], detected in %.0f%% of %d repeat(s)",
            power.strength_label(row["strength"]),
            row["auc_mean"],
            row["auc_ci_low_mean"],
            row["auc_ci_high_mean"],
            100 * row["detection_rate"],
            row["repeats"],
        )
    for sentence in detection["warnings"]:
        log.warning(sentence)
    region_table = pd.concat(regions, ignore_index=True)
    io.write_table(snakemake.output.table, table)
    io.write_table(snakemake.output.regions, region_table)
    io.write_table(snakemake.output.landmarks, pd.concat(landmarks, ignore_index=True))
    io.write_json(snakemake.output.summary, json_ready(detection))
    confidence = float(snakemake.params.confidence)
    io.save_figure(
        snakemake.output.figure, plots_power.plot_power(table, detection["threshold"], confidence), dpi=150
    )
    io.save_figure(snakemake.output.regions_png, plots_power.plot_region_shift(region_table), dpi=150)


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
