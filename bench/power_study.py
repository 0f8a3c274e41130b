"""The planted-effect power analysis on UTKFace adults (issue 13), run through Snakemake.

A study folder is written under --work: a cases sheet (a seeded random set of
adult faces, only there because every study has one), a pool sheet (all other
adults) and a config whose ``power`` section draws ``--n`` faces from the pool's
eligible rows. Then ``snakemake power`` runs the planted-effect studies and
this script prints results/power/power.csv, the detection threshold, the
Grad-CAM region differences of the same-class comparison and the landmark
groups that moved, per strength. Rerun:

    nice -n 10 .venv/bin/python bench/power_study.py --work /tmp/power --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
UTK = REPO.parent / "shared" / "data" / "utkface"
ADULT_AGE = 18


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (a new mtime would re-run the study)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_study(work: Path, n: int, n_cases: int, strengths: list[float], repeats: int, seed: int) -> Path:
    """Sheets and config of the power study; returns the config path."""
    work.mkdir(parents=True, exist_ok=True)
    meta = pd.read_csv(UTK / "metadata.csv", keep_default_na=False)
    adults = meta[meta["age"] >= ADULT_AGE]
    table = pd.DataFrame(
        {"image": [str(UTK / i) for i in adults["image"]], "age": adults["age"], "sex": adults["sex"]}
    )
    is_case = np.zeros(len(table), bool)
    is_case[np.random.default_rng(seed).choice(len(table), n_cases, replace=False)] = True
    write_if_changed(work / "cases.csv", table[is_case].to_csv(index=False))
    write_if_changed(work / "pool.csv", table[~is_case].to_csv(index=False))
    config = {
        "cases": str(work / "cases.csv"),
        "reference_pool": str(work / "pool.csv"),
        "seed": seed,
        "power": {"n": n, "strengths": strengths, "repeats": repeats},
    }
    path = work / "config.yaml"
    write_if_changed(path, yaml.safe_dump(config))
    models = work / "resources" / "mediapipe"
    models.mkdir(parents=True, exist_ok=True)
    for model in (REPO / "resources" / "mediapipe").glob("*.tflite"):
        if not (models / model.name).exists():
            shutil.copy2(model, models / model.name)
    return path


def print_results(work: Path) -> None:
    """power.csv, the threshold, same-class region differences and landmark groups per strength."""
    results = work / "results" / "power"
    table = pd.read_csv(results / "power.csv")
    summary = json.loads((results / "power.json").read_text())
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(4).to_string(index=False))
        print(f"detection threshold: {summary['threshold']}; warnings: {summary['warnings']}")
        regions = pd.read_csv(results / "power_regions.csv")
        same_class = regions[regions["map"] == "cam_case"]
        print(
            same_class.pivot_table(index="strength", columns="region", values="difference")
            .round(4)
            .to_string()
        )
        print(
            same_class.pivot_table(index="strength", columns="region", values="q_value").round(4).to_string()
        )
        landmarks = pd.read_csv(results / "power_landmarks.csv")
        print(landmarks.pivot_table(index="strength", columns="landmarks", values="n_q_below").to_string())
        print(landmarks.groupby("strength")["procrustes_distance_p"].first().to_string())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=300, help="rows of the (unused) cases sheet")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0, 0.04, 0.08, 0.12, 0.16, 0.24])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    config = write_study(args.work, args.n, args.cases, args.strengths, args.repeats, args.seed)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "power", "-s", str(REPO / "Snakefile"), "-d", str(args.work),
         "--configfile", str(config), "--cores", str(args.cores), "--keep-going", "--quiet", "rules"],
        check=True, env=env,
    )  # fmt: skip
    print(f"snakemake power: {time.perf_counter() - started:.0f} s")
    print_results(args.work)


if __name__ == "__main__":
    main()
