"""Figures of the pipeline: CONSORT flow diagram, Table 1, ...

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot
state, no GUI backend; renders with Agg) and written atomically through
:func:`phenoface.io.save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from .io import save_figure

FLOW_MAIN_STYLE = {"boxstyle": "round,pad=0.5", "facecolor": "#e8f0fa", "edgecolor": "#33557a"}
FLOW_SIDE_STYLE = {"boxstyle": "round,pad=0.5", "facecolor": "#f6f6f6", "edgecolor": "#888888"}
ARROW_STYLE = {"arrowstyle": "-|>", "color": "#444444", "linewidth": 1.0, "shrinkA": 2, "shrinkB": 2}
SHEET_TITLES = {"cases": "Cases", "pool": "Reference pool (controls)"}


def _save(figure: Figure, paths: Sequence[str | os.PathLike | None], dpi: int) -> None:
    """Save ``figure`` to every given path (format from the suffix).

    SVG keeps its text as text (not glyph outlines) so it stays editable
    and searchable.
    """
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for path in paths:
            if path is not None:
                save_figure(path, figure, dpi=dpi, bbox_inches="tight")


def _side_text(children: pd.DataFrame) -> str:
    """Text of one side (exclusion) box: its non-zero reasons and their total."""
    nonzero = [(row.label, int(row.n)) for row in children.itertuples(index=False) if int(row.n) > 0]
    if not nonzero:
        return "excluded: none"
    if len(nonzero) == 1:
        return f"{nonzero[0][0]}\nn = {nonzero[0][1]:,}"
    total = sum(n for _, n in nonzero)
    return "\n".join([f"excluded: n = {total:,}"] + [f"  {label}: {n:,}" for label, n in nonzero])


def plot_flow(
    counts: pd.DataFrame,
    path_png: str | os.PathLike | None = None,
    path_svg: str | os.PathLike | None = None,
    dpi: int = 150,
) -> Figure:
    """Draw the CONSORT-style flow diagram, one column per sheet.

    Parameters
    ----------
    counts : pandas.DataFrame
        Output of :func:`phenoface.cohort_tables.flow_counts` (columns ``sheet,
        node, label, parent, main, n``). Main-line nodes are stacked
        top-down with arrows; the side (``main`` False) children of a node
        are summed into one box to the right of the arrow leaving it.
    path_png, path_svg : path-like, optional
        Where to write the figure.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (also written to the given paths).
    """
    sheets = list(dict.fromkeys(counts["sheet"]))
    chains = {sheet: counts.loc[(counts["sheet"] == sheet) & counts["main"].astype(bool)] for sheet in sheets}
    levels = max((len(chain) for chain in chains.values()), default=1)
    spacing = 2.0
    figure = Figure(figsize=(6.5 * max(1, len(sheets)), 0.95 * spacing * levels + 0.8))
    axes = figure.add_subplot()
    axes.set_xlim(0, max(1, len(sheets)))
    axes.set_ylim(-spacing * (levels - 1) - 0.9, 1.1)
    axes.axis("off")

    for column, sheet in enumerate(sheets):
        part = counts.loc[counts["sheet"] == sheet]
        x_main = column + 0.27
        axes.text(
            x_main,
            0.95,
            SHEET_TITLES.get(sheet, sheet),
            ha="center",
            va="bottom",
            fontsize=11,
            fontweight="bold",
        )
        previous = None
        for level, row in enumerate(chains[sheet].itertuples(index=False)):
            y = -spacing * level
            box = axes.text(
                x_main,
                y,
                f"{row.label}\nn = {int(row.n):,}",
                ha="center",
                va="center",
                fontsize=9,
                bbox=FLOW_MAIN_STYLE,
            )
            if previous is not None:
                axes.annotate(
                    "",
                    xy=(0.5, 1.0),
                    xycoords=box,
                    xytext=(0.5, 0.0),
                    textcoords=previous,
                    arrowprops=ARROW_STYLE,
                )
            side = part.loc[(part["parent"] == row.node) & ~part["main"].astype(bool)]
            if len(side):
                y_side = y - spacing / 2
                side_box = axes.text(
                    column + 0.55,
                    y_side,
                    _side_text(side),
                    ha="left",
                    va="center",
                    fontsize=8,
                    bbox=FLOW_SIDE_STYLE,
                )
                axes.annotate(
                    "",
                    xy=(0.0, 0.5),
                    xycoords=side_box,
                    xytext=(x_main, y_side),
                    textcoords="data",
                    arrowprops=ARROW_STYLE,
                )
            previous = box
    _save(figure, (path_png, path_svg), dpi)
    return figure


def plot_table1(
    table: pd.DataFrame,
    path_png: str | os.PathLike | None = None,
    path_svg: str | os.PathLike | None = None,
    title: str = "Age distribution by group and sex, n (%)",
    dpi: int = 150,
) -> Figure:
    """Render Table 1 (``n (%)`` per age bin, group and sex) as a figure.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`phenoface.cohort_tables.table1`.
    path_png, path_svg : path-like, optional
        Where to write the figure.
    title : str
        Caption above the table.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .cohort_tables import format_table1

    shown = format_table1(table)
    n_rows, n_columns = shown.shape
    figure = Figure(figsize=(1.2 + 1.6 * (n_columns - 1), 0.9 + 0.32 * (n_rows + 2)))
    axes = figure.add_subplot()
    axes.axis("off")
    axes.set_title(title, fontsize=11)
    drawn = axes.table(
        cellText=shown.to_numpy().tolist(), colLabels=list(shown.columns), loc="center", cellLoc="center"
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(9)
    drawn.scale(1.0, 1.4)
    for (row, _column), cell in drawn.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 1.8)
            cell.set_text_props(fontweight="bold")
        elif row == n_rows:
            cell.set_text_props(fontweight="bold")
    _save(figure, (path_png, path_svg), dpi)
    return figure
