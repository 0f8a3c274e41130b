"""Mutation testing of the modules that decide results, one module at a time.

Each module's mutants (mutmut 3, pinned in requirements.lock) run against that
module's own unit tests only, so a run fits a small machine and a mutant counts
as killed only when the tests written for that module notice it. mutmut names a
mutant after the importable module, so every module is staged in its own folder
``.mutation/<name>/`` as ``phenoface/`` (the library) plus ``tests/``; results
stay cached there, and a second run only re-tests mutants of changed functions.

The score of a module is killed / (all - equivalent): mutants with no test at
all and those that survive both count against it; a timeout counts as killed.
Equivalent mutants (no observable change) are listed with a one-line reason in
``bench/mutation_equivalents/<name>.txt``, each with the signature of its diff
(its changed lines): a survivor is excused when its function and signature match
a listed one, so mutmut's renumbering after an edit neither loses an entry nor
lets a number excuse another mutant; an entry whose code changed matches nothing
and is reported, to be re-checked.

Usage (from the repository root; ``make mutation`` runs every module)::

    nice -n 10 .venv/bin/python bench/mutation.py stats sheets
    .venv/bin/python bench/mutation.py --report stats   # scores and survivors, no run
    .venv/bin/python bench/mutation.py --sign stats phenoface.stats.x_f__mutmut_3  # a line to list it
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
TOOLS = REPO / "workflow" / "tools"
WORK = REPO / ".mutation"
EQUIVALENTS = REPO / "bench" / "mutation_equivalents"


@dataclass(frozen=True)
class Target:
    """A library module to mutate (``phenoface/<module>.py``) and the unit tests that own it."""

    source: str
    tests: tuple[str, ...]
    functions: str = "*"  # mutmut name pattern after the module, e.g. "x_evaluation_warnings*"
    #: Tests of an entry script that live in the module's test file but train models (tens of
    #: seconds each): left out, so a mutant that only they would catch counts as not killed.
    deselect: tuple[str, ...] = ()


TARGETS = {
    "stats": Target("phenoface/stats.py", ("tests/unit/test_stats.py",)),
    "audit": Target(
        "phenoface/audit.py",
        ("tests/unit/test_audit.py",),
        deselect=(
            "test_metrics_json_identical_for_same_seed",
            "test_repeat_training_script_writes_repeats_and_summary",
        ),
    ),
    "split": Target("phenoface/split.py", ("tests/unit/test_split.py",)),
    "sheets": Target("phenoface/sheets.py", ("tests/unit/test_sheets.py",)),
    "sampling": Target("phenoface/sampling.py", ("tests/unit/test_sampling.py",)),
    "evaluation_warnings": Target(
        "phenoface/evaluation.py", ("tests/unit/test_evaluation_warnings.py",), "x_evaluation_warnings*"
    ),
    "shape_tests": Target(
        "phenoface/shape_tests.py", ("tests/unit/test_shape.py", "tests/unit/test_shape_tests.py")
    ),
    "gradcam": Target("phenoface/gradcam.py", ("tests/unit/test_gradcam.py",)),
}


def module_name(target: Target) -> str:
    """The dotted name mutmut gives the module (its path in the stage)."""
    return target.source[: -len(".py")].replace("/", ".")


def entry_points() -> list[Path]:
    """Rule scripts and command-line tools: tests import them by bare name, so they sit beside the library."""
    return sorted([*SCRIPTS.glob("*.py"), *TOOLS.glob("*.py")])


def stage(name: str, target: Target) -> Path:
    """(Re)build ``.mutation/<name>/`` with the current library, scripts and tests.

    The previous ``mutants/`` folder is kept so mutmut re-tests only mutants of
    functions that changed.
    """
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("phenoface", "tests"):
        shutil.rmtree(folder / stale, ignore_errors=True)
    # Fresh modification times (shutil.copy, not copy2): mutmut regenerates mutants/ from a source
    # newer than its copy there, and keeps the verdicts of functions whose code did not change.
    shutil.copytree(
        SCRIPTS / "phenoface",
        folder / "phenoface",
        ignore=shutil.ignore_patterns("__pycache__"),
        copy_function=shutil.copy,
    )
    for script in entry_points():
        shutil.copy2(script, folder / script.name)
    (folder / "tests").mkdir()
    shutil.copy2(REPO / "tests" / "conftest.py", folder / "tests" / "conftest.py")
    shutil.copytree(
        REPO / "tests" / "unit", folder / "tests" / "unit", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO / "pytest.ini", folder / "pytest.ini")
    # mutmut copies the library into mutants/; the entry scripts (imported by some tests) and the
    # tests are copied again on every run (also_copy), so a changed test counts at once.
    (folder / "setup.cfg").write_text(
        "[mutmut]\n"
        + "source_paths =\n    phenoface/\n"
        + f"only_mutate = {target.source}\n"
        + "also_copy =\n"
        + "".join(f"    {script.name}\n" for script in entry_points())
        # mutmut's wall limit per mutant is 15 x (the tests' own call time + timeout_constant); the
        # call time leaves out fixture setup (real faces through dlib, a backbone converted), so
        # with the default constant of 1 s a test of 0.0 s behind a 5 s fixture timed out on a
        # loaded machine and a survivor would have counted as a killed "timeout".
        + "timeout_constant = 10\n"
        + "pytest_add_cli_args_test_selection =\n"
        + "".join(f"    {test}\n" for test in target.tests)
        + "".join(f"    --deselect\n    {target.tests[0]}::{test}\n" for test in target.deselect),
        encoding="utf-8",
    )
    return folder


def run(
    name: str,
    target: Target,
    max_children: int,
    rerun_survivors: bool,
    survivors_only: bool,
    same_as: Path | None,
) -> None:
    """Stage the module and let mutmut test every new or changed mutant.

    mutmut keeps a mutant's verdict until its function changes; with
    ``rerun_survivors`` the survivors of an earlier run are named explicitly so
    that they meet the current tests again (after tests were added). With
    ``survivors_only`` nothing else runs (mutants never checked stay unchecked).
    With ``same_as`` (the ``.mutation`` folder of an earlier, partial run) exactly
    the mutants that run checked are tested again, so before and after compare
    the same mutants.
    """
    if same_as is not None:
        before = json.loads(
            (same_as / name / "mutants" / f"{target.source}.meta").read_text(encoding="utf-8")
        )
        earlier = sorted(m for m, code in before["exit_code_by_key"].items() if code is not None)
        survivors_only = True
        rerun_survivors = False
    else:
        earlier = [
            m for m, s in results(name, target).items() if s not in ("killed", "timeout", "not checked")
        ]
        earlier = earlier if rerun_survivors or survivors_only else []
    folder = stage(name, target)
    env = dict(os.environ)
    env["PHENOFACE_SHARED"] = str(Path(os.environ.get("PHENOFACE_SHARED", REPO.parent / "shared")).resolve())
    env.pop("CI", None)
    # mutmut forks one child per mutant from a parent that has already run the tests. A
    # thread pool started there (OpenMP in scikit-learn, BLAS) is not fork-safe: the child
    # blocks in it, idle, until mutmut's timer kills it, and a hung survivor would count as a
    # killed "timeout". One thread per pool keeps every child runnable. TensorFlow has two
    # pools: with only the inter-op one at 1, a child's first convolution still waits forever
    # on the intra-op (Eigen) pool's threads, which fork did not copy. Compiled TensorFlow
    # functions (Model.predict, fit) still wait on the inter-op pool whatever its size, so
    # the tests mutation runs call Keras models eagerly (see test_gradcam._run).
    for variable in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTEROP_THREADS",
        "TF_NUM_INTRAOP_THREADS",
    ):
        env[variable] = "1"
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(max_children)]
    passes = (
        []
        if survivors_only
        else [[f"{module_name(target)}.{target.functions}"] if target.functions != "*" else []]
    )
    if earlier:
        passes.append(earlier)
    for names in passes:
        print(f"[{name}] mutmut run on {len(names) or 'all'} mutant name(s) in {folder}", flush=True)
        done = subprocess.run(
            command + names, cwd=folder, env=env, check=False, capture_output=True, text=True
        )
        (folder / "last_run.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            print(f"[{name}] mutmut exited {done.returncode}; see {folder / 'last_run.log'}", flush=True)


#: Run in the staged folder: mutmut finds mutants relative to the working directory and keeps what
#: it found in module state, so each module's diffs come from a fresh interpreter.
_DIFFS_CODE = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
json.dump({m: get_diff_for_mutant(m) for m in json.load(sys.stdin)}, sys.stdout)
"""


