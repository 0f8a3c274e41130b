"""Sample-sheet validation: every user error names sheet, row, column and fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from phenoface import sheets
from phenoface.errors import PhenofaceError
from phenoface.sheets import (
    assign_shards,
    check_sheets_disjoint,
    file_sha256,
    find_duplicate_content,
    image_id_for,
    n_shards_for,
    read_all_sheets,
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
    pool = read_sheet(
        write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/c.jpg,3,M\nimg dir/a.jpg,34,F\n"), "pool"
    )
    with pytest.raises(PhenofaceError, match=r"cases sheet \(row 2\).*pool sheet \(row 3\)"):
        check_sheets_disjoint(cases, pool)


def test_duplicate_content_is_found(sheet_dir: Path) -> None:
    """Byte-identical images under two names are reported with both rows."""
    shutil.copy(sheet_dir / "img dir" / "a.jpg", sheet_dir / "img dir" / "copy.jpg")
    table = read_sheet(
        write(
            sheet_dir / "pool.csv",
            "image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M\nimg dir/copy.jpg,34,F\n",
        ),
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
    good = read_sheet(
        write(sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/a.jpg,34,F,Case\n"), "external"
    )
    assert list(good["group"]) == ["case"]
    with pytest.raises(PhenofaceError, match="row 2, column group"):
        read_sheet(write(sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/a.jpg,34,F,sick\n"), "external")
    with pytest.raises(PhenofaceError, match="missing column"):
        read_sheet(write(sheet_dir / "ext.csv", "image,age,sex\nimg dir/a.jpg,34,F\n"), "external")


def test_validation_sheet_may_not_reuse_a_training_image(sheet_dir: Path) -> None:
    """An image both in the pool and in an external sheet is rejected (it would leak)."""
    pool = read_sheet(write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/a.jpg,34,F\n"), "pool")
    external = read_sheet(
        write(
            sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/c.jpg,3,M,case\nimg dir/a.jpg,34,F,control\n"
        ),
        "external",
    )
    with pytest.raises(PhenofaceError, match=r"pool sheet \(row 2\).*external sheet \(row 3\)"):
        check_sheets_disjoint(pool, external)


@pytest.mark.parametrize(
    ("body", "needle", "fix"),
    [
        ("image,age,sex\nimg dir/a.jpg,131,F\n", "row 2, column age: '131'", "between 0 and 130. Fix or remove the row."),
        ("image,age,sex\nimg dir/a.jpg,-1,F\n", "row 2, column age: '-1'", "Fix or remove the row."),
        ("image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,,M\n", "row 3, column age: ''", "Fix or remove"),
        ("image,age,sex\nimg dir/a.jpg,nan,F\n", "row 2, column age", "Fix or remove the row."),
        ("image,age,sex\nimg dir/a.jpg,inf,F\n", "row 2, column age", "Fix or remove the row."),
        ("image,age,sex\n ,34,F\n", "row 2, column image: empty", "Give the image's path."),
        ("image,age,sex\nimg dir/a.jpg,34,X\n", "unknown code 'X'", "Use M or F."),
        ("image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M,extra,more\n", "cannot be read as CSV", "Fix the CSV syntax."),
        ('image,age,sex\n"img dir/a.jpg,34,F\n', "cannot be read as CSV", "Fix the CSV syntax."),
        ("", "cannot be read as CSV", "Fix the CSV syntax."),
        ("image,age,sex,path\nimg dir/a.jpg,34,F,x\n", "column(s) path are reserved", "rename them."),
        ("image,age,sex,row,sheet\nimg dir/a.jpg,34,F,1,x\n", "column(s) sheet, row are reserved", "rename them."),
        ("image,age\nimg dir/a.jpg,34\n", "missing column(s) sex; found image, age", "needs the columns image, age, sex"),
        ("image,age,sex\nimg dir/nope.jpg,34,F\n", "file ", "fix the path or remove the row."),
    ],
)  # fmt: skip
def test_errors_name_the_fix(sheet_dir: Path, body: str, needle: str, fix: str) -> None:
    """Each user error names the sheet, where the problem is, and the fix the README promises."""
    sheet = write(sheet_dir / "cases.csv", body)
    with pytest.raises(PhenofaceError) as caught:
        read_sheet(sheet, "cases")
    message = str(caught.value)
    assert message.startswith(f"cases sheet {sheet}")
    assert needle in message and fix in message


@pytest.mark.parametrize(("age", "expected"), [("0", 0), ("130", 130), (" 45 ", 45), ("34.0", 34)])
def test_ages_at_the_ends_of_the_range_are_accepted(sheet_dir: Path, age: str, expected: int) -> None:
    """Ages 0 and 130 (the limits), padded and integral-decimal ages are read as int years."""
    table = read_sheet(write(sheet_dir / "cases.csv", f"image,age,sex\nimg dir/a.jpg,{age},F\n"), "cases")
    assert table["age"].tolist() == [expected] and table["age"].dtype.kind == "i"


def test_latin1_sheet_is_rejected_with_the_fix(sheet_dir: Path) -> None:
    """A sheet saved as Latin-1 (a non-ASCII file name) stops with 'not UTF-8' and how to save it."""
    sheet = sheet_dir / "cases.csv"
    sheet.write_bytes("image,age,sex\nimg dir/b é 2.jpg,19,M\n".encode("latin-1"))
    with pytest.raises(PhenofaceError, match=r"not UTF-8 text .*Save the sheet as UTF-8 CSV\.") as caught:
        read_sheet(sheet, "cases")
    assert str(sheet) in str(caught.value)


def test_unreadable_image_names_the_row_and_the_fix(sheet_dir: Path, monkeypatch) -> None:
    """An image the process may not read stops at its row with 'not readable. Fix its permissions.'

    The tests may run as root, for whom chmod 000 still reads, so access is denied through os.access.
    """
    import phenoface.sheets as sheets_module

    denied = (sheet_dir / "img dir" / "c.jpg").resolve()
    real_access = sheets_module.os.access
    monkeypatch.setattr(
        sheets_module.os, "access", lambda path, mode: Path(path) != denied and real_access(path, mode)
    )
    sheet = write(sheet_dir / "cases.csv", "image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M\n")
    with pytest.raises(
        PhenofaceError, match=r"row 3, column image: file .*c\.jpg is not readable\. Fix its permissions\."
    ):
        read_sheet(sheet, "cases")
    assert len(read_sheet(sheet, "cases", check_files=False)) == 2


def test_header_and_cells_are_trimmed_and_subject_ids_kept(sheet_dir: Path) -> None:
    """Spaces around header names and cells are dropped; subject ids are kept as text."""
    sheet = write(
        sheet_dir / "pool.csv",
        " image , age ,sex,subject_id\n img dir/a.jpg ,34, m , 007 \nimg dir/c.jpg,3,,\n",
    )
    table = read_sheet(sheet, "pool")
    assert table["image"].tolist() == ["img dir/a.jpg", "img dir/c.jpg"]
    assert table["sex"].tolist() == ["M", ""]
    assert table["subject_id"].tolist() == ["007", ""]
    assert table["image_id"].tolist() == [
        image_id_for("pool", "img dir/a.jpg"),
        image_id_for("pool", "img dir/c.jpg"),
    ]
    assert list(table.columns[:8]) == [
        "image_id",
        "sheet",
        "row",
        "image",
        "path",
        "age",
        "sex",
        "subject_id",
    ]
    assert (table["sheet"] == "pool").all()


def test_unknown_sheet_kind_is_a_programming_error(tmp_path: Path) -> None:
    """read_sheet refuses a sheet kind it does not know (ValueError, not a user error)."""
    with pytest.raises(ValueError, match="sheet_kind"):
        read_sheet(tmp_path / "x.csv", "controls")


def test_pool_error_names_the_allowed_codes(sheet_dir: Path) -> None:
    """In a pool sheet an unknown sex code lists M, F or empty as the allowed values."""
    with pytest.raises(PhenofaceError, match=r"row 2, column sex: unknown code 'W'\. Use M, F or empty\."):
        read_sheet(write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/a.jpg,34,W\n"), "pool")


def test_read_all_sheets_stacks_every_kind_in_order(sheet_dir: Path) -> None:
    """Cases, pool, then the validation sheets, one table, files not checked unless asked."""
    cases = write(sheet_dir / "cases.csv", "image,age,sex\nimg dir/a.jpg,34,F\nimg dir/lost.jpg,30,M\n")
    pool = write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/c.jpg,3,\nimg dir/gone.jpg,5,M\n")
    external = write(sheet_dir / "ext.csv", "image,age,sex,group\nimg dir/missing.jpg,19,M,control\n")
    table = read_all_sheets(cases, pool, {external: "external"})
    assert table["sheet"].tolist() == ["cases", "cases", "pool", "pool", "external"]
    assert table["row"].tolist() == [2, 3, 2, 3, 2]
    assert table.index.tolist() == [0, 1, 2, 3, 4]
    assert read_all_sheets(cases, pool)["sheet"].tolist() == ["cases", "cases", "pool", "pool"]
    with pytest.raises(PhenofaceError, match="lost.jpg not found"):
        read_all_sheets(cases, pool, check_files=True)
    good_cases = write(sheet_dir / "good.csv", "image,age,sex\nimg dir/a.jpg,34,F\n")
    good_pool = write(sheet_dir / "good_pool.csv", "image,age,sex\nimg dir/c.jpg,3,\n")
    with pytest.raises(PhenofaceError, match="missing.jpg not found"):
        read_all_sheets(good_cases, good_pool, {external: "external"}, check_files=True)
    with pytest.raises(PhenofaceError, match="gone.jpg not found"):
        read_all_sheets(good_cases, pool, check_files=True)


def test_image_id_slug_rules() -> None:
    """The id is the stem reduced to [A-Za-z0-9_] (runs of others become one _), at most 40 characters, then 8 hex digits."""
    assert image_id_for("cases", "x/ab  c(1).jpg").startswith("ab_c_1-")
    assert image_id_for("cases", "x/" + "a" * 60 + ".png").split("-")[0] == "a" * 40
    assert image_id_for("cases", "x/ééé.jpg").startswith("img-")
    digest = image_id_for("pool", "a.jpg").split("-")[1]
    assert len(digest) == 8 and int(digest, 16) >= 0


@pytest.mark.parametrize(
    ("n_images", "shard_size", "expected"),
    [(0, 200, 1), (200, 200, 1), (201, 200, 2), (401, 200, 4), (1000, 0, 1024)],
)
def test_shard_count_is_the_next_power_of_two(n_images: int, shard_size: int, expected: int) -> None:
    """ceil(n / shard_size) rounded up to a power of two (a shard size of 0 counts as 1)."""
    assert n_shards_for(n_images, shard_size) == expected


def test_file_sha256_reads_in_chunks(tmp_path: Path) -> None:
    """The digest is the file's sha256 whatever the chunk size."""
    import hashlib

    blob = bytes(range(256)) * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    assert file_sha256(path) == file_sha256(path, chunk=1000) == hashlib.sha256(blob).hexdigest()


