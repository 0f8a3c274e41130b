"""Rule preprocess_images: detect, align and mask one shard of images."""

import logging
from pathlib import Path

from phenoface.faces import FacePreprocessor
from phenoface.io import write_table
from phenoface.masks import FaceMasker, apply_mask
from phenoface.preprocess import preprocess_members


def run(inputs: dict, outputs: dict, params, threads: int = 1) -> None:
    """Preprocess one shard; ``threads`` worker processes share it (see ``preprocess_members``)."""
    preprocessor = FacePreprocessor(
        inputs["landmark_model"],
        upsample=params.upsample,
        pad_fraction=params.pad_fraction,
        min_face_size=params.min_face_size,
        multi_face=params.multi_face,
        chip_size=params.chip_size,
        chip_padding=params.chip_padding,
        retry_detection=params.retry_detection,
    )
    models = inputs["mask_models"]
    masker = FaceMasker(params.mask_method, Path(models[0]).parent if models else None)
    members = params.members
    logging.info("%s: %d images", outputs["qc"], len(members))
    table = preprocess_members(members, outputs["chips"], preprocessor, masker, apply_mask, workers=threads)
    logging.info("statuses: %s", table["status"].value_counts().to_dict())
    write_table(outputs["qc"], table)


if __name__ == "__main__":
    from functools import partial

    from phenoface.runtime import run_rule

    run_rule(partial(run, threads=snakemake.threads), snakemake)  # noqa: F821 (injected by Snakemake)
