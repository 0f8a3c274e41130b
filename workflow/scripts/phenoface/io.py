"""Atomic file writing.

A killed job must never leave a half-written output behind, so every writer
here writes to a temporary file in the destination folder and renames it
into place (``os.replace`` is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final destination.
    suffix : str, optional
        Suffix for the temporary file (some writers pick the format from
        it, e.g. ``.png`` for OpenCV). Defaults to the suffix of ``path``.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=final.parent, prefix=f".{final.name}.", suffix=suffix or final.suffix or ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes owner-only files; give the result the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (numpy scalars allowed)."""

    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    write_text(path, json.dumps(obj, indent=2, default=default, allow_nan=False) + "\n")


def write_table(path: str | os.PathLike, table, sep: str | None = None) -> None:
    """Write a pandas DataFrame atomically; TSV for ``.tsv``, else CSV."""
    path = Path(path)
    if sep is None:
        sep = "\t" if path.suffix == ".tsv" else ","
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep=sep, index=False)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB (HxWx3) or grey (HxW) uint8 image as PNG atomically."""
    import cv2

    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8, got {array.dtype}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.tobytes())


def read_rgb_png(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image (a chip PNG) as an RGB uint8 ``(h, w, 3)`` array.

    Raises
    ------
    PhenofaceError
        When the file is missing or not readable as a colour image.
    """
    import cv2

    from .errors import PhenofaceError

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PhenofaceError(f"{path}: chip missing or unreadable; rerun preprocessing for its shard")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def save_figure(path: str | os.PathLike, figure, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically; the format follows the suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
