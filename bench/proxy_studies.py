"""Proxy case/control studies on UTKFace, run end to end through Snakemake.

There are no cancer faces to share, so two proxy "phenotypes" with a known
answer stand in (issue 5):

A   cases = women, pool = men, matched on age only (10-year bins). The model
    must find sex; the age-only baseline must stay near 0.5. UTKFace has more
    young women than men, so `allow_shortfall` draws what exists.
B   cases = ethnicity `asian`, pool = everyone else, matched on age and sex
    (10-year bins). Most Asian faces here are children, so 10-year bins leave
    a residual age imbalance that the age+sex baseline shows;
B5  as B with 5-year bins, which brings it back towards 0.5.
N   the null study: cases = a seeded random quarter of all faces, pool = the
    rest, matched on age and sex. There is nothing to find: the model, the
    landmark tests and the Grad-CAM region tests should find nothing beyond
    their false-positive rate. N2 is a second draw (another seed).

Besides metrics.json it prints the Grad-CAM sanity checks and region tests
(results/explain/) and the landmark morphometry (results/faces/).

Each study writes its own working folder under --work and prints the model's
AUC (DeLong CI), accuracy, the baselines and the repeats. Rerun:

    .venv/bin/python bench/proxy_studies.py --work /tmp/proxy [--studies A B B5]
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
TEN_YEAR = [0, 10, 20, 30, 40, 50, 60, 70]
FIVE_YEAR = list(range(0, 75, 5))


def random_quarter(meta: pd.DataFrame, seed: int) -> pd.Series:
    """A seeded random quarter of the rows: cases of a null study."""
    return pd.Series(np.random.default_rng(seed).random(len(meta)) < 0.25, index=meta.index)


STUDIES = {
    "A": dict(case=lambda m: m["sex"] == "F", match_on=["age"], age_bins=TEN_YEAR, allow_shortfall=True),
    "B": dict(case=lambda m: m["ethnicity"] == "asian", match_on=["age", "sex"], age_bins=TEN_YEAR),
    "B5": dict(case=lambda m: m["ethnicity"] == "asian", match_on=["age", "sex"], age_bins=FIVE_YEAR),
    "N": dict(case=lambda m: random_quarter(m, 7), match_on=["age", "sex"], age_bins=TEN_YEAR),
    "N2": dict(case=lambda m: random_quarter(m, 8), match_on=["age", "sex"], age_bins=TEN_YEAR),
}


def write_sheets(folder: Path, meta: pd.DataFrame, is_case: pd.Series) -> tuple[Path, Path]:
    """Cases and pool sheets with absolute image paths."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {"image": [str(UTK / i) for i in meta["image"]], "age": meta["age"], "sex": meta["sex"]}
    )
    cases, pool = folder / "cases.csv", folder / "pool.csv"
    write_if_changed(cases, table[is_case].to_csv(index=False))
    write_if_changed(pool, table[~is_case].to_csv(index=False))
    return cases, pool


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (a new mtime would re-run the study)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def run_study(name: str, work: Path, cores: int, repeats: int, subset: int | None = None) -> dict:
    """Run one study through Snakemake and return its metrics.json."""
    spec = STUDIES[name]
    meta = pd.read_csv(UTK / "metadata.csv", keep_default_na=False)
    if subset:  # the first rows (the files are in a seeded random order): a small study
        meta = meta.head(subset)
    folder = work / name
    cases, pool = write_sheets(folder, meta, spec["case"](meta))
    config = {
        "cases": str(cases),
        "reference_pool": str(pool),
        "sampling": {
            "match_on": spec["match_on"],
            "age_bins": spec["age_bins"],
            "allow_shortfall": spec.get("allow_shortfall", False),
        },
        "evaluation": {"repeats": repeats},
    }
    write_if_changed(folder / "config.yaml", yaml.safe_dump(config))
    models = folder / "resources" / "mediapipe"
    models.mkdir(parents=True, exist_ok=True)
    for model in (REPO / "resources" / "mediapipe").glob("*.tflite"):
        shutil.copy2(model, models / model.name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(folder),
         "--configfile", str(folder / "config.yaml"), "--cores", str(cores), "--quiet", "all"],
        check=True, env=env,
    )  # fmt: skip
    metrics = json.loads((folder / "results" / "evaluation" / "metrics.json").read_text())
    metrics["_seconds"] = time.perf_counter() - started
    metrics["_balance"] = pd.read_csv(folder / "results" / "cohort" / "balance.csv").to_dict("records")
    results = folder / "results"
    metrics["_sanity"] = json.loads((results / "explain" / "sanity.json").read_text())
    metrics["_regions"] = pd.read_csv(results / "explain" / "region_tests.csv")
    metrics["_morphometry"] = json.loads((results / "faces" / "morphometry.json").read_text())
    metrics["_landmarks"] = pd.read_csv(results / "faces" / "landmark_tests.csv", keep_default_na=False)
    return metrics


