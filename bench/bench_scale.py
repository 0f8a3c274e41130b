"""Workflow scale: dry run and no-op re-run time against sheet rows (issue 14).

Generates a study of N sheet rows (a fifth cases, the rest pool) whose images
are symlinks to the UTKFace files (cycled), so no pixels are processed:

dry run   ``snakemake -n all`` on the fresh study: parsing the sheets and the
          Snakefile and building the DAG up to the first pool checkpoint.
no-op     ``snakemake all`` once every output exists: parsing, resolving the
          pool checkpoints, stating every input and output, nothing to run.
          The outputs are stand-ins: the case and pool shards' QC tables say
          ``ok`` for every member, the candidate checkpoints run for real on
          them, every other output is an empty file; all get one mtime.

Each timing is a fresh ``snakemake`` process (what a user waits for), as wall
and CPU (user + system) seconds: on a loaded machine the CPU time is the steadier
figure. ``--baseline`` times another checkout (e.g. ``main`` before a change) on
the same studies, the two taking turns. ``--profile`` writes a cProfile dump of
one dry run and one no-op per size (``--work``/profile_<rows>_<measure>.prof)
and prints its top entries.

Rerun (from the repository root):

    nice -n 10 .venv/bin/python bench/bench_scale.py --work /tmp/scale --rows 50000 200000 \
        [--baseline /tmp/main-checkout] [--repeats 2]
"""

from __future__ import annotations

import argparse
import math
import os
import pstats
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

from phenoface.sheets import assign_shards, read_sheet  # noqa: E402

CASE_FRACTION = 0.2


def make_study(folder: Path, rows: int) -> Path:
    """Write sheets of ``rows`` rows (symlinked UTKFace images) and a config; return the config."""
    meta = pd.read_csv(UTK / "metadata.csv", keep_default_na=False)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    source = meta.iloc[[i % len(meta) for i in range(rows)]].reset_index(drop=True)
    names = [f"img_{i:06d}.jpg" for i in range(rows)]
    for name, original in zip(names, source["image"]):
        link = images / name
        if not link.is_symlink():
            link.symlink_to(UTK / original)
    table = pd.DataFrame(
        {"image": [f"images/{n}" for n in names], "age": source["age"], "sex": source["sex"]}
    )
    n_cases = int(rows * CASE_FRACTION)
    table.iloc[:n_cases].to_csv(folder / "cases.csv", index=False)
    table.iloc[n_cases:].to_csv(folder / "pool.csv", index=False)
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump({"cases": str(folder / "cases.csv"), "reference_pool": str(folder / "pool.csv")})
    )
    models = folder / "resources" / "mediapipe"
    models.mkdir(parents=True, exist_ok=True)
    for model in (REPO / "resources" / "mediapipe").glob("*.tflite"):
        shutil.copy2(model, models / model.name)
    return config


def snakemake(folder: Path, *args: str, repo: Path = REPO) -> tuple[float, float, str]:
    """Run snakemake (``repo``'s Snakefile) on the study; return its wall time, CPU time and output."""
    command = [sys.executable, "-m", "snakemake", *args, "-s", str(repo / "Snakefile"), "-d", str(folder),
               "--configfile", str(folder / "config.yaml")]  # fmt: skip
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return seconds, cpu, done.stdout + done.stderr


def fake_shards(folder: Path, batch: str, table: pd.DataFrame) -> None:
    """Stand-in outputs of every shard of a batch: an ``ok`` QC row per member and an empty folder."""
    for shard, members in table.groupby("shard"):
        (folder / "results" / "preprocess" / batch / shard).mkdir(parents=True, exist_ok=True)
        qc = members[["image_id"]].assign(sheet=members["sheet"], status="ok")
        qc.to_csv(folder / "results" / "preprocess" / batch / f"{shard}.tsv", sep="\t", index=False)


