"""Re-execution on changed inputs: a config key re-runs exactly the rules that read it.

One small study is built once; every case is a Snakemake dry run against it
with the default rerun triggers, so the table costs one study plus a few
seconds of parsing per row.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import Workflow, write_sheet

pytestmark = pytest.mark.integration

#: What reads the provenance record (which records the config): every scientific key re-runs these.
CONFIG_RECORD = {"record_provenance", "write_methods", "summarize_study"}
#: The report pages that read the result tables.
REPORT = CONFIG_RECORD | {"render_report_tables"}
#: Everything downstream of the cohort (a changed draw).
AFTER_COHORT = REPORT | {
    "sample_matched_controls",
    "split_cohort",
    "train_classifier",
    "audit_baselines",
    "repeat_training",
    "evaluate_classifier",
    "explain_classifier",
    "build_average_faces",
    "compare_landmarks",
}
#: Rules that gather every pool round: their inputs wait on the candidate checkpoint, so a dry
#: run plans them when the checkpoint re-runs. What a re-run checkpoint adds (new pool shards'
#: preprocess_images and extract_features) is planned only once it has run: a dry run cannot
#: look past it ("DAG of jobs will be updated after completion").
AFTER_CANDIDATES = AFTER_COHORT | {
    "select_pool_candidates",
    "summarize_preprocessing",
    "draw_contact_sheet",
    "merge_features",
}
#: Held-out evaluation, Grad-CAM and faces each feed the summary and the table pages.
EVALUATION = REPORT | {"evaluate_classifier"}
EXPLANATION = REPORT | {"explain_classifier"}

#: (config override, the rules a dry run plans). Resources (gpu) re-run nothing.
RERUN_TABLE = [
    ({"preprocess": {"contact_sheet_size": 5}}, CONFIG_RECORD | {"draw_contact_sheet"}),
    ({"preprocess": {"mask_method": "landmark_hull"}}, AFTER_CANDIDATES | {"preprocess_images"}),
    ({"sampling": {"ratio": 2}}, AFTER_CANDIDATES),
    ({"training": {"epochs": 2}}, EVALUATION | EXPLANATION | {"train_classifier", "repeat_training"}),
    ({"training": {"gpu": 1}}, set()),
    ({"features": {"gpu": 1}, "explain": {"gpu": 1}}, set()),
    ({"explain": {"n_examples": 2}}, EXPLANATION),
    ({"explain": {"layer": "level1_block1"}}, EXPLANATION),
    ({"faces": {"n_permutations": 200}}, REPORT | {"compare_landmarks"}),
    ({"evaluation": {"n_bootstrap": 300}}, EVALUATION),
    ({"report": {"show_faces": True}}, CONFIG_RECORD | {"build_average_faces"}),
    # Restating values the study already has.
    ({"seed": 42}, set()),
    ({"preprocess": {"mask_method": "face_mesh"}}, set()),
    ({"sampling": {"age_bins": [0, 10, 20, 30, 40, 50, 60, 70], "match_on": ["age"]}}, set()),
]


@pytest.fixture(scope="module")
def finished_study(utkface_dir: Path, mediapipe_cache: Path, tmp_path_factory) -> Workflow:
    """A finished study: 10 women as cases, 24 men as the pool, every target built."""
    folder = tmp_path_factory.mktemp("rerun")
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    adults = meta[(meta["age"] >= 20) & (meta["age"] < 60) & (meta["in_dev_set"] == "")]

    def rows(table: pd.DataFrame) -> list[dict]:
        return [{"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex} for r in table.itertuples()]

    config = {
        "cases": str(write_sheet(folder / "cases.csv", rows(adults[adults["sex"] == "F"].head(10)))),
        "reference_pool": str(write_sheet(folder / "pool.csv", rows(adults[adults["sex"] == "M"].head(24)))),
        "sampling": {"match_on": ["age"], "allow_shortfall": True},
        "evaluation": {"repeats": 1, "n_bootstrap": 200},
        "faces": {"n_permutations": 100},
        "explain": {"max_images": 4, "n_examples": 1},
    }
    flow = Workflow(folder / "study", config, mediapipe_cache)
    flow.run("all")
    assert flow.planned_jobs("all") == {}
    return flow


def planned_rules(flow: Workflow, *args: str) -> set[str]:
    """Rules a dry run of ``all`` plans with the extra snakemake ``args`` (the target rule left out)."""
    return set(flow.planned_jobs("all", *args)) - {"all"}


@pytest.mark.parametrize(
    ("override", "expected"), RERUN_TABLE, ids=[json.dumps(row[0]) for row in RERUN_TABLE]
)
def test_config_key_reruns_exactly_its_rules(
    finished_study: Workflow, tmp_path: Path, override, expected
) -> None:
    """A config file changing one key plans exactly the rules that read it (and what follows)."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(override), encoding="utf-8")
    planned = planned_rules(finished_study, "--configfile", str(finished_study.config_path), str(extra))
    assert planned == expected


def test_restating_seed_on_the_command_line_reruns_nothing(finished_study: Workflow) -> None:
    """``--config seed=42``, the value the study already has, plans no job."""
    assert planned_rules(finished_study, "--config", "seed=42") == set()


def test_moving_the_virtual_environment_reruns_nothing(finished_study: Workflow, tmp_path: Path) -> None:
    """The same environment under another path (model files live in it) plans no job."""
    moved_venv = tmp_path / "elsewhere" / "venv"
    moved_venv.parent.mkdir()
    moved_venv.symlink_to(Path(sys.prefix), target_is_directory=True)
    moved = copy.copy(finished_study)
    moved.python = str(moved_venv / "bin" / Path(sys.executable).name)
    assert planned_rules(moved) == set()