def explain_lines(m: dict) -> list[str]:
    """Grad-CAM sanity checks, significant region differences and morphometry of a study."""
    sanity, regions = m["_sanity"], m["_regions"]
    lines = [
        f"  Grad-CAM ({sanity['layer']}): {sanity['n_explained']} images; random-head |Spearman| median "
        f"{sanity['randomized_head_spearman_abs']['median']:.2f}; shuffled-label head |Spearman| median "
        f"{sanity['shuffled_labels_spearman_abs']['median']:.2f}; guided case-vs-control Spearman median "
        f"{sanity['guided_case_vs_control_spearman']['median']:.2f}; degenerate {sanity['degenerate_fraction']:.1%}"
    ]
    for (comparison, name), table in regions.groupby(["comparison", "map"], sort=False):
        hits = table[table["q_value"] < 0.05]
        found = ", ".join(f"{r.region} {r.difference:+.3f}" for r in hits.itertuples()) or "none"
        lines.append(f"  regions q<0.05 ({comparison}, {name}): {found}")
    landmarks = m["_landmarks"]
    for subset, info in m["_morphometry"]["subsets"].items():
        if not info.get("tested"):
            continue
        rows = landmarks[(landmarks["subset"] == subset) & (landmarks["landmark"] != "")]
        hits = int((pd.to_numeric(rows["q_value"], errors="coerce") < 0.05).sum())
        indices = m["_morphometry"]["shape_indices"]
        effects = ", ".join(
            f"{key.split(':')[1]} {indices[key]['diff']:+.3f} (p {indices[key]['p_perm']:.3g})"
            for key in indices
            if key.startswith(f"{subset}:")
        )
        lines.append(f"  landmarks {subset}: {hits}/68 with q<0.05; {effects}")
    return lines


def summary(name: str, m: dict) -> str:
    """One block of figures for a study."""
    b = m["baselines"]
    rep = m.get("repeats") or {}
    smd = {r["measure"]: r["value"] for r in m["_balance"]}
    lines = [
        f"study {name}: n_train {m['n_train']}, n_test {m['n_test']} ({m['n_test_case']} cases), "
        f"{m['_seconds']:.0f} s",
        f"  model AUC {m['auc']:.3f} [{m['auc_ci_low']:.3f}, {m['auc_ci_high']:.3f}], accuracy {m['accuracy']:.3f}, "
        f"brier {m['brier']:.3f}",
        f"  baselines: descriptor {b['descriptor']['auc']:.3f}, matched age/sex {b['age_sex']['auc']:.3f} "
        f"[{b['age_sex']['auc_ci_low']:.3f}, {b['age_sex']['auc_ci_high']:.3f}], "
        f"image statistics {b['image_statistics']['auc']:.3f}",
        f"  balance: SMD age {float(smd.get('smd_age', float('nan'))):.3f}, "
        f"SMD sex {float(smd.get('smd_sex_female', float('nan'))):.3f}",
    ]
    if rep:
        lines.append(
            f"  repeats (n={rep['n']}): AUC mean {rep['auc_mean']:.3f}, SD {rep['auc_sd']:.3f}, "
            f"range {rep['auc_min']:.3f}-{rep['auc_max']:.3f}"
        )
    lines += explain_lines(m)
    lines += [f"  warning: {w}" for w in m.get("warnings", []) + m["_sanity"]["warnings"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--subset", type=int, help="only the first N UTKFace faces (a small study)")
    args = parser.parse_args()
    for name in args.studies:
        print(summary(name, run_study(name, args.work, args.cores, args.repeats, args.subset)), flush=True)


if __name__ == "__main__":
    main()
