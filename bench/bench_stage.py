"""Preprocessing stage through Snakemake against one in-process loop (issue 14).

Both sides do the same per-image work on the same images and cores:

snakemake  a fresh study (cases: the first ``--cases`` UTKFace faces, pool: the
           rest, default config) run to ``results/qc/preprocess.tsv``: image
           hashing, case shards, the pool candidate rounds and their shards,
           the QC summary.
loop       ``preprocess_image`` over exactly the images Snakemake preprocessed
           (cases and pool candidates, read back from its QC table), in
           ``--cores`` worker processes that each load the models once.

It prints wall and CPU seconds (user + system, the processes and their
children) of each side and their ratios, with the load average, and per
Snakemake rule the job count, the summed job seconds and the largest RSS from
the ``benchmark:`` files. The two sides run back to back; ``--repeats`` runs
the pair again (the machine is shared: compare within a pair).

    nice -n 10 .venv/bin/python bench/bench_stage.py --work /tmp/stage --cases 800 --cores 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
UTK = REPO.parent / "shared" / "data" / "utkface"
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from phenoface.faces import FacePreprocessor  # noqa: E402
from phenoface.masks import FaceMasker, apply_mask  # noqa: E402
from phenoface.models import dlib_model_path  # noqa: E402
from phenoface.preprocess import preprocess_image  # noqa: E402

_WORKER: dict = {}


def cpu_seconds() -> float:
    """User + system seconds of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_study(folder: Path, n_cases: int) -> None:
    """Sheets (the first ``n_cases`` UTKFace rows as cases, the rest as pool), config and mask models."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    meta = pd.read_csv(UTK / "metadata.csv", keep_default_na=False)
    table = pd.DataFrame(
        {"image": [str(UTK / i) for i in meta["image"]], "age": meta["age"], "sex": meta["sex"]}
    )
    table.iloc[:n_cases].to_csv(folder / "cases.csv", index=False)
    table.iloc[n_cases:].to_csv(folder / "pool.csv", index=False)
    config = {"cases": str(folder / "cases.csv"), "reference_pool": str(folder / "pool.csv")}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    models = folder / "resources" / "mediapipe"
    models.mkdir(parents=True)
    for model in (REPO / "resources" / "mediapipe").glob("*.tflite"):
        shutil.copy2(model, models / model.name)


def run_snakemake(folder: Path, cores: int) -> tuple[float, float]:
    """Wall and CPU seconds of the preprocessing stage through Snakemake."""
    command = [sys.executable, "-m", "snakemake", "results/qc/preprocess.tsv", "--cores", str(cores), "--quiet",
               "-s", str(REPO / "Snakefile"), "-d", str(folder), "--configfile", str(folder / "config.yaml")]  # fmt: skip
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cpu, started = cpu_seconds(), time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - started, cpu_seconds() - cpu


def _load_models(settings: dict, model_dir: str) -> None:
    """Pool initializer: each worker loads the models once."""
    keys = (
        "upsample",
        "pad_fraction",
        "min_face_size",
        "multi_face",
        "chip_size",
        "chip_padding",
        "retry_detection",
    )
    _WORKER["preprocessor"] = FacePreprocessor(
        dlib_model_path("landmarks"), **{key: settings[key] for key in keys}
    )
    _WORKER["masker"] = FaceMasker(settings["mask_method"], Path(model_dir))


def _one(member: tuple[str, str, str, str]) -> dict:
    image_id, sheet, path, out_dir = member
    return preprocess_image(
        image_id, sheet, path, Path(out_dir), _WORKER["preprocessor"], _WORKER["masker"], apply_mask
    )


def run_loop(
    members: pd.DataFrame, out_dir: Path, cores: int, model_dir: Path
) -> tuple[float, float, pd.DataFrame]:
    """Wall and CPU seconds of the in-process loop, and its QC rows."""
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["preprocess"]
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    work = [(r.image_id, r.sheet, r.path, str(out_dir)) for r in members.itertuples()]
    cpu, started = cpu_seconds(), time.perf_counter()
    with multiprocessing.get_context("fork").Pool(cores, _load_models, (settings, str(model_dir))) as pool:
        rows = pool.map(_one, work, chunksize=8)
        pool.close()
        pool.join()
    return time.perf_counter() - started, cpu_seconds() - cpu, pd.DataFrame(rows)


def rule_costs(folder: Path) -> pd.DataFrame:
    """Per rule: jobs, summed job seconds and CPU seconds, largest max RSS (benchmark files)."""
    rows = []
    for path in (folder / "benchmarks").rglob("*.tsv"):
        table = pd.read_csv(path, sep="\t")
        rule = path.relative_to(folder / "benchmarks").parts[0].removesuffix(".tsv")
        rows.append({"rule": rule, "s": table["s"].iloc[0], "cpu_time": table["cpu_time"].iloc[0],
                     "max_rss_mb": table["max_rss"].iloc[0]})  # fmt: skip
    costs = pd.DataFrame(rows)
    if costs.empty:
        return costs
    return costs.groupby("rule").agg(
        jobs=("s", "size"), seconds=("s", "sum"), cpu=("cpu_time", "sum"), max_rss_mb=("max_rss_mb", "max")
    )


def busy_cores(work: Path, n_cases: int, cores: int) -> str:
    """Preprocessing jobs a dry run with ``cores`` plans for the case shards, and the cores they keep busy.

    The case shards are independent, so they all run at once (the pool rounds
    wait for their checkpoint and are planned after it).
    """
    study = work / f"busy{n_cases}"
    make_study(study, n_cases)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/qc/preprocess.tsv", "-n", "--cores", str(cores), "-s",
         str(REPO / "Snakefile"), "-d", str(study), "--configfile", str(study / "config.yaml")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    threads, in_rule = [], False  # a dry run omits "threads:" where it is 1
    for line in done.stdout.splitlines():
        if line.strip().endswith("rule preprocess_images:"):
            threads.append(1)
            in_rule = True
        elif in_rule and line.strip().startswith("threads:"):
            threads[-1] = int(line.split(":")[1])
        elif not line.strip():
            in_rule = False
    return f"{n_cases} cases, --cores {cores}: {len(threads)} case-shard jobs, threads {threads}, {min(cores, sum(threads))} of {cores} cores busy"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=800, help="cases (pool candidates bring it to ~2.5x)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--busy", type=int, nargs=2, metavar=("CASES", "CORES"),
                        help="only count the cores a dry run keeps busy on the case shards")  # fmt: skip
    args = parser.parse_args()
    if args.busy:
        print(busy_cores(args.work, *args.busy))
        return
    for repeat in range(args.repeats):
        study = args.work / "study"
        make_study(study, args.cases)
        sm_wall, sm_cpu = run_snakemake(study, args.cores)
        load_sm = os.getloadavg()[0]
        qc = pd.read_csv(study / "results" / "qc" / "preprocess.tsv", sep="\t", keep_default_na=False)
        members = qc.loc[qc["status"] != "not_needed", ["image_id", "sheet", "path"]]
        loop_wall, loop_cpu, loop_qc = run_loop(
            members, args.work / "loop", args.cores, study / "resources" / "mediapipe"
        )
        load_loop = os.getloadavg()[0]
        same = (
            loop_qc.set_index("image_id")["status"]
            == qc.set_index("image_id").loc[loop_qc["image_id"], "status"]
        ).all()
        print(f"pair {repeat + 1}: {len(members)} images preprocessed ({(qc['status'] == 'ok').sum()} ok), "
              f"{args.cores} cores; statuses equal: {bool(same)}")  # fmt: skip
        print(f"  snakemake wall {sm_wall:6.1f} s  CPU {sm_cpu:6.1f} s  (load average {load_sm:.1f})")
        print(f"  loop      wall {loop_wall:6.1f} s  CPU {loop_cpu:6.1f} s  (load average {load_loop:.1f})")
        print(f"  ratio     wall {sm_wall / loop_wall:.2f}x  CPU {sm_cpu / loop_cpu:.2f}x", flush=True)
        print(rule_costs(study).round(2).to_string())


if __name__ == "__main__":
    main()
