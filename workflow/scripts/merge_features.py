"""Rule merge_features: the per-shard feature files as one table sorted by image id."""

import logging

from phenoface.features import read_feature_shards
from phenoface.io import write_npz


def run(inputs: dict, outputs: dict, params) -> None:
    merged = read_feature_shards(inputs["shards"])
    logging.getLogger("merge_features").info(
        "%d images from %d shards", len(merged["image_id"]), len(inputs["shards"])
    )
    write_npz(outputs["features"], **merged)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
