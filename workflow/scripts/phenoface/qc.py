"""The QC vocabulary: the status each image ends in, the QC table's columns, its one reader.

Every input image ends in exactly one row of a QC table (a shard's
``results/preprocess/<batch>/<shard>.tsv``, or ``results/qc/preprocess.tsv``
for all sheets); every stage reads them through :func:`read_qc`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from .errors import PhenofaceError

OK = "ok"
NOT_NEEDED = "not_needed"
#: Every status an image can end in, with its meaning.
STATUSES = {
    OK: "aligned, masked chip written",
    "unreadable": "file empty, truncated, corrupt or not an image",
    "no_face": "the HOG detector found no face",
    "too_small": "the best face is smaller than preprocess.min_face_size",
    "multiple_faces": "several faces and preprocess.multi_face is reject",
    "error": "an unexpected failure on this image (see detail and the log)",
    NOT_NEEDED: "pool row never preprocessed: not needed as a control candidate",
}
#: Statuses of images that were tried and gave no chip.
FAILED_STATUSES = tuple(status for status in STATUSES if status not in (OK, NOT_NEEDED))

#: Columns of a QC table, in order.
QC_COLUMNS = [
    "image_id", "sheet", "path", "chip", "masked_chip", "mask", "landmarks", "status", "detail",
    "n_faces", "det_score", "face_width", "image_width", "image_height", "image_format",
    "mask_method", "mask_fraction", "eye_dy", "seconds",
]  # fmt: skip
#: Columns read as numbers (empty = NaN); every other column is text (empty = "").
NUMERIC_COLUMNS = (
    "n_faces", "det_score", "face_width", "image_width", "image_height", "mask_fraction", "eye_dy", "seconds",
)  # fmt: skip
#: QC column holding each kind of chip (``features.input``, ``faces.input``).
CHIP_COLUMNS = {"chip": "chip", "masked": "masked_chip"}


def read_qc(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read one QC table, or several concatenated (an empty list gives no rows).

    Text columns stay text with empty cells as ``""``; numeric columns are
    numbers with empty cells as NaN.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    tables = [
        pd.read_csv(
            path,
            sep="\t",
            dtype={column: str for column in QC_COLUMNS if column not in NUMERIC_COLUMNS},
            keep_default_na=False,
            na_values={column: [""] for column in NUMERIC_COLUMNS},
        )
        for path in paths
    ]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=QC_COLUMNS)


def ok_ids(qc: pd.DataFrame) -> set[str]:
    """Ids of the images whose status is ``ok``."""
    return set(qc.loc[qc["status"] == OK, "image_id"])


def chip_column(source: str, key: str) -> str:
    """The QC column of chip kind ``source`` (``chip`` or ``masked``); ``key`` names the config key."""
    if source not in CHIP_COLUMNS:
        raise PhenofaceError(f"{key} is {source!r}; use one of {sorted(CHIP_COLUMNS)}")
    return CHIP_COLUMNS[source]


def ok_chip_paths(qc: pd.DataFrame, source: str, table_name: str = "qc table") -> tuple[list[str], list[str]]:
    """Image ids and ``source`` chip paths of the ok rows of a QC table (``features.input``)."""
    column = chip_column(source, "features.input")
    missing = {"image_id", "status", column} - set(qc.columns)
    if missing:
        raise PhenofaceError(f"{table_name}: missing columns {sorted(missing)}; rerun preprocessing")
    ok = qc[qc["status"] == OK]
    empty = ok[ok[column].isna() | (ok[column].astype(str).str.strip() == "")]
    if len(empty):
        first = empty.iloc[0]["image_id"]
        raise PhenofaceError(
            f"{table_name}: {len(empty)} ok rows have no {column} path (first: {first}); rerun preprocessing"
        )
    return ok["image_id"].astype(str).tolist(), ok[column].astype(str).tolist()
