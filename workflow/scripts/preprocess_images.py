"""Snakemake entry: preprocess one shard of images (detect, align, mask)."""

import logging
from pathlib import Path

from phenoface.faces import FacePreprocessor
from phenoface.io import write_table
from phenoface.masks import FaceMasker, apply_mask
from phenoface.preprocess import preprocess_members
from phenoface.runtime import setup_logging


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    settings = snakemake.params.settings
    preprocessor = FacePreprocessor(
        snakemake.params.landmark_model,
        upsample=settings["upsample"],
        pad_fraction=settings["pad_fraction"],
        min_face_size=settings["min_face_size"],
        multi_face=settings["multi_face"],
        chip_size=settings["chip_size"],
        chip_padding=settings["chip_padding"],
        retry_detection=settings["retry_detection"],
    )
    model_dir = Path(snakemake.input.models[0]).parent if snakemake.input.models else None
    masker = FaceMasker(settings["mask_method"], model_dir)
    members = snakemake.params.members
    logging.info("shard %s: %d images", "/".join(snakemake.wildcards), len(members))
    table = preprocess_members(members, snakemake.output.chips, preprocessor, masker, apply_mask)
    logging.info("statuses: %s", table["status"].value_counts().to_dict())
    write_table(snakemake.output.qc, table)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
