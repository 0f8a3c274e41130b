"""Tests of phenoface.plots: the CONSORT flow diagram and the Table 1 figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Annotation
from PIL import Image
from sheet_factory import make_sheet

from phenoface import cohort_tables, plots, sampling

BINS = [0, 10, 20, 30, 40, 50, 60, 70]


@pytest.fixture()
def study() -> dict:
    """Cases, ranked pool, QC (with failures and untried rows) and the drawn cohort."""
    cases = make_sheet("cases", [(45, "F")] * 5 + [(62, "M")] * 4)
    pool = make_sheet("pool", [(41, "F")] * 12 + [(66, "M")] * 10 + [(30, "")] * 3)
    ranked = sampling.rank_pool(pool, BINS, ["age", "sex"], seed=0)
    status = {image_id: "not_needed" for image_id in pool["image_id"]}
    order = ranked.loc[ranked["eligible"]].sort_values(["stratum", "rank"])
    for image_id, rank in zip(order["image_id"], order["rank"]):
        if rank <= 7:
            status[image_id] = "no_face" if rank == 1 else "ok"
    status[cases["image_id"].iloc[0]] = "unreadable"
    qc = pd.concat([cases[["image_id", "sheet"]], pool[["image_id", "sheet"]]], ignore_index=True)
    qc["status"] = [status.get(image_id, "ok") for image_id in qc["image_id"]]
    cohort, _ = sampling.draw_controls(cases, ranked, qc, BINS, ["age", "sex"])
    return {"cases": cases, "ranked": ranked, "qc": qc, "cohort": cohort}


def test_plot_flow_writes_png_and_svg_with_the_counts(study, tmp_path):
    """The flow diagram is saved as a non-blank PNG and an SVG whose text carries the counts."""
    counts = cohort_tables.flow_counts(study["cases"], study["ranked"], study["qc"], study["cohort"])
    png, svg = tmp_path / "flow" / "flow.png", tmp_path / "flow" / "flow.svg"
    plots.plot_flow(counts, png, svg)
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert pixels.min() < 100 and pixels.max() > 200  # drawn content on a light background
    text = svg.read_text()
    for label in (
        "Cases sheet rows",
        "Reference pool rows",
        "Matched controls analysed",
        "QC: unreadable",
        "ineligible: no sex recorded",
        "QC: no_face",
    ):
        assert label in text, label
    assert not list(tmp_path.glob("flow/.*"))  # no temporary files left behind


def test_plot_flow_boxes_follow_the_counts(study):
    """One box per main-line node and one per non-empty side group, with the right n."""
    counts = cohort_tables.flow_counts(study["cases"], study["ranked"], study["qc"], study["cohort"])
    figure = plots.plot_flow(counts)
    texts = [text.get_text() for text in figure.axes[0].texts if not isinstance(text, Annotation)]
    assert "Cases sheet rows\nn = 9" in texts
    assert "Cases analysed\nn = 8" in texts
    assert "Eligible pool rows\nn = 22" in texts
    assert "Candidates preprocessed\nn = 14" in texts
    assert "Matched controls analysed\nn = 8" in texts
    assert "excluded: n = 2\n  QC: no_face: 2" not in texts  # one reason: no 'excluded' header
    assert "QC: no_face\nn = 2" in texts
    arrows = [text for text in figure.axes[0].texts if isinstance(text, Annotation)]
    assert len(arrows) == (3 - 1) + (5 - 1) + 2 + 4  # main-line links + one per side box


def test_plot_table1_renders_n_and_percent(study, tmp_path):
    """The Table 1 figure shows `n (%)` cells of every group x sex column and the totals."""
    table = cohort_tables.table1(study["cohort"], BINS)
    png, svg = tmp_path / "table1.png", tmp_path / "table1.svg"
    figure = plots.plot_table1(table, png, svg)
    cells = {cell.get_text().get_text() for cell in figure.axes[0].tables[0].get_celld().values()}
    assert {"40-49", "60-69", "Total", "4 (100.00)", "0 (0.00)"} <= cells
    assert "Controls\nFemale, n (%)" in cells
    assert png.stat().st_size > 5000
    assert "Cases" in svg.read_text()
