"""Running the workflow through Snakemake in a temporary folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mediapipe_cache(mediapipe_models) -> Path:
    """Verified MediaPipe models in the test model cache (outside the repository), copied into each run."""
    return Path(next(iter(mediapipe_models.values()))).parent


class Workflow:
    """A Snakemake working directory with its own config."""

    def __init__(self, workdir: Path, config: dict, mediapipe_cache: Path) -> None:
        self.workdir = workdir
        #: The Python that runs snakemake (another path to the same environment models a moved one).
        self.python = sys.executable
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        target = workdir / "resources" / "mediapipe"
        target.mkdir(parents=True, exist_ok=True)
        for model in mediapipe_cache.glob("*.tflite"):
            shutil.copy2(model, target / model.name)

    def command(self, *args: str, cores: int = 2) -> list[str]:
        return [
            self.python, "-m", "snakemake",
            "-s", str(REPO / "Snakefile"),
            "-d", str(self.workdir),
            "--configfile", str(self.config_path),
            "--cores", str(cores),
            *args,
        ]  # fmt: skip

    def env(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, cores: int = 2, check: bool = True) -> subprocess.CompletedProcess:
        """Run snakemake to completion and return the finished process."""
        process = subprocess.run(
            self.command(*args, cores=cores), capture_output=True, text=True, env=self.env(), cwd=self.workdir
        )
        if check and process.returncode != 0:
            raise AssertionError(f"snakemake failed ({process.returncode}):\n{process.stderr[-6000:]}")
        return process

    def popen(self, *args: str, cores: int = 1) -> subprocess.Popen:
        """Start snakemake in its own process group (so it can be killed whole)."""
        return subprocess.Popen(
            self.command(*args, cores=cores),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env(),
            cwd=self.workdir,
            start_new_session=True,
        )

    def planned_jobs(self, *targets: str) -> dict[str, int]:
        """Job counts per rule from the first "Job stats" table of a dry run."""
        output = self.run("-n", *targets).stdout
        counts: dict[str, int] = {}
        lines = output.splitlines()
        if "Job stats:" not in lines:
            return counts
        for line in lines[lines.index("Job stats:") + 1 :]:
            match = re.match(r"^(\w+)\s+(\d+)\s*$", line)
            if match and match.group(1) == "total":
                break
            if match:
                counts[match.group(1)] = int(match.group(2))
        return counts

    def path(self, relative: str) -> Path:
        return self.workdir / relative


@pytest.fixture()
def make_workflow(tmp_path: Path, mediapipe_cache: Path):
    """Factory: ``make_workflow(name, config) -> Workflow`` in a fresh temporary folder."""

    def factory(name: str, config: dict) -> Workflow:
        return Workflow(tmp_path / name, config, mediapipe_cache)

    return factory


def write_sheet(path: Path, rows: list[dict]) -> Path:
    """Write a CSV sample sheet."""
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path
