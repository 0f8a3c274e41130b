"""Test case-control differences in landmark shape and facial adiposity indices.

Snakemake entry script of rule ``compare_landmarks``. Inputs: ``cohort``
(results/cohort/cohort.csv), ``qc`` (results/qc/preprocess.tsv). Params:
``seed``, ``n_permutations``, ``min_group_size``. Outputs: ``landmark_tests``,
``shape_indices``, ``shape_tests`` (csv), ``comparison_png``
(landmark_comparison.png), ``indices_png`` (shape_indices.png), ``summary``
(morphometry.json). Log: ``log[0]``.
"""

import logging
from typing import Any

import pandas as pd

from phenoface import io, morphometry, plots_faces
from phenoface.runtime import make_rng, setup_logging
from phenoface.stats import json_ready

LOGGER = logging.getLogger("compare_landmarks")
OUTPUT_KEYS = ("landmark_tests", "shape_indices", "shape_tests", "comparison_png", "indices_png", "summary")


def run(inputs: dict[str, Any], outputs: dict[str, str], params: dict[str, Any]) -> morphometry.Comparison:
    """Run every test, write every output and return the comparison."""
    cohort = morphometry.read_cohort(inputs["cohort"])
    qc = pd.read_csv(inputs["qc"], sep="\t", dtype={"image_id": str}, keep_default_na=False)
    images = morphometry.cohort_images(cohort, qc, "chip", qc_name=str(inputs["qc"]))
    landmarks = morphometry.read_landmarks(images["landmarks_path"], images["image_id"])
    seed, n_permutations = int(params["seed"]), int(params["n_permutations"])
    comparison = morphometry.compare_groups(images, landmarks, make_rng(seed), n_permutations)
    counts = morphometry.group_counts(images)
    warnings = list(comparison.warnings)
    min_group_size = int(params["min_group_size"])
    for group, by_sex in counts.items():
        for sex in morphometry.SEXES:
            if 0 < by_sex[sex] < min_group_size:
                warnings.append(
                    f"{by_sex[sex]} {sex} {group}(s) < faces.min_group_size {min_group_size}: "
                    "their averages are blanked and their means are imprecise"
                )
    for sentence in warnings:
        LOGGER.warning(sentence)
    summary = {
        **comparison.summary,
        "n": counts,
        "seed": seed,
        "n_permutations": n_permutations,
        "permutation_scheme": "group labels shuffled within cohort strata",
        "warnings": warnings,
    }
    notes = {
        subset: info["note"] for subset, info in comparison.summary["subsets"].items() if not info["tested"]
    }
    io.write_table(outputs["landmark_tests"], comparison.landmark_tests)
    io.write_table(outputs["shape_indices"], comparison.shape_indices)
    io.write_table(outputs["shape_tests"], comparison.shape_tests)
    io.save_figure(
        outputs["comparison_png"],
        plots_faces.plot_landmark_comparison(comparison.tests, notes, comparison.summary["fdr"]),
        dpi=150,
    )
    io.save_figure(outputs["indices_png"], plots_faces.plot_shape_indices(comparison.shape_indices), dpi=150)
    io.write_json(outputs["summary"], json_ready(summary))
    return comparison


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Entry point: the only place that touches ``snakemake``."""
    setup_logging(snakemake.log[0])
    run(
        {"cohort": snakemake.input.cohort, "qc": snakemake.input.qc},
        {key: getattr(snakemake.output, key) for key in OUTPUT_KEYS},
        dict(snakemake.params.items()),
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
