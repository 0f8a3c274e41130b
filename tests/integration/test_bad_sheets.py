"""A bad sample sheet stops a real (not dry) Snakemake run before any job starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("cases_text", "encoding", "expected"),
    [
        pytest.param(
            "image,age,sex\nimages/a.jpg,131,F\n", "utf-8", "row 2, column age: '131'", id="age-131"
        ),
        pytest.param("image,age,sex\nimages/é.jpg,40,F\n", "latin-1", "not UTF-8 text", id="latin-1"),
    ],
)
def test_bad_sheet_stops_before_any_job(
    make_workflow, faces_dir: Path, tmp_path: Path, cases_text: str, encoding: str, expected: str
) -> None:
    """Snakemake exits non-zero with the sheet's message and fix, and no rule ran (no results/, no logs/)."""
    images = tmp_path / "images"
    images.mkdir()
    for source, name in (("dev_0001.jpg", "a.jpg"), ("dev_0001.jpg", "é.jpg"), ("dev_0002.jpg", "pool.jpg")):
        shutil.copy(faces_dir / source, images / name)
    cases = tmp_path / "cases.csv"
    cases.write_bytes(cases_text.encode(encoding))
    pool = tmp_path / "pool.csv"
    pool.write_text("image,age,sex\nimages/pool.jpg,40,F\n", encoding="utf-8")
    flow = make_workflow("bad", {"cases": str(cases), "reference_pool": str(pool)})
    process = flow.run("all", check=False)
    output = process.stdout + process.stderr
    assert process.returncode != 0
    assert f"cases sheet {cases}" in output and expected in output
    assert "Fix or remove the row." in output or "Save the sheet as UTF-8 CSV." in output
    assert not flow.path("results").exists() and not flow.path("logs").exists()
    assert "Job stats" not in output and "localrule" not in output
