"""Shared fixtures: the library on sys.path, the read-only data in ../shared, the model cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
sys.path.insert(0, str(REPO / "workflow" / "tools"))
SHARED = Path(os.environ.get("PHENOFACE_SHARED", REPO.parent / "shared")).resolve()
#: Models the tests download live outside the repository, fetched once per machine, not per checkout.
MODEL_CACHE = Path(os.environ.get("PHENOFACE_TEST_CACHE", Path.home() / ".cache" / "phenoface")).resolve()


def _require(path: Path, hint: str = "tests read ../shared/data; set PHENOFACE_SHARED") -> Path:
    """Return ``path``; fail loudly in CI, skip elsewhere, when it is missing."""
    if path.exists():
        return path
    message = f"test input missing: {path} ({hint})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (faces/, utkface/, edge_cases/)."""
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def faces_dir(shared_data: Path) -> Path:
    """The 656 labelled developer faces with their metadata.csv."""
    return _require(shared_data / "faces")


@pytest.fixture(scope="session")
def edge_cases_dir(shared_data: Path) -> Path:
    """Broken and tricky input files, one per failure mode."""
    return _require(shared_data / "edge_cases")


@pytest.fixture(scope="session")
def utkface_dir(shared_data: Path) -> Path:
    """8,737 UTKFace chips with age, sex and ethnicity."""
    return _require(shared_data / "utkface")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, which the report's browser test drives through Playwright."""
    return _require(Path(os.environ.get("PHENOFACE_CHROMIUM", "/usr/bin/chromium")), "run `make browser`")


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Folder outside the repository for downloaded models (``PHENOFACE_TEST_CACHE``, default ~/.cache/phenoface)."""
    return MODEL_CACHE


@pytest.fixture(scope="session")
def mediapipe_models(model_cache: Path) -> dict[str, Path]:
    """The verified MediaPipe networks in ``model_cache/mediapipe``, fetched on first use only.

    ``make test`` runs two pytest workers: a lock on the cache lets one fetch while the other waits.
    """
    import fcntl

    from phenoface.models import ensure_mediapipe_models

    model_cache.mkdir(parents=True, exist_ok=True)
    with open(model_cache / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return ensure_mediapipe_models(model_cache)
