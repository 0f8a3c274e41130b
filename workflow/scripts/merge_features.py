"""Merge the per-shard feature files into one table sorted by image id (rule merge_features)."""

import logging


def main(snakemake) -> None:
    """Concatenate the shard npz files and write results/features/features.npz."""
    from phenoface.features import read_feature_shards
    from phenoface.io import write_npz
    from phenoface.runtime import setup_logging

    setup_logging(snakemake.log[0])
    merged = read_feature_shards(snakemake.input.shards)
    logging.getLogger("merge_features").info(
        "%d images from %d shards", len(merged["image_id"]), len(snakemake.input.shards)
    )
    write_npz(snakemake.output.features, **merged)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
