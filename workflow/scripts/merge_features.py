"""Merge the per-shard feature files into one table sorted by image id (rule merge_features)."""

import logging


def main(snakemake) -> None:
    """Concatenate the shard npz files and write results/features/features.npz."""
    import numpy as np

    from phenoface.backbone import merge_feature_tables
    from phenoface.io import write_npz
    from phenoface.runtime import setup_logging

    setup_logging(snakemake.log[0])
    tables = []
    for path in snakemake.input.shards:
        with np.load(path, allow_pickle=False) as shard:
            tables.append({key: shard[key] for key in ("image_id", "pooled", "descriptor")})
    merged = merge_feature_tables(tables)
    logging.getLogger("merge_features").info(
        "%d images from %d shards", len(merged["image_id"]), len(tables)
    )
    write_npz(snakemake.output.features, **merged)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