def complete_study(folder: Path, cores: int) -> None:
    """Make every output of ``all`` exist (see the module docstring)."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cases = read_sheet(config["cases"], "cases", check_files=False)
    shard_size = defaults["preprocess"]["shard_size"]
    cases["shard"] = [f"{s:04d}" for s in assign_shards(list(cases["image_id"]), shard_size)]
    (folder / "results" / "qc").mkdir(parents=True, exist_ok=True)
    (folder / "results" / "qc" / "image_checks.tsv").touch()
    fake_shards(folder, "cases", cases)
    for round_ in range(1, defaults["sampling"]["max_rounds"] + 1):
        path = folder / "results" / "sampling" / "candidates" / f"round{round_}.tsv"
        snakemake(folder, str(path.relative_to(folder)), "--cores", str(cores), "--quiet")  # fmt: skip
        candidates = pd.read_csv(path, sep="\t", dtype=str)
        if candidates.empty:
            break
        fake_shards(folder, f"pool_r{round_}", candidates.assign(sheet="pool"))
    *_, summary = snakemake(folder, "all", "--summary")
    for line in summary.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) > 1 and fields[-1].strip() not in ("", "-", "no update") and "/" in fields[0]:
            output = folder / fields[0]
            output.parent.mkdir(parents=True, exist_ok=True)
            output.touch()
    stamp = time.time()  # after the sheets were written: every output is newer than its inputs
    for path in (folder / "results").rglob("*"):
        os.utime(path, (stamp, stamp))
    for path in (folder / "resources").rglob("*"):
        os.utime(path, (stamp - 1, stamp - 1))


def print_profile(path: Path, top: int) -> None:
    """The ``top`` entries of a cProfile dump by cumulative time."""
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(top)


def time_runs(
    folder: Path, repos: dict[str, Path], repeats: int, *args: str
) -> dict[str, tuple[float, float]]:
    """Fastest (wall, CPU) of ``repeats`` runs per Snakefile, the Snakefiles taking turns."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, repo in repos.items():
            seconds, cpu, output = snakemake(folder, *args, repo=repo)
            if "-n" not in args and "Nothing to be done" not in output:
                raise RuntimeError(f"the no-op re-run of {folder} planned jobs:\n{output[-3000:]}")
            best[name] = min(best.get(name, (math.inf, math.inf)), (seconds, cpu))
    return best


def report(rows: int, measure: str, best: dict[str, tuple[float, float]]) -> None:
    """One line per Snakefile, with the load average at the time."""
    for name, (seconds, cpu) in best.items():
        print(f"rows {rows:>7} {measure:<6} {name:<8} wall {seconds:6.1f} s  CPU {cpu:6.1f} s  "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=1, help="timings per measure (the fastest is reported)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout (e.g. main) timed in turn with this one"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile one dry run and one no-op per size"
    )
    parser.add_argument("--skip-noop", action="store_true", help="only the dry run")
    args = parser.parse_args()
    repos = {"this": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    for rows in args.rows:
        fresh, done = args.work / f"rows{rows}" / "fresh", args.work / f"rows{rows}" / "done"
        for folder in (fresh, done):
            shutil.rmtree(folder / "results", ignore_errors=True)
            shutil.rmtree(folder / ".snakemake", ignore_errors=True)
            make_study(folder, rows)
        report(rows, "dry", time_runs(fresh, repos, args.repeats, "all", "-n", "--quiet"))
        if not args.skip_noop:
            complete_study(done, args.cores)
            report(rows, "no-op", time_runs(done, repos, args.repeats, "all", "--cores", str(args.cores)))
        if args.profile:
            for folder, extra in ((fresh, ["-n"]), (done, ["--cores", str(args.cores)])):
                if folder == done and args.skip_noop:
                    continue
                dump = args.work / f"profile_{rows}_{'dry' if extra == ['-n'] else 'noop'}.prof"
                subprocess.run([sys.executable, "-m", "cProfile", "-o", str(dump), "-m", "snakemake", "all", *extra,
                                "--quiet", "-s", str(REPO / "Snakefile"), "-d", str(folder), "--configfile",
                                str(folder / "config.yaml")], check=True, capture_output=True)  # fmt: skip
                print(f"profile: {dump}")
                print_profile(dump, 25)


if __name__ == "__main__":
    main()
