"""The two install routes cannot drift: conda envs in envs/ pin what requirements.lock pins,
and every rule that may run on a cluster node names one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    return pins


def pip_requirements(env_file: Path) -> list[str]:
    """The pip: entries of a conda environment file."""
    env = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    return [
        requirement
        for dependency in env["dependencies"]
        if isinstance(dependency, dict)
        for requirement in dependency.get("pip", [])
    ]


def rule_envs() -> dict[str, str | None]:
    """Each rule or checkpoint of workflow/rules to its ``conda:`` file (None when it has none)."""
    envs = {}
    for path in RULE_FILES:
        blocks = re.split(
            r"^(?:rule|checkpoint) (\w+):\n", path.read_text(encoding="utf-8"), flags=re.MULTILINE
        )
        for name, body in zip(blocks[1::2], blocks[2::2]):
            conda = re.search(r"^    conda:\n\s+\"([^\"]+)\"", body, flags=re.MULTILINE)
            envs[name] = str((path.parent / conda.group(1)).resolve()) if conda else None
    return envs


def local_rules() -> set[str]:
    snakefile = (REPO / "Snakefile").read_text(encoding="utf-8")
    block = re.search(r"^localrules:\n((?:\s+\w+,?\n)+)", snakefile, flags=re.MULTILINE)
    return set(re.findall(r"\w+", block.group(1)))


@pytest.mark.parametrize("env_file", ENV_FILES, ids=[path.name for path in ENV_FILES])
def test_env_pins_equal_the_lock(env_file: Path) -> None:
    """Every pip package of the env is pinned (==) to the version requirements.lock installs."""
    lock = lock_pins()
    requirements = pip_requirements(env_file)
    assert requirements, f"{env_file.name} pins no pip packages"
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"{env_file.name}: {requirement!r} is not pinned with =="
        assert canonical(name) in lock, f"{env_file.name}: {name} is not in requirements.lock"
        assert version == lock[canonical(name)], (
            f"{env_file.name}: {name}=={version}, lock has {lock[canonical(name)]}"
        )


def test_every_cluster_rule_names_an_env() -> None:
    """Each non-local rule has ``conda:`` naming an existing file in envs/."""
    envs = rule_envs()
    assert {"preprocess_images", "train_classifier", "select_pool_candidates"} <= set(envs)
    env_paths = {str(path.resolve()) for path in ENV_FILES}
    missing = {name for name, env in envs.items() if name not in local_rules() and env not in env_paths}
    assert not missing, f"rules without a conda env from envs/: {sorted(missing)}"


def test_snakemake_env_can_submit_to_slurm() -> None:
    """The env that runs snakemake carries the SLURM executor plugin the cluster profile needs."""
    requirements = pip_requirements(REPO / "envs" / "snakemake.yaml")
    names = {canonical(requirement.partition("==")[0]) for requirement in requirements}
    assert {
        "snakemake",
        "snakemake-executor-plugin-slurm",
        "snakemake-executor-plugin-slurm-jobstep",
    } <= names
