"""Rule build_average_faces: the cohort's mean chips per group and sex (the paper's Figure 3)."""

import logging
from typing import Any

import numpy as np

from phenoface import average_faces, io, plots_faces, shape, shape_average
from phenoface.cohort import read_cohort
from phenoface.qc import read_qc

LOGGER = logging.getLogger("build_average_faces")


def run(inputs: dict[str, Any], outputs: dict[str, str], params: Any) -> average_faces.AverageFaces:
    """Average the chips, write every output and return the averages."""
    cohort = read_cohort(inputs["cohort"])
    qc = read_qc(inputs["qc"])
    images = shape.cohort_images(cohort, qc, params.source, qc_name=str(inputs["qc"]))
    landmarks = shape.read_landmarks(images["landmarks_path"], images["image_id"])
    faces = average_faces.average_faces(images, landmarks)
    shape_normalised = shape_average.shape_normalised_averages(images, landmarks, faces)
    min_group_size, show_faces = params.min_group_size, params.show_faces
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
    io.write_table(outputs["landmarks"], average_faces.landmarks_mean_table(faces))
    figure = plots_faces.plot_average_faces(
        faces, min_group_size, show_faces, shape_normalised=shape_normalised
    )
    io.save_figure(outputs["figure"], figure, dpi=150)
    return faces


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
