"""The provenance record names the config, file hashes, code commit and package versions."""

from __future__ import annotations

import hashlib
from pathlib import Path

from phenoface.provenance import code_version, package_versions, provenance


def test_record_hashes_files_and_keeps_config(tmp_path: Path, repo_root: Path) -> None:
    """Each named file gets its sha256; the config is kept as given; numpy's version is found."""
    sheet = tmp_path / "cases.csv"
    sheet.write_text("image,age,sex\na.jpg,3,F\n")
    record = provenance({"seed": 7}, {"cases_sheet": str(sheet)}, repo_root)
    assert record["config"] == {"seed": 7}
    assert record["files"]["cases_sheet"]["sha256"] == hashlib.sha256(sheet.read_bytes()).hexdigest()
    assert record["packages"]["numpy"] and record["packages"]["keras"].startswith("3.")
    assert package_versions(("no-such-package-xyz",)) == {"no-such-package-xyz": None}


def test_code_version_outside_git_is_unknown(tmp_path: Path) -> None:
    """A folder that is no git checkout gives no commit rather than an error."""
    assert code_version(tmp_path) == {"commit": None, "dirty": None}
