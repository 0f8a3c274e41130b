"""Rule convert_backbone: dlib's face-recognition ResNet as a Keras weights file."""

import logging


def run(inputs: dict, outputs: dict, params) -> None:
    from phenoface.backbone import convert_dlib_resnet

    sha256 = convert_dlib_resnet(inputs["dat"], outputs["weights"], outputs["sha256"])
    logging.getLogger("convert_backbone").info("source sha256 %s", sha256)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
