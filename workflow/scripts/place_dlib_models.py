"""Rule place_dlib_models: dlib's landmark and recognition models under stable names."""

import logging

from phenoface.models import place_dlib_model


def run(inputs: dict, outputs: dict, params) -> None:
    for name in ("landmarks", "resnet"):
        path = place_dlib_model(name, outputs[name])
        logging.info("%s model: %s (sha256 verified)", name, path)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