def mutant_diffs(name: str, mutants: list[str]) -> dict[str, str]:
    """``{mutant: diff against the original function}`` from the staged ``.mutation/<name>/``."""
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS_CODE],
        cwd=WORK / name,
        input=json.dumps(mutants),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"could not read the diffs of {name}'s mutants:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def signature(diff: str) -> str:
    """Ten hex digits over a diff's changed lines (not its headers or line numbers)."""
    changed = [
        line
        for line in diff.splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("---", "+++"))
    ]
    return hashlib.sha256("\n".join(changed).encode("utf-8")).hexdigest()[:10]


def write_survivor_diffs(name: str, survivors: list[str]) -> Path:
    """Write the diff of every surviving mutant to ``.mutation/<name>/survivors.diff`` for triage."""
    diffs = mutant_diffs(name, survivors)
    text = "".join(f"# {mutant} {signature(diffs[mutant])}\n{diffs[mutant]}\n\n" for mutant in survivors)
    out = WORK / name / "survivors.diff"
    out.write_text(text, encoding="utf-8")
    return out


@dataclass(frozen=True)
class Equivalent:
    """A mutant recorded as equivalent: the signature of its diff when it was checked, and why."""

    signature: str
    reason: str


def read_equivalents(name: str) -> dict[str, Equivalent]:
    """``{mutant name: Equivalent}`` from ``bench/mutation_equivalents/<name>.txt``.

    A line is ``<mutant> <signature> <reason>``; ``#`` starts a comment line.
    """
    path = EQUIVALENTS / f"{name}.txt"
    equivalents = {}
    if path.exists():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            mutant, sig, reason = (line.split(maxsplit=2) + ["", ""])[:3]
            if len(sig) != 10 or not reason:
                raise SystemExit(f"{path}:{number}: expected '<mutant> <signature> <reason>', got {line!r}")
            equivalents[mutant] = Equivalent(sig, reason.strip())
    return equivalents


