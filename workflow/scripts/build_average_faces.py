"""Average the cohort's chips per group and sex and draw the paper's Figure 3.

Snakemake entry script of rule ``build_average_faces``. Inputs: ``cohort``
(results/cohort/cohort.csv), ``qc`` (results/qc/preprocess.tsv). Params:
``source`` (faces.input: chip|masked), ``min_group_size``, ``show_faces``.
Outputs: ``figure`` (average_faces.png), ``npz`` (average_faces.npz: group,
sex, n, mean_chip and shape_normalised_chip uint8, mean_landmarks), ``landmarks`` (landmarks_mean.csv).
Log: ``log[0]``.
"""

import logging
from typing import Any

import numpy as np
import pandas as pd

from phenoface import io, morphometry, plots_faces, shape_average
from phenoface.runtime import setup_logging

LOGGER = logging.getLogger("build_average_faces")


def run(inputs: dict[str, Any], outputs: dict[str, str], params: dict[str, Any]) -> morphometry.AverageFaces:
    """Average the chips, write every output and return the averages."""
    cohort = morphometry.read_cohort(inputs["cohort"])
    qc = pd.read_csv(inputs["qc"], sep="\t", dtype={"image_id": str}, keep_default_na=False)
    images = morphometry.cohort_images(cohort, qc, params["source"], qc_name=str(inputs["qc"]))
    landmarks = morphometry.read_landmarks(images["landmarks_path"], images["image_id"])
    faces = morphometry.average_faces(images, landmarks)
    shape_normalised = shape_average.shape_normalised_averages(images, landmarks, faces)
    min_group_size, show_faces = int(params["min_group_size"]), bool(params["show_faces"])
    for group, sex, n in zip(faces.group, faces.sex, faces.n):
        if not plots_faces.face_shown(int(n), min_group_size, show_faces):
            LOGGER.warning(
                "%s %s: %d faces < faces.min_group_size %d; average blanked", group, sex, n, min_group_size
            )
    io.write_npz(
        outputs["npz"],
        group=faces.group,
        sex=faces.sex,
        n=faces.n,
        mean_chip=faces.mean_chip_uint8(),
        shape_normalised_chip=np.clip(np.rint(shape_normalised), 0, 255).astype(np.uint8),
        mean_landmarks=faces.mean_landmarks,
    )
    io.write_table(outputs["landmarks"], morphometry.landmarks_mean_table(faces))
    figure = plots_faces.plot_average_faces(faces, min_group_size, show_faces, shape_normalised=shape_normalised)
    io.save_figure(outputs["figure"], figure, dpi=150)
    return faces


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Entry point: the only place that touches ``snakemake``."""
    setup_logging(snakemake.log[0])
    run(
        {"cohort": snakemake.input.cohort, "qc": snakemake.input.qc},
        {key: getattr(snakemake.output, key) for key in ("figure", "npz", "landmarks")},
        dict(snakemake.params.items()),
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
