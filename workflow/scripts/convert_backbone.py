"""Convert dlib's face-recognition ResNet to a Keras weights file (rule convert_backbone)."""

import logging


def main(snakemake) -> None:
    """Read the dlib .dat and write the .weights.h5 and its source checksum."""
    from phenoface.backbone import convert_dlib_resnet
    from phenoface.runtime import setup_logging

    setup_logging(snakemake.log[0])
    sha256 = convert_dlib_resnet(
        snakemake.input.dat, snakemake.output.weights, snakemake.output.sha256
    )
    logging.getLogger("convert_backbone").info("source sha256 %s", sha256)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
