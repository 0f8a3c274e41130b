"""False-positive rates of the landmark and shape-index tests under a true null.

Takes a finished study folder (results/cohort/cohort.csv and
results/qc/preprocess.tsv), replaces the group labels by random ones
(shuffled within the matching strata, so counts per stratum are kept), runs
`phenoface.shape_tests.compare_groups` on each relabelling and prints, per
subset (all, F, M): the share of relabellings with at least one landmark at
BH q < 0.05 (the family-wise rate BH controls at 0.05 when every hypothesis
is null), the share with a global Procrustes-distance p < 0.05, and the share
of shape-index permutation p-values below 0.05.

    .venv/bin/python bench/morphometry_null.py --study /tmp/proxy/N [--relabelings 100] [--permutations 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from phenoface import shape, shape_tests  # noqa: E402
from phenoface.cohort import read_cohort  # noqa: E402
from phenoface.runtime import make_rng  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=lambda value: Path(value).resolve(), required=True)
    parser.add_argument("--relabelings", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    os.chdir(args.study)  # QC paths are relative to the study's working directory
    results = Path("results")
    cohort = read_cohort(results / "cohort" / "cohort.csv")
    qc = pd.read_csv(
        results / "qc" / "preprocess.tsv", sep="\t", dtype={"image_id": str}, keep_default_na=False
    )
    images = shape.cohort_images(cohort, qc, "chip")
    landmarks = shape.read_landmarks(images["landmarks_path"], images["image_id"])
    rng = make_rng(args.seed)
    is_case = (images["group"] == "case").to_numpy()
    hits = {subset: [] for subset in shape_tests.SUBSETS}
    global_hits = {subset: [] for subset in shape_tests.SUBSETS}
    index_p = []
    started = time.perf_counter()
    for _ in range(args.relabelings):
        labels = shape_tests.permute_within_strata(is_case, images["stratum"], rng, 1)[0]
        relabelled = images.assign(group=np.where(labels, "case", "control"))
        comparison = shape_tests.compare_groups(relabelled, landmarks, rng, args.permutations)
        table = comparison.landmark_tests
        for subset in shape_tests.SUBSETS:
            rows = table[table["subset"] == subset]
            q_values = pd.to_numeric(rows["q_value"], errors="coerce")
            hits[subset].append(bool((q_values < 0.05).any()))
            global_hits[subset].append(
                comparison.summary["subsets"][subset].get("procrustes_distance_p", 1.0) < 0.05
            )
        index_p.extend(pd.to_numeric(comparison.shape_tests["p_perm"], errors="coerce").dropna().tolist())
    seconds = time.perf_counter() - started
    print(
        f"{args.relabelings} null relabelings of {len(images)} faces, {args.permutations} permutations each, "
        f"{seconds:.0f} s"
    )
    for subset in shape_tests.SUBSETS:
        print(
            f"  {subset}: >=1 landmark at q<0.05 in {np.mean(hits[subset]):.3f}; "
            f"global distance p<0.05 in {np.mean(global_hits[subset]):.3f}"
        )
    print(
        f"  shape indices: p_perm < 0.05 in {np.mean(np.asarray(index_p) < 0.05):.3f} of {len(index_p)} tests"
    )


if __name__ == "__main__":
    main()
