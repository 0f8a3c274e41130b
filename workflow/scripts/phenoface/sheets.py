"""Reading and validating sample sheets.

A sheet is a CSV with columns ``image`` (path relative to the sheet's folder,
or absolute), ``age`` (integer years), ``sex`` (``M``/``F``; may be empty in a
reference pool) and optionally ``subject_id``. Other columns are kept.

Every problem a user can cause raises :class:`PhenofaceError` naming the
sheet, the row (as the line number a spreadsheet shows, header = line 1),
the column and the fix.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import pandas as pd

from .cohort import GROUPS
from .errors import PhenofaceError

REQUIRED_COLUMNS = ("image", "age", "sex")
SEX_CODES = ("M", "F")
MAX_AGE = 130
SHEET_KINDS = ("cases", "pool", "external", "reference", "sex_reference")
#: The config key that names each kind of sheet (for error messages).
CONFIG_KEYS = {
    "cases": "cases",
    "pool": "reference_pool",
    "external": "evaluation.external",
    "reference": "audit.reference_sheet",
    "sex_reference": "sampling.sex_reference",
}
#: Sheet kinds whose rows may leave sex empty.
SEX_OPTIONAL = ("pool", "reference")


def _line(index: int) -> int:
    """Spreadsheet line number of a 0-based data row (the header is line 1)."""
    return index + 2


#: Spellings that pathlib normalises (``a//b``, ``./a``, ``a/./b``, ``a/``, ``a/.``).
_UNNORMALISED = re.compile(r"//|(^|/)\.(/|$)|/$")


def _join(base: Path, image: str) -> str:
    """``str(base / image)``, without building a Path for the usual, already normal spelling."""
    if _UNNORMALISED.search(image) or image == "":
        return str(base / image)
    return image if image.startswith("/") else f"{base}/{image}" if str(base) != "/" else f"/{image}"


def _float_or_nan(text: str) -> float:
    """``float(text)``, or NaN where Python cannot read it as a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def image_id_for(sheet_kind: str, image: str) -> str:
    """Stable, wildcard-safe identifier of one sheet row's image.

    Built from the file stem (ASCII letters, digits, ``_``; at most 40
    characters) and 8 hex digits of a hash of the sheet kind and the path
    as written, so it survives reordering rows and moving sheet and images
    together, and two sheets never share an id.
    """
    stem = Path(image).stem
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:40] or "img"
    digest = hashlib.sha1(f"{sheet_kind}\0{image}".encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def read_sheet(path: str | os.PathLike, sheet_kind: str, check_files: bool = True) -> pd.DataFrame:
    """Read and validate one sample sheet.

    Parameters
    ----------
    path : path-like
        The CSV sheet.
    sheet_kind : {"cases", "pool", "external", "reference", "sex_reference"}
        Cases and external sheets must have a sex for every row; a pool and
        a reference sheet may leave it empty. An external (labelled
        validation) sheet also needs a ``group`` column (case|control).
    check_files : bool
        Check that every image file exists and is a readable file.

    Returns
    -------
    pandas.DataFrame
        The sheet's columns plus ``image_id``, ``sheet`` (the kind),
        ``path`` (absolute image path), ``row`` (spreadsheet line number);
        ``age`` as int, ``sex`` as ``M``/``F``/empty string,
        ``subject_id`` as string (empty when absent).
    """
    if sheet_kind not in SHEET_KINDS:
        raise ValueError(f"sheet_kind must be one of {SHEET_KINDS}, got {sheet_kind!r}")
    sheet_path = Path(path)
    label = f"{sheet_kind} sheet {sheet_path}"
    if not sheet_path.is_file():
        raise PhenofaceError(
            f"{label}: file not found. Set `{CONFIG_KEYS[sheet_kind]}` "
            "in config/config.yaml to an existing CSV sheet."
        )
    try:
        table = pd.read_csv(sheet_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PhenofaceError(f"{label}: not UTF-8 text ({error}). Save the sheet as UTF-8 CSV.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PhenofaceError(f"{label}: cannot be read as CSV ({error}). Fix the CSV syntax.") from None
    table.columns = [str(c).strip() for c in table.columns]
    required = REQUIRED_COLUMNS + (("group",) if sheet_kind == "external" else ())
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise PhenofaceError(
            f"{label}: missing column(s) {', '.join(missing)}; found {', '.join(table.columns)}. "
            f"A {sheet_kind} sheet needs the columns {', '.join(required)} (and optionally subject_id)."
        )
    if table.empty:
        raise PhenofaceError(f"{label}: has a header but no rows. Add at least one image row.")
    if "subject_id" not in table.columns:
        table["subject_id"] = ""
    reserved = [c for c in ("image_id", "sheet", "path", "row") if c in table.columns]
    if reserved:
        raise PhenofaceError(
            f"{label}: column(s) {', '.join(reserved)} are reserved for phenoface; rename them."
        )

    base = sheet_path.resolve().parent
    # Checked column-wise (a per-row loop cost seconds on 200,000-row pools); the error
    # names the first bad row, and within it the first failing check in column order.
    images = table["image"].astype(str).str.strip()
    age_text = table["age"].astype(str).str.strip()
    age_value = pd.to_numeric(age_text, errors="coerce").astype(float)
    # pandas is stricter than float() (e.g. "1_0"): give those few the old parse.
    unparsed = age_value.isna() & (age_text != "")
    age_value[unparsed] = [_float_or_nan(text) for text in age_text[unparsed]]
    sexes = table["sex"].astype(str).str.strip().str.upper()
    paths = [_join(base, image) for image in images]
    checks = [
        ("image", images == "", lambda i: "empty. Give the image's path."),
        (
            "age",
            ~(age_value.between(0, MAX_AGE) & (age_value == age_value.round())),
            lambda i: (
                f"{age_text[i]!r} is not an integer number of years between 0 and {MAX_AGE}. "
                "Fix or remove the row."
            ),
        ),
        (
            "sex",
            ~(sexes.isin(SEX_CODES) | ((sexes == "") & (sheet_kind in SEX_OPTIONAL))),
            lambda i: (
                f"unknown code {table.at[i, 'sex']!r}. "
                f"Use {'M, F or empty' if sheet_kind in SEX_OPTIONAL else 'M or F'}."
            ),
        ),
    ]
    if sheet_kind == "external":
        checks.append(
            (
                "group",
                ~table["group"].astype(str).str.strip().str.lower().isin(GROUPS),
                lambda i: (
                    f"{table.at[i, 'group']!r} is not case or control. Label each external image case or control."
                ),
            )
        )
    failed = pd.concat([bad for _, bad, _ in checks], axis=1).any(axis=1)
    first_bad = int(failed.to_numpy().argmax()) if failed.any() else len(table)
    if check_files:
        # One stat per row, in row order, up to the first row that already failed a check.
        for index in range(first_bad):
            if not os.path.isfile(paths[index]) or not os.access(paths[index], os.R_OK):
                first_bad = index
                break
    if first_bad < len(table):
        index, line = first_bad, _line(first_bad)
        for column, bad, message in checks:
            if bad.iloc[index]:
                raise PhenofaceError(f"{label}, row {line}, column {column}: {message(index)}")
        if not os.path.isfile(paths[index]):
            raise PhenofaceError(
                f"{label}, row {line}, column image: file {paths[index]} not found. "
                "Paths are relative to the sheet's folder; fix the path or remove the row."
            )
        raise PhenofaceError(
            f"{label}, row {line}, column image: file {paths[index]} is not readable. Fix its permissions."
        )

    table["image"] = images
    if sheet_kind == "external":
        table["group"] = table["group"].str.strip().str.lower()
    table["age"] = age_value.astype(int)
    table["sex"] = sexes
    table["subject_id"] = table["subject_id"].astype(str).str.strip()
    table["path"] = paths
    table["sheet"] = sheet_kind
    table["row"] = [_line(i) for i in range(len(table))]
    table["image_id"] = [image_id_for(sheet_kind, image) for image in table["image"]]

    duplicated = table["path"].duplicated(keep=False)
    if duplicated.any():
        first_path = table.loc[duplicated, "path"].iloc[0]
        lines = table.loc[table["path"] == first_path, "row"].tolist()
        raise PhenofaceError(
            f"{label}: rows {', '.join(map(str, lines))}, column image: the same image {first_path} "
            "is listed more than once. Keep one row per image."
        )
    columns = ["image_id", "sheet", "row", "image", "path", "age", "sex", "subject_id"]
    return table[columns + [c for c in table.columns if c not in columns]]


def check_sheets_disjoint(*tables: pd.DataFrame) -> None:
    """Raise if one image file is listed in two sheets (cases, pool, validation sheets).

    An image in two roles would be counted twice or leak from training into
    validation.
    """
    for first_index, first in enumerate(tables):
        for second in tables[first_index + 1 :]:
            shared = set(first["path"]) & set(second["path"])
            if not shared:
                continue
            path = sorted(shared)[0]
            first_row = int(first.loc[first["path"] == path, "row"].iloc[0])
            second_row = int(second.loc[second["path"] == path, "row"].iloc[0])
            first_kind, second_kind = first["sheet"].iloc[0], second["sheet"].iloc[0]
            raise PhenofaceError(
                f"image {path} is in the {first_kind} sheet (row {first_row}) and in the {second_kind} sheet "
                f"(row {second_row}), column image. An image can have one role only: "
                f"remove it from one sheet ({len(shared)} such image(s) in all)."
            )


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_duplicate_content(table: pd.DataFrame, digests: list[str]) -> None:
    """Raise if two rows (of any sheet) hold byte-identical images.

    ``table`` has ``sheet``, ``row``, ``path``; ``digests`` is aligned with it.
    """
    seen: dict[str, int] = {}
    for position, digest in enumerate(digests):
        if digest in seen:
            first = table.iloc[seen[digest]]
            second = table.iloc[position]
            raise PhenofaceError(
                f"{second['sheet']} sheet row {second['row']} (column image, {second['path']}) has the same "
                f"image content as {first['sheet']} sheet row {first['row']} ({first['path']}). "
                "The same picture must not be counted twice: remove one of the rows."
            )
        seen[digest] = position


def assign_shards(image_ids: list[str], shard_size: int) -> list[int]:
    """Shard index of each image: a hash of its id into a power-of-two count.

    Membership depends only on the image's own id and the shard count, so
    adding, changing or removing one image touches only its own shard. The
    count (``2**ceil(log2(n / shard_size))``) changes only when the sheet
    doubles or halves in size, which re-partitions once.
    """
    n_shards = n_shards_for(len(image_ids), shard_size)
    return [int(hashlib.sha1(i.encode()).hexdigest()[:8], 16) % n_shards for i in image_ids]


def n_shards_for(n_images: int, shard_size: int) -> int:
    """Power-of-two shard count giving about ``shard_size`` images per shard."""
    wanted = max(1, math.ceil(n_images / max(1, shard_size)))
    return 1 << math.ceil(math.log2(wanted))


def read_all_sheets(
    cases: str | os.PathLike,
    pool: str | os.PathLike,
    others: dict[str, str | os.PathLike] | None = None,
    check_files: bool = False,
) -> pd.DataFrame:
    """All sheets as one table (cases, pool, then ``others`` given as ``{path: kind}``)."""
    tables = [
        read_sheet(cases, "cases", check_files=check_files),
        read_sheet(pool, "pool", check_files=check_files),
    ]
    tables += [read_sheet(path, kind, check_files=check_files) for path, kind in (others or {}).items()]
    return pd.concat(tables, ignore_index=True)
