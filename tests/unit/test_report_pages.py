"""Model card and result-table pages of the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from phenoface.model_card import render_model_card
from phenoface.report_tables import MAX_ROWS, TABLES, read_result_table, render_table_page


def test_model_card_states_use_masks_labels_and_licences(repo_root: Path) -> None:
    """The card says research-only, names this run's mask method, MegaAge estimates and the iBUG restriction."""
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    html = render_model_card(config)
    assert "not a diagnostic" in html and "<code>face_mesh</code>" in html and "(FCN)" in html
    assert "MegaAge" in html and "estimates" in html
    assert "iBUG 300-W" in html and "commercial" in html and "Apache-2.0" in html
    assert "this report: false" in html
    config["preprocess"]["mask_method"] = "none"
    assert "no mask: hair" in render_model_card(config)


def test_table_page_shows_rows_escapes_text_and_cuts_long_tables(tmp_path: Path) -> None:
    """Values are rounded, text escaped; a long table is cut with a note and the CSV named."""
    path = tmp_path / "region_tests.csv"
    pd.DataFrame({"region": ["<eyes>"] * (MAX_ROWS + 5), "p_value": [0.0123456] * (MAX_ROWS + 5)}).to_csv(
        path, index=False
    )
    html = render_table_page("region_tests", read_result_table(path), path)
    assert TABLES["region_tests"][0] in html and "&lt;eyes&gt;" in html and "0.0123<" in html
    assert html.count("<tr>") == MAX_ROWS + 2  # header, rows shown, the note
    assert "… 5 more rows in the CSV file" in html and f"({MAX_ROWS + 5} rows)" in html


def test_tsv_and_empty_cells_are_read_as_such(tmp_path: Path) -> None:
    """A .tsv is split on tabs and an empty cell shows empty, not 'nan'."""
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\n1\t\n")
    table = read_result_table(path)
    assert list(table.columns) == ["a", "b"]
    assert "nan" not in render_table_page("balance", table, path)


def test_qc_status_page_counts_statuses_instead_of_listing_images(tmp_path: Path) -> None:
    """The QC page shows one row per sheet (plus 'all'), not one row per image."""
    path = tmp_path / "preprocess.tsv"
    pd.DataFrame({"image_id": list("abcd"), "sheet": ["cases", "cases", "pool", "pool"],
                  "status": ["ok", "no_face", "ok", "not_needed"]}).to_csv(path, sep="\t", index=False)  # fmt: skip
    html = render_table_page("qc_status", read_result_table(path), path)
    assert html.count("<tr>") == 4 and ">no_face<" in html and ">not_needed<" in html
    assert '<td class="text">all</td><td>2</td><td>1</td><td>1</td><td>4</td>' in html
