"""Extract frozen-ResNet features for one preprocessing shard (rule extract_features)."""

import logging
import time


def main(snakemake) -> None:
    """Read the shard's ok chips, run the backbone, write image_id/pooled/descriptor."""
    import numpy as np
    import pandas as pd

    from phenoface.backbone import extract_features, load_backbone, ok_chip_paths, read_chips
    from phenoface.io import write_npz
    from phenoface.runtime import describe_device, setup_logging

    setup_logging(snakemake.log[0])
    log = logging.getLogger("extract_features")
    log.info(describe_device())
    qc_path = snakemake.input.qc
    table = pd.read_csv(qc_path, sep="\t", dtype=str, keep_default_na=False)
    image_ids, paths = ok_chip_paths(table, snakemake.params.source, qc_path)
    log.info(
        "%s: %d of %d rows ok, reading %s chips",
        qc_path,
        len(paths),
        len(table),
        snakemake.params.source,
    )
    model = load_backbone(snakemake.input.weights)
    start = time.perf_counter()
    pooled, descriptor = extract_features(model, read_chips(paths), snakemake.params.batch_size)
    elapsed = time.perf_counter() - start
    log.info(
        "%d chips in %.2f s (%.1f chips/s)", len(paths), elapsed, len(paths) / max(elapsed, 1e-9)
    )
    write_npz(
        snakemake.output.features,
        image_id=np.asarray(image_ids, dtype=str),
        pooled=pooled,
        descriptor=descriptor,
    )


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
