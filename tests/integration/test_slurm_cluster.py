"""A small study submitted with profiles/slurm to a real one-node SLURM cluster.

The cluster (tests/integration/slurm_cluster.py) runs munged, slurmctld and
slurmd on localhost with a count-only fake GPU. The profile is the one users
copy, with only its SITE lines edited (partition, account, status command,
cores) and shorter waits. A local run of the same study runs alongside as the
reference.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO, Workflow, write_sheet
from .slurm_cluster import FAKE_GPU_FILES, ClusterUnavailable, JobRecord, LocalCluster

pytestmark = pytest.mark.integration

TARGET = "results/evaluation/metrics.json"
# Every non-local rule the target needs with one pool round and no repeats.
CLUSTER_RULES = {
    "check_image_content",
    "convert_backbone",
    "preprocess_images",
    "select_pool_candidates",
    "summarize_preprocessing",
    "sample_matched_controls",
    "extract_features",
    "merge_features",
    "split_cohort",
    "train_classifier",
    "audit_baselines",
    "evaluate_classifier",
}
GPU_RULES = {"extract_features", "train_classifier"}  # features.gpu and training.gpu are 1 below
LOCAL_RULES = {"fetch_mediapipe_models", "place_dlib_models"}  # the localrules that make files
# Killed with scancel while it runs: off the critical path, so its retry costs little.
KILLED_RULE = "convert_backbone"
RUN_TIMEOUT_S = 900  # a hang guard: a loaded 2-core machine takes minutes


@pytest.fixture(scope="module")
def cluster():
    """The running cluster; skipped (failed under CI=true) where the machine cannot run it."""
    try:
        running = LocalCluster().__enter__()
    except ClusterUnavailable as why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the SLURM test must run in CI: {why}")
        pytest.skip(f"no local SLURM cluster: {why}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def study_config(faces_dir: Path, tmp_path_factory) -> dict:
    """12 adult women as cases, 30 adult men as the pool (sex is the 'phenotype'; matched on age)."""
    folder = tmp_path_factory.mktemp("sheets")
    meta = pd.read_csv(faces_dir / "metadata.csv", keep_default_na=False)
    adults = meta[(meta["source"] == "UTKFace") & (meta["age"] >= 20) & (meta["age"] < 60)]

    def rows(table: pd.DataFrame) -> list[dict]:
        return [{"image": str(faces_dir / r.image), "age": r.age, "sex": r.sex} for r in table.itertuples()]

    return {
        "cases": str(write_sheet(folder / "cases.csv", rows(adults[adults["sex"] == "F"].head(12)))),
        "reference_pool": str(write_sheet(folder / "pool.csv", rows(adults[adults["sex"] == "M"].head(30)))),
        "preprocess": {"shard_size": 12},
        "sampling": {"match_on": ["age"], "allow_shortfall": True, "oversample": 2.0, "max_rounds": 1},
        "features": {"gpu": 1},
        "training": {"gpu": 1},
        "evaluation": {"repeats": 0, "n_bootstrap": 100},
    }


def site_profile(folder: Path, cores: int) -> tuple[Path, dict]:
    """profiles/slurm with the SITE lines set for the test cluster; returns (folder, settings)."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text(encoding="utf-8"))
    profile["default-resources"].update(slurm_partition="debug", slurm_account="phenoface-test")
    profile.update(
        {
            "cores": cores,  # the node's CPUs
            "slurm-status-command": "squeue",  # no accounting database here
            "slurm-init-seconds-before-status-checks": 1,  # MinJobAge is 3600
            "latency-wait": 5,
            "slurm-keep-successful-logs": True,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    return folder, profile


def main_log(workdir: Path) -> str:
    """Snakemake's log of its latest run in ``workdir``."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    return logs[-1].read_text(encoding="utf-8") if logs else ""


def logged_jobs(log: str) -> list[tuple[str, str]]:
    """(kind, rule) of every job block in a main log: kind is rule, checkpoint or localrule."""
    return re.findall(r"^\s*(rule|checkpoint|localrule|localcheckpoint) (\w+):$", log, flags=re.MULTILINE)


def record_rules(record: JobRecord, groups: dict[str, str]) -> set[str]:
    """Rules a SLURM job ran: its own, or its group's members (comment ``rule_<group>_<rules>``)."""
    for group in set(groups.values()):
        if record.rule.startswith(f"{group}_"):
            return {rule for rule, name in groups.items() if name == group}
    return {record.rule}


def run_with_scancel(flow, profile: Path, cluster: LocalCluster) -> tuple[int, JobRecord | None]:
    """Run the study through SLURM, scancel the first running KILLED_RULE job; return (exit code, killed)."""
    env = flow.env()
    env.pop("CUDA_VISIBLE_DEVICES", None)  # what GPU jobs see must come from SLURM
    process = subprocess.Popen(
        flow.command(TARGET, "--profile", str(profile), cores=cluster.cpus),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=flow.workdir,
        start_new_session=True,
    )
    killed = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the SLURM run took over {RUN_TIMEOUT_S} s:\n{main_log(flow.workdir)[-4000:]}"
                )
            if killed is None:
                running = [j for j in cluster.jobs() if j.rule == KILLED_RULE and j.state == "RUNNING"]
                if running:
                    time.sleep(1)  # mid-run: its jobstep snakemake has started
                    cluster.cancel(running[0].job_id)
                    killed = running[0]
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    return process.returncode, killed


@dataclass
class SlurmStudy:
    """The study run once through SLURM (with one job scancelled) and once locally, alongside."""

    flow: Workflow
    local: Workflow
    profile: Path
    settings: dict
    log: str
    records: list[JobRecord]
    killed: JobRecord | None

    @property
    def groups(self) -> dict[str, str]:
        return self.settings["groups"]

    def rules_of(self, record: JobRecord) -> set[str]:
        return record_rules(record, self.groups)


@pytest.fixture(scope="module")
def slurm_study(cluster: LocalCluster, study_config, mediapipe_cache: Path, tmp_path_factory) -> SlurmStudy:
    """Both runs, finished; the SLURM job records read right after the SLURM run."""
    folder = tmp_path_factory.mktemp("slurm_study")
    local = Workflow(folder / "local", study_config, mediapipe_cache)
    local_process = local.popen(TARGET, cores=2)
    flow = Workflow(folder / "slurm", study_config, mediapipe_cache)
    for model in (flow.workdir / "resources" / "mediapipe").glob("*"):
        model.unlink()  # so the local rule that fetches them runs on the submit host
    profile, settings = site_profile(folder / "profile", cluster.cpus)
    started = time.monotonic()
    try:
        returncode, killed = run_with_scancel(flow, profile, cluster)
        print(f"\nSLURM run: {time.monotonic() - started:.0f} s")
        local_returncode = local_process.wait(timeout=RUN_TIMEOUT_S)
        print(f"local run (alongside): {time.monotonic() - started:.0f} s")
    finally:
        if local_process.poll() is None:
            os.killpg(local_process.pid, signal.SIGTERM)
            local_process.wait(timeout=60)
    log = main_log(flow.workdir)
    assert returncode == 0, f"SLURM run failed ({returncode}):\n{log[-6000:]}\n{cluster.logs()}"
    assert local_returncode == 0, f"local run failed:\n{main_log(local.workdir)[-6000:]}"
    records = cluster.jobs()
    print("SLURM job records: job id, comment (rule_<rule>[_wildcards_...]), state, --gpus, CPUs")
    for record in records:
        print(
            f"  {record.job_id:4d}  {record.comment:55s} {record.state:10s} gpus={record.gpus} cpus={record.cpus}"
        )
    return SlurmStudy(flow, local, profile, settings, log, records, killed)


def test_every_cluster_job_went_through_sbatch(slurm_study: SlurmStudy) -> None:
    """The jobs SLURM knows are exactly those the run submitted, and they cover every non-local rule."""
    records = slurm_study.records
    submitted = {int(job_id) for job_id in re.findall(r"submitted with SLURM jobid (\d+)", slurm_study.log)}
    assert submitted == {record.job_id for record in records}
    assert {
        rule for kind, rule in logged_jobs(slurm_study.log) if not kind.startswith("local")
    } == CLUSTER_RULES
    assert set().union(*(slurm_study.rules_of(record) for record in records)) == CLUSTER_RULES
    assert {record.name for record in records} == {records[0].name}  # the run's id names every job
    assert {record.batch_host for record in records} == {"localhost"}


def test_preprocessing_shards_are_grouped(slurm_study: SlurmStudy) -> None:
    """The profile's group-components put several preprocessing shards into one job within `cores`."""
    shards = sum(1 for _, rule in logged_jobs(slurm_study.log) if rule == "preprocess_images")
    grouped = [
        record for record in slurm_study.records if slurm_study.rules_of(record) == {"preprocess_images"}
    ]
    assert 0 < len(grouped) < shards
    assert max(record.cpus for record in grouped) >= 2  # the pool's shards side by side
    assert all(record.cpus <= slurm_study.settings["cores"] for record in grouped)


def test_gpu_rules_request_and_see_a_gpu(slurm_study: SlurmStudy) -> None:
    """Rules with gpu: 1 were submitted with --gpus=1 and ran with one CUDA_VISIBLE_DEVICES index;
    no other job asked for a GPU."""
    for record in slurm_study.records:
        assert record.gpus == (1 if slurm_study.rules_of(record) & GPU_RULES else 0), record
    flow = slurm_study.flow
    feature_logs = list(flow.path("logs/extract_features").rglob("*.log"))
    assert len(feature_logs) == len(list(flow.path("results/features").glob("*/*.npz"))) > 0
    for path in [flow.path("logs/train_classifier.log"), *feature_logs]:
        granted = re.findall(r"CUDA_VISIBLE_DEVICES=(\S+)$", path.read_text(), flags=re.MULTILINE)
        assert granted and granted[0] in {str(index) for index in range(len(FAKE_GPU_FILES))}, path
    # The same rule run locally sees only this process's setting: the index above came from SLURM.
    granted_locally = f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}"
    assert granted_locally in slurm_study.local.path("logs/train_classifier.log").read_text()


