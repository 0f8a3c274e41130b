"""Sample-sheet validation: every user error names sheet, row, column and fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from phenoface.errors import PhenofaceError
from phenoface.sheets import (
    assign_shards,
    check_sheets_disjoint,
    file_sha256,
    find_duplicate_content,
    image_id_for,
    n_shards_for,
    read_sheet,
)


@pytest.fixture()
def sheet_dir(tmp_path: Path, faces_dir: Path) -> Path:
    """A folder with three real face images, one with spaces and non-ASCII in its name."""
    images = tmp_path / "img dir"
    images.mkdir()
    shutil.copy(faces_dir / "dev_0001.jpg", images / "a.jpg")
    shutil.copy(faces_dir / "dev_0002.jpg", images / "b é 2.jpg")
    shutil.copy(faces_dir / "dev_0003.jpg", images / "c.jpg")
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_sheet_resolves_paths_and_types(sheet_dir: Path) -> None:
    """A valid sheet gets absolute paths, int ages, upper-case sex and unique ids; extra columns are kept."""
    sheet = write(
        sheet_dir / "cases.csv",
        "image,age,sex,site\nimg dir/a.jpg,34,f,x\nimg dir/b é 2.jpg,19,M,y\n",
    )
    table = read_sheet(sheet, "cases")
    assert list(table["age"]) == [34, 19]
    assert list(table["sex"]) == ["F", "M"]
    assert list(table["site"]) == ["x", "y"]
    assert list(table["row"]) == [2, 3]
    assert Path(table["path"][1]).is_file() and Path(table["path"][1]).is_absolute()
    assert table["image_id"].is_unique
    assert list(table["subject_id"]) == ["", ""]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("image,age,sex\nimg dir/a.jpg,3x,F\n", "row 2, column age"),
        ("image,age,sex\nimg dir/a.jpg,34.5,F\n", "row 2, column age"),
        ("image,age,sex\nimg dir/a.jpg,34,X\n", "row 2, column sex"),
        ("image,age,sex\nimg dir/a.jpg,34,F\nimg dir/missing.jpg,30,M\n", "row 3, column image"),
        ("image,age\nimg dir/a.jpg,34\n", "missing column(s) sex"),
        ("image,age,sex\nimg dir/a.jpg,34,F\nimg dir/a.jpg,35,F\n", "rows 2, 3, column image"),
        ("image,age,sex\n", "no rows"),
    ],
)
def test_user_errors_name_row_and_column(sheet_dir: Path, body: str, needle: str) -> None:
    """Each kind of bad row raises PhenofaceError naming the sheet file, row and column."""
    sheet = write(sheet_dir / "cases.csv", body)
    with pytest.raises(PhenofaceError) as caught:
        read_sheet(sheet, "cases")
    assert needle in str(caught.value)
    assert str(sheet) in str(caught.value)


def test_pool_allows_empty_sex_cases_do_not(sheet_dir: Path) -> None:
    """An empty sex is allowed in a pool sheet and rejected in a cases sheet."""
    body = "image,age,sex\nimg dir/a.jpg,34,\n"
    pool = read_sheet(write(sheet_dir / "pool.csv", body), "pool")
    assert list(pool["sex"]) == [""]
    with pytest.raises(PhenofaceError, match="column sex"):
        read_sheet(write(sheet_dir / "cases.csv", body), "cases")


def test_missing_sheet_says_which_key(tmp_path: Path) -> None:
    """A missing sheet file names the config key to fix."""
    with pytest.raises(PhenofaceError, match="reference_pool"):
        read_sheet(tmp_path / "nope.csv", "pool")


def test_same_image_in_both_sheets_is_rejected(sheet_dir: Path) -> None:
    """One file listed as case and control stops with both row numbers."""
    cases = read_sheet(write(sheet_dir / "cases.csv", "image,age,sex\nimg dir/a.jpg,34,F\n"), "cases")
    pool = read_sheet(write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/c.jpg,3,M\nimg dir/a.jpg,34,F\n"), "pool")
    with pytest.raises(PhenofaceError, match=r"cases sheet \(row 2\).*pool sheet \(row 3\)"):
        check_sheets_disjoint(cases, pool)


def test_duplicate_content_is_found(sheet_dir: Path) -> None:
    """Byte-identical images under two names are reported with both rows."""
    shutil.copy(sheet_dir / "img dir" / "a.jpg", sheet_dir / "img dir" / "copy.jpg")
    table = read_sheet(
        write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M\nimg dir/copy.jpg,34,F\n"),
        "pool",
    )
    digests = [file_sha256(p) for p in table["path"]]
    with pytest.raises(PhenofaceError, match=r"pool sheet row 4 .*same image content as pool sheet row 2"):
        find_duplicate_content(table, digests)


def test_image_ids_are_stable_and_distinct_between_sheets() -> None:
    """Ids depend on sheet kind and path only, and are wildcard-safe."""
    assert image_id_for("cases", "x/é a.jpg") == image_id_for("cases", "x/é a.jpg")
    assert image_id_for("cases", "a.jpg") != image_id_for("pool", "a.jpg")
    assert all(c.isalnum() or c in "_-" for c in image_id_for("cases", "dir/é a (1).jpg"))


def test_shards_are_stable_when_images_are_added() -> None:
    """Adding images below the next power of two leaves every other image in its shard."""
    ids = [f"img{i}" for i in range(100)]
    before = dict(zip(ids, assign_shards(ids, 16)))
    after = dict(zip(ids + ["new"], assign_shards(ids + ["new"], 16)))
    assert n_shards_for(100, 16) == n_shards_for(101, 16) == 8
    assert all(before[i] == after[i] for i in ids)
    sizes = pd.Series(list(before.values())).value_counts()
    assert len(sizes) == 8 and sizes.max() < 30


def test_external_sheet_needs_a_group(sheet_dir: Path) -> None:
    """An external validation sheet needs group = case|control on every row."""
    good = read_sheet(write(sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/a.jpg,34,F,Case\n"), "external")
    assert list(good["group"]) == ["case"]
    with pytest.raises(PhenofaceError, match="row 2, column group"):
        read_sheet(write(sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/a.jpg,34,F,sick\n"), "external")
    with pytest.raises(PhenofaceError, match="missing column"):
        read_sheet(write(sheet_dir / "ext.csv", "image,age,sex\nimg dir/a.jpg,34,F\n"), "external")


def test_validation_sheet_may_not_reuse_a_training_image(sheet_dir: Path) -> None:
    """An image both in the pool and in an external sheet is rejected (it would leak)."""
    pool = read_sheet(write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/a.jpg,34,F\n"), "pool")
    external = read_sheet(
        write(sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/c.jpg,3,M,case\nimg dir/a.jpg,34,F,control\n"),
        "external",
    )
    with pytest.raises(PhenofaceError, match=r"pool sheet \(row 2\).*external sheet \(row 3\)"):
        check_sheets_disjoint(pool, external)