def test_disjoint_check_counts_every_shared_image(sheet_dir: Path) -> None:
    """The message names the first shared image (sorted) and how many there are."""
    body = "image,age,sex\nimg dir/c.jpg,3,M\nimg dir/a.jpg,34,F\n"
    cases = read_sheet(write(sheet_dir / "cases.csv", body), "cases")
    pool = read_sheet(write(sheet_dir / "pool.csv", body), "pool")
    with pytest.raises(PhenofaceError) as caught:
        check_sheets_disjoint(cases, pool)
    message = str(caught.value)
    assert message.startswith(
        f"image {cases['path'][1]} is in the cases sheet (row 3) and in the pool sheet (row 3)"
    )
    assert message.endswith("remove it from one sheet (2 such image(s) in all).")
    check_sheets_disjoint(cases)  # one sheet alone is fine


def test_shard_assignment_is_stable_across_versions() -> None:
    """Shards are the first 8 hex digits of sha1(id) modulo the count: changing that would re-run every shard."""
    assert assign_shards(["a", "b", "c", "d", "e", "f", "g", "h"], 2) == [3, 2, 0, 2, 0, 1, 1, 2]


def test_image_id_keeps_capitals_and_inner_letters() -> None:
    """Capital letters survive in the slug; only underscores are stripped from its ends."""
    assert image_id_for("cases", "AB.jpg") == "AB-0552babb"
    assert image_id_for("cases", "dir/_Xray_.jpg") == "Xray-b9b97e48"