def test_local_rules_run_on_the_submit_host(slurm_study: SlurmStudy) -> None:
    """The model download ran in the submitting snakemake, never as a SLURM job."""
    assert {rule for kind, rule in logged_jobs(slurm_study.log) if kind.startswith("local")} == LOCAL_RULES
    assert all(not slurm_study.rules_of(record) & LOCAL_RULES for record in slurm_study.records)
    models = sorted(path.name for path in slurm_study.flow.path("resources/mediapipe").glob("*.tflite"))
    assert models == ["face_landmark.tflite", "selfie_segmentation.tflite"]


def test_scancelled_job_is_retried_and_the_study_finishes(
    slurm_study: SlurmStudy, cluster: LocalCluster
) -> None:
    """A job cancelled mid-run is submitted again and completes; a second invocation has nothing to do."""
    killed = slurm_study.killed
    assert killed is not None, "the job to kill was never seen running"
    states = {record.job_id: record.state for record in slurm_study.records}
    assert states.pop(killed.job_id) == "CANCELLED"
    assert set(states.values()) == {"COMPLETED"}
    again = [r for r in slurm_study.records if r.comment == killed.comment and r.job_id > killed.job_id]
    assert len(again) == 1 and "Trying to restart job" in slurm_study.log
    flow = slurm_study.flow
    # Not the mtime trigger: other test runs on a shared machine may touch the venv's model files.
    triggers = ["--rerun-triggers", "input", "params", "code", "software-env"]
    rerun = flow.run(TARGET, "--profile", str(slurm_study.profile), *triggers, cores=cluster.cpus)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    assert len(cluster.jobs()) == len(slurm_study.records)


def test_cohort_split_and_auc_equal_a_local_run(slurm_study: SlurmStudy) -> None:
    """Same sheets and seed: the cluster run draws the same cohort and split and gets the same AUC."""
    flow, local = slurm_study.flow, slurm_study.local
    for table in ("results/cohort/cohort.csv", "results/split/cohort_split.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(flow.path(table)), pd.read_csv(local.path(table)))
    on_cluster = json.loads(flow.path(TARGET).read_text())
    here = json.loads(local.path(TARGET).read_text())
    assert on_cluster["n_test"] == here["n_test"] > 0
    assert on_cluster["auc"] == pytest.approx(here["auc"], abs=0.005)
