"""Rule compare_landmarks: case-control tests of landmark shape and facial adiposity indices."""

import logging
from typing import Any

from phenoface import io, plots_faces, shape, shape_tests
from phenoface.cohort import SEXES, read_cohort
from phenoface.qc import read_qc
from phenoface.runtime import make_rng
from phenoface.stats import json_ready

LOGGER = logging.getLogger("compare_landmarks")
OUTPUT_KEYS = ("landmark_tests", "shape_indices", "shape_tests", "comparison_png", "indices_png", "summary")


def run(inputs: dict[str, Any], outputs: dict[str, str], params: Any) -> shape_tests.Comparison:
    """Run every test, write every output and return the comparison."""
    cohort = read_cohort(inputs["cohort"])
    qc = read_qc(inputs["qc"])
    images = shape.cohort_images(cohort, qc, "chip", qc_name=str(inputs["qc"]))
    landmarks = shape.read_landmarks(images["landmarks_path"], images["image_id"])
    seed, n_permutations = params.seed, params.n_permutations
    comparison = shape_tests.compare_groups(images, landmarks, make_rng(seed), n_permutations)
    counts = shape_tests.group_counts(images)
    warnings = list(comparison.warnings)
    min_group_size = params.min_group_size
    for group, by_sex in counts.items():
        for sex in SEXES:
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


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
