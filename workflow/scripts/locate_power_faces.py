"""Find the 68 landmarks of the power study's original photos (rule locate_power_faces).

The planted warp is computed from these landmarks, found by the study's own
detector settings on the original photo; the warped photo is then detected
again from scratch by preprocessing.
"""

import logging

import numpy as np


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Detect every member of the shard; NaN landmarks where no face passes."""
    from phenoface.faces import FacePreprocessor
    from phenoface.io import write_npz
    from phenoface.qc import OK
    from phenoface.runtime import setup_logging

    setup_logging(snakemake.log[0])
    params = snakemake.params
    preprocessor = FacePreprocessor(
        snakemake.input.landmark_model,
        upsample=params.upsample,
        pad_fraction=params.pad_fraction,
        min_face_size=params.min_face_size,
        multi_face=params.multi_face,
        retry_detection=params.retry_detection,
    )
    members = params.members
    landmarks = np.full((len(members), 68, 2), np.nan)
    statuses = []
    for index, member in enumerate(members):
        result = preprocessor.process_file(member["path"])
        statuses.append(result.status)
        if result.status == OK:
            landmarks[index] = result.image_landmarks
    logging.getLogger("locate_power_faces").info(
        "%d photos, %d with a face", len(members), statuses.count(OK)
    )
    write_npz(
        snakemake.output.landmarks,
        image_id=np.array([m["image_id"] for m in members], dtype=str),
        status=np.array(statuses, dtype=str),
        landmarks=landmarks,
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
