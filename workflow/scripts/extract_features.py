"""Rule extract_features: frozen-ResNet features of one preprocessing shard's ok chips."""

import logging
import time


def run(inputs: dict, outputs: dict, params) -> None:
    """Read the shard's ok chips, run the backbone, write image_id/pooled/descriptor."""
    import numpy as np

    from phenoface.backbone import extract_features, load_backbone, read_chips
    from phenoface.io import write_npz
    from phenoface.qc import ok_chip_paths, read_qc
    from phenoface.runtime import describe_device

    log = logging.getLogger("extract_features")
    log.info(describe_device())
    table = read_qc(inputs["qc"])
    image_ids, paths = ok_chip_paths(table, params.source, inputs["qc"])
    log.info("%s: %d of %d rows ok, reading %s chips", inputs["qc"], len(paths), len(table), params.source)
    model = load_backbone(inputs["weights"])
    start = time.perf_counter()
    pooled, descriptor = extract_features(model, read_chips(paths), params.batch_size)
    elapsed = time.perf_counter() - start
    log.info("%d chips in %.2f s (%.1f chips/s)", len(paths), elapsed, len(paths) / max(elapsed, 1e-9))
    write_npz(
        outputs["features"], image_id=np.asarray(image_ids, dtype=str), pooled=pooled, descriptor=descriptor
    )


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