def results(name: str, target: Target) -> dict[str, str]:
    """``{mutant name: status}`` from mutmut's per-file record."""
    from fnmatch import fnmatch

    meta = WORK / name / "mutants" / f"{target.source}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    statuses = {
        1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout",
        -24: "timeout", 24: "timeout", 152: "timeout", None: "not checked",
    }  # fmt: skip
    pattern = f"{module_name(target)}.{target.functions}"
    return {key: statuses.get(code, "suspicious") for key, code in codes.items() if fnmatch(key, pattern)}


def function_of(mutant: str) -> str:
    """The mutated function's part of a mutant name (mutmut appends ``__mutmut_<n>``)."""
    return mutant.rsplit("__mutmut_", 1)[0]


def score(name: str, target: Target) -> dict:
    """Counts and score of one module over the mutants mutmut has checked.

    A run stopped early leaves mutants "not checked": they are counted apart and
    left out of the score, which then covers the checked ones only. A surviving
    mutant is equivalent when its function and the signature of its diff match a
    listed one, whatever its number: mutmut renumbers a function's mutants after
    an edit. A listed entry that matches no survivor is "unmatched" (killed since,
    or its code changed) and excuses nothing.
    """
    statuses = results(name, target)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    checked = {m: s for m, s in statuses.items() if s != "not checked"}
    listed = read_equivalents(name)
    listed_keys = {(function_of(m), e.signature) for m, e in listed.items()}
    listed_functions = {function_of(m) for m in listed}
    candidates = sorted(
        m for m, s in checked.items() if s not in ("killed", "timeout") and function_of(m) in listed_functions
    )
    diffs = mutant_diffs(name, candidates) if candidates else {}
    equivalent = sorted(m for m in candidates if (function_of(m), signature(diffs[m])) in listed_keys)
    matched = {(function_of(m), signature(diffs[m])) for m in equivalent}
    unmatched = sorted(m for m, e in listed.items() if (function_of(m), e.signature) not in matched)
    killed = sum(s in ("killed", "timeout") for s in checked.values())
    relevant = len(checked) - len(equivalent)
    survivors = sorted(
        m for m, s in checked.items() if s not in ("killed", "timeout") and m not in equivalent
    )
    return {
        "module": name,
        "mutants": len(statuses),
        "checked": len(checked),
        "equivalent": len(equivalent),
        "unmatched": unmatched,
        "killed": killed,
        "score": killed / relevant if relevant else float("nan"),
        "counts": counts,
        "survivors": survivors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to test (default: all of {', '.join(TARGETS)})")
    parser.add_argument("--report", action="store_true", help="only report scores of earlier runs")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument(
        "--survivors", action="store_true", help="list survivors; their diffs go to survivors.diff"
    )
    parser.add_argument(
        "--rerun-survivors", action="store_true", help="test earlier survivors again (new tests)"
    )
    parser.add_argument("--survivors-only", action="store_true", help="only test earlier survivors again")
    parser.add_argument(
        "--same-as", type=Path, help="test exactly the mutants an earlier (partial) run checked"
    )
    parser.add_argument(
        "--sign",
        nargs="+",
        metavar=("MODULE", "MUTANT"),
        help="print '<mutant> <signature>' for each mutant of MODULE, to list it as equivalent",
    )
    args = parser.parse_args()
    if args.sign:
        module, *mutants = args.sign
        for mutant, diff in mutant_diffs(module, mutants).items():
            print(f"{mutant} {signature(diff)}")
        return
    names = args.modules or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(TARGETS)}")
    rows = []
    for name in names:
        if not args.report:
            run(
                name,
                TARGETS[name],
                args.max_children,
                args.rerun_survivors,
                args.survivors_only,
                args.same_as,
            )
        rows.append(score(name, TARGETS[name]))
    print(f"{'module':<22}{'mutants':>8}{'checked':>8}{'equiv.':>8}{'killed':>8}{'score':>8}  statuses")
    for row in rows:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(row["counts"].items()))
        print(
            f"{row['module']:<22}{row['mutants']:>8}{row['checked']:>8}{row['equivalent']:>8}{row['killed']:>8}"
            f"{row['score']:>8.1%}  {detail}"
        )
        if row["unmatched"]:
            print(
                f"    {len(row['unmatched'])} listed equivalent(s) match no survivor (killed, or code changed): "
                + ", ".join(row["unmatched"])
            )
        if args.survivors and row["survivors"]:
            print(
                f"    {len(row['survivors'])} survivors: {write_survivor_diffs(row['module'], row['survivors'])}"
            )


if __name__ == "__main__":
    main()
