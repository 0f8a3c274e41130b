"""Atomic outputs: a writer killed in the middle of a write never leaves a partial file in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenoface import io

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"

#: A child process that starts one of phenoface.io's writers, lets the underlying
#: library write part of the file, tells the parent (marker file) and waits to be killed.
CHILD = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
import pandas as pd
from phenoface import io

target, marker, kind = sys.argv[2], Path(sys.argv[3]), sys.argv[4]


def stall(path, partial):
    with open(path, "wb") as handle:
        handle.write(partial)
        handle.flush()
        os.fsync(handle.fileno())
    marker.touch()
    time.sleep(300)


if kind == "table":
    pd.DataFrame.to_csv = lambda self, path, **kw: stall(path, b"image_id,status\\nimg1,o")
    io.write_table(target, pd.DataFrame({"image_id": ["img1"], "status": ["ok"]}))
elif kind == "json":
    Path.write_text = lambda self, text, encoding=None: stall(self, text[: len(text) // 2].encode())
    io.write_json(target, {"auc": 0.5, "warnings": ["x" * 200]})
elif kind == "npz":
    np.savez = lambda path, **arrays: stall(path, b"PK\\x03\\x04partial")
    io.write_npz(target, pooled=np.zeros((3, 256), np.float32))
elif kind == "png":
    Path.write_bytes = lambda self, data: stall(self, data[: len(data) // 2])
    io.write_png(target, np.zeros((150, 150, 3), np.uint8))
"""


@pytest.mark.parametrize(
    ("kind", "name", "had_old_version"),
    [
        ("table", "qc.tsv", True),
        ("json", "metrics.json", False),
        ("npz", "f.npz", True),
        ("png", "chip.png", False),
    ],
)
def test_writer_killed_inside_a_write_leaves_no_partial_output(
    tmp_path: Path, kind: str, name: str, had_old_version: bool
) -> None:
    """SIGKILL while the file is half written: the output is absent (or still the old one), never partial."""
    target = tmp_path / "out" / name
    old = b"the previous complete version\n"
    if had_old_version:
        target.parent.mkdir()
        target.write_bytes(old)
    marker = tmp_path / "inside_write"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(SCRIPTS), str(target), str(marker), kind],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), child.stderr.read().decode() if child.poll() is not None else "child never wrote"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    if had_old_version:
        assert target.read_bytes() == old
    else:
        assert not target.exists()
    # The kill hit inside a write: the partial bytes sit in a hidden temporary file beside the target.
    partial = [p for p in target.parent.iterdir() if p.name.startswith(f".{name}.")]
    assert len(partial) == 1 and 0 < partial[0].stat().st_size


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    """An exception inside atomic_path leaves the destination as it was and no temporary file."""
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_atomic_write_replaces_with_umask_mode(tmp_path: Path) -> None:
    """A finished write replaces the destination whole, with the usual umask mode (not mkstemp's 0600)."""
    target = tmp_path / "deep" / "er" / "metrics.json"
    io.write_json(target, {"auc": np.float32(0.75), "ids": np.arange(2)})
    previous = os.umask(0o022)
    os.umask(previous)
    assert target.read_text() == '{\n  "auc": 0.75,\n  "ids": [\n    0,\n    1\n  ]\n}\n'
    assert target.stat().st_mode & 0o777 == 0o666 & ~previous
    io.write_table(target.with_suffix(".tsv"), pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert target.with_suffix(".tsv").read_text() == "a\tb\n1\tx\n2\ty\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json", "metrics.tsv"]


def test_json_refuses_nan(tmp_path: Path) -> None:
    """NaN is not JSON: write_json raises instead of writing a file other tools cannot read."""
    with pytest.raises(ValueError):
        io.write_json(tmp_path / "m.json", {"auc": float("nan")})
    assert not (tmp_path / "m.json").exists()