def test_disjoint_check_compares_every_pair(sheet_dir: Path) -> None:
    """Disjoint sheets pass; an overlap between the 2nd and 3rd sheet is still found, with both kinds named."""
    cases = read_sheet(write(sheet_dir / "cases.csv", "image,age,sex\nimg dir/a.jpg,34,F\n"), "cases")
    pool = read_sheet(write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/c.jpg,3,M\n"), "pool")
    reference = read_sheet(write(sheet_dir / "ref.csv", "image,age,sex\nimg dir/c.jpg,3,M\n"), "reference")
    check_sheets_disjoint(cases, pool)
    with pytest.raises(
        PhenofaceError, match=r"in the pool sheet \(row 2\) and in the reference sheet \(row 2\)"
    ):
        check_sheets_disjoint(cases, pool, reference)
    # A disjoint first pair must not end the search: the cases also meet a third sheet.
    late = read_sheet(write(sheet_dir / "ref2.csv", "image,age,sex\nimg dir/a.jpg,3,M\n"), "reference")
    with pytest.raises(PhenofaceError, match=r"in the cases sheet \(row 2\) and in the reference sheet"):
        check_sheets_disjoint(cases, pool, late)


def test_numeric_looking_subject_ids_stay_text(sheet_dir: Path) -> None:
    """Subject ids such as 007 keep their leading zeros (the sheet is read as text)."""
    sheet = write(
        sheet_dir / "cases.csv", "image,age,sex,subject_id\nimg dir/a.jpg,34,F,007\nimg dir/c.jpg,3,M,010\n"
    )
    assert read_sheet(sheet, "cases")["subject_id"].tolist() == ["007", "010"]


def test_duplicate_rows_name_the_first_duplicated_image(sheet_dir: Path) -> None:
    """With two images each listed twice, the message names the first one and both its rows."""
    body = "image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M\n"
    with pytest.raises(PhenofaceError) as caught:
        read_sheet(write(sheet_dir / "cases.csv", body), "cases")
    assert str(caught.value).endswith(
        f"rows 2, 4, column image: the same image {(sheet_dir / 'img dir' / 'a.jpg').resolve()} "
        "is listed more than once. Keep one row per image."
    )


@pytest.mark.parametrize(
    ("name", "kind", "body", "tail"),
    [
        ("nope.csv", "cases", None, "file not found. Set `cases` in config/config.yaml to an existing CSV sheet."),
        ("ext.csv", "external", "image,age,sex,group\nimg dir/a.jpg,34,F,sick\n",
         "row 2, column group: 'sick' is not case or control. Label each external image case or control."),
        ("cases.csv", "cases", "image,age,sex\nimg dir/nope.jpg,34,F\n",
         "not found. Paths are relative to the sheet's folder; fix the path or remove the row."),
        ("cases.csv", "cases", "image,sex\nimg dir/a.jpg,F\n", "missing column(s) age; found image, sex. "
         "A cases sheet needs the columns image, age, sex (and optionally subject_id)."),
        ("ext.csv", "external", "image\nimg dir/a.jpg\n", "missing column(s) age, sex, group; found image. "
         "A external sheet needs the columns image, age, sex, group (and optionally subject_id)."),
        ("cases.csv", "cases", "image,age,sex,image_id\nimg dir/a.jpg,34,F,x\n",
         "column(s) image_id are reserved for phenoface; rename them."),
    ],
)  # fmt: skip
def test_messages_word_for_word(sheet_dir: Path, name: str, kind: str, body: str | None, tail: str) -> None:
    """The end of each message, exactly as the user reads it."""
    path = sheet_dir / name if body is None else write(sheet_dir / name, body)
    with pytest.raises(PhenofaceError) as caught:
        read_sheet(path, kind)
    assert str(caught.value).startswith(f"{kind} sheet {path}") and str(caught.value).endswith(tail)


def test_duplicate_content_message_in_full(sheet_dir: Path) -> None:
    """The duplicate-content message ends with what to do."""
    table = read_sheet(
        write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/a.jpg,34,F\nimg dir/c.jpg,3,M\n"), "pool"
    )
    with pytest.raises(PhenofaceError) as caught:
        find_duplicate_content(table, ["same", "same"])
    assert str(caught.value).endswith("The same picture must not be counted twice: remove one of the rows.")


def test_spellings_of_one_image_resolve_to_one_path(sheet_dir: Path) -> None:
    """Relative spellings pathlib normalises ("./", "//") and absolute paths give the path pathlib gives."""
    absolute = str(sheet_dir.resolve() / "img dir" / "b é 2.jpg")
    sheet = write(sheet_dir / "cases.csv", f"image,age,sex\n./img dir//a.jpg,34,F\n{absolute},19,M\n")
    table = read_sheet(sheet, "cases")
    assert table["path"].tolist() == [str(sheet_dir.resolve() / "img dir" / "a.jpg"), absolute]
    twice = write(sheet_dir / "pool.csv", "image,age,sex\nimg dir/a.jpg,34,F\n./img dir/a.jpg,35,F\n")
    with pytest.raises(PhenofaceError, match="rows 2, 3, column image: the same image"):
        read_sheet(twice, "pool")


@pytest.mark.parametrize("base", ["/", "/data/study"])
@pytest.mark.parametrize("image", ["a.jpg", "img dir/b.jpg", "/abs/c.jpg", "./d.jpg", "e//f.jpg", "g/", ""])
def test_image_path_join_is_pathlibs(base: str, image: str) -> None:
    """The fast path join gives exactly str(Path(base) / image), a sheet in the root folder included."""
    assert sheets._join(Path(base), image) == str(Path(base) / image)


def test_age_in_full_width_digits_is_read(sheet_dir: Path) -> None:
    """An age that Python reads but pandas does not (full-width digits from an East Asian keyboard) is accepted."""
    sheet = write(sheet_dir / "cases.csv", "image,age,sex\nimg dir/a.jpg,\uff13\uff14,F\nimg dir/c.jpg,7,M\n")
    assert read_sheet(sheet, "cases")["age"].tolist() == [34, 7]
