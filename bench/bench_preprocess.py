"""Preprocessing throughput and the shard size it implies.

Measures, in one run on real faces from ../shared/data/faces:
- the fixed cost of a preprocessing job (a fresh Python process importing the
  library and loading dlib's landmark model and the mask model), and
- the per-image cost of each mask method, as a ratio to `none` (the baseline,
  measured in the same process).
The default shard size balances that fixed cost against how much a change to
one image re-runs: it is the smallest size keeping the fixed cost under 20% of
a job's time with the default mask method (the 5% size is printed too).

    .venv/bin/python bench/bench_preprocess.py [--n 120]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from phenoface.faces import FacePreprocessor  # noqa: E402
from phenoface.masks import FaceMasker  # noqa: E402
from phenoface.models import dlib_model_path, ensure_mediapipe_models  # noqa: E402

STARTUP = """
import sys, time
t = time.perf_counter()
sys.path.insert(0, {scripts!r})
from phenoface.faces import FacePreprocessor
from phenoface.masks import FaceMasker
from phenoface.models import dlib_model_path
FacePreprocessor(dlib_model_path("landmarks"))
FaceMasker("face_mesh", {model_dir!r})
print(time.perf_counter() - t)
"""


def job_overhead(model_dir: Path, repeats: int = 3) -> float:
    """Median wall time of a fresh process that imports and loads the models."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        code = STARTUP.format(scripts=str(REPO / "workflow" / "scripts"), model_dir=str(model_dir))
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=120, help="images to time")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    args = parser.parse_args()
    model_dir = ensure_mediapipe_models(REPO / "resources")["face_landmark"].parent
    meta = pd.read_csv(args.shared / "metadata.csv").head(args.n)
    paths = [args.shared / image for image in meta["image"]]
    preprocessor = FacePreprocessor(dlib_model_path("landmarks"))

    started = time.perf_counter()
    results = [preprocessor.process_file(p) for p in paths]
    align = (time.perf_counter() - started) / len(paths)
    chips = [(r.chip, r.chip_landmarks) for r in results if r.status == "ok"]
    per_method = {}
    for method in ("none", "landmark_hull", "face_mesh", "portrait"):
        masker = FaceMasker(method, model_dir)
        started = time.perf_counter()
        for chip, landmarks in chips:
            masker(chip, landmarks)
        per_method[method] = (time.perf_counter() - started) / len(chips)
    overhead = job_overhead(model_dir)
    per_image = align + per_method["face_mesh"]
    shards = {share: math.ceil(overhead / (share / (1 - share) * per_image)) for share in (0.05, 0.2)}
    print(f"images: {len(paths)} ({len(chips)} ok)")
    print(f"load+detect+landmarks+chip: {align * 1000:.1f} ms/image")
    for method, seconds in per_method.items():
        ratio = (align + seconds) / (align + per_method["none"])
        print(
            f"mask {method:14s} {seconds * 1000:6.2f} ms/chip; whole image {ratio:.2f}x the 'none' baseline"
        )
    print(f"job fixed cost (fresh process, imports, model loads): {overhead:.2f} s")
    for share, size in shards.items():
        redo = overhead + size * per_image
        print(
            f"shard size keeping the fixed cost under {share:.0%}: {size} (re-running one shard: {redo:.1f} s)"
        )


if __name__ == "__main__":
    main()
