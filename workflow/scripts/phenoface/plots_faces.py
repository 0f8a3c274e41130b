"""Figures of the average faces and the landmark comparison.

Built on :class:`matplotlib.figure.Figure` directly (Agg, no pyplot state).
Privacy: an average of a handful of faces still shows the individuals in
it, so :func:`plot_average_faces` replaces every average of fewer than
``min_group_size`` faces by a grey panel unless ``show_faces`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .average_faces import AverageFaces
from .cohort import GROUPS, SEXES
from .landmarks import GROUPS as LANDMARK_GROUPS
from .shape import INDEX_NAMES
from .shape_tests import SUBSETS, LandmarkTest

CASE_COLOUR = "#d62728"
CONTROL_COLOUR = "#1f77b4"
#: Grey level (0-255) of a blanked panel.
BLANK_GREY = 128
#: Displacements are drawn this many times their size (stated in each title).
DEFAULT_EXAGGERATION = 5.0
SEX_NAMES = {"M": "male", "F": "female", "all": "all faces"}
INDEX_LABELS = {
    "fwhr": "width-to-height (FWHR)",
    "cjwr": "cheek-to-jaw width (CJWR)",
    "par": "perimeter-to-area (PAR)",
}
#: Outline pieces drawn as lines (closed ones joined end to start).
OUTLINE_PIECES = [(indices, name.startswith(("eye", "mouth"))) for name, indices in LANDMARK_GROUPS.items()]


def face_shown(n: int, min_group_size: int, show_faces: bool) -> bool:
    """Whether an average of ``n`` faces may be drawn."""
    return bool(show_faces) or n >= min_group_size


def blank_panel(ax, n: int, min_group_size: int, size: tuple[int, int]) -> None:
    """Draw a grey panel saying why the average is not shown."""
    ax.imshow(np.full((*size, 3), BLANK_GREY, np.uint8), vmin=0, vmax=255)
    ax.text(
        size[1] / 2, size[0] / 2, f"n = {n} < {min_group_size}:\nnot shown",
        ha="center", va="center", fontsize=8, color="white",
    )  # fmt: skip


def _draw_outline(ax, points: np.ndarray, colour: str, label: str | None = None, size: float = 6) -> None:
    """Landmarks as dots joined region by region."""
    for indices, closed in OUTLINE_PIECES:
        piece = points[list(indices) + ([indices[0]] if closed else [])]
        ax.plot(piece[:, 0], piece[:, 1], color=colour, linewidth=0.8)
    ax.scatter(points[:, 0], points[:, 1], s=size, color=colour, label=label, zorder=3)


def plot_average_faces(
    faces: AverageFaces,
    min_group_size: int,
    show_faces: bool = False,
    exaggeration: float = DEFAULT_EXAGGERATION,
    shape_normalised: np.ndarray | None = None,
) -> Figure:
    """The paper's Figure 3: average case face, average control face, landmarks.

    Rows are sexes (male first) present in ``faces``; columns are the case
    average, the control average, (when ``shape_normalised`` is given) the
    shape-normalised case and control averages, and the mean chip landmarks
    of controls (blue) and cases (red, drawn at control + ``exaggeration`` x
    the shift) over a faint pooled average.

    Parameters
    ----------
    faces : AverageFaces
    min_group_size : int
        Averages of fewer faces are grey panels (and the pooled background
        is left out) unless ``show_faces``.
    show_faces : bool
    exaggeration : float
    shape_normalised : numpy.ndarray, optional
        ``(k, h, w, 3)`` averages of the chips warped to their cell's mean
        shape (:mod:`phenoface.shape_average`), in the order of ``faces``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sexes = [sex for sex in SEXES if sex in set(faces.sex)] or ["all"]
    size = faces.mean_chip.shape[1:3] if faces.mean_chip.size else (150, 150)
    averages = [("", faces.mean_chip_uint8())]
    if shape_normalised is not None:
        averages.append(("shape-normalised ", np.clip(np.rint(shape_normalised), 0, 255).astype(np.uint8)))
    n_columns = 2 * len(averages) + 1
    figure = Figure(figsize=(3 * n_columns, 3.1 * len(sexes)))
    axes = figure.subplots(len(sexes), n_columns, squeeze=False)
    for row, sex in enumerate(sexes):
        cells = {group: faces.cell(group, sex) for group in GROUPS}
        counts = {group: int(faces.n[cells[group]]) if cells[group] is not None else 0 for group in GROUPS}
        for block, (kind, chips) in enumerate(averages):
            for offset, group in enumerate(GROUPS):
                ax = axes[row, 2 * block + offset]
                if cells[group] is not None and face_shown(counts[group], min_group_size, show_faces):
                    ax.imshow(chips[cells[group]])
                else:
                    blank_panel(ax, counts[group], min_group_size, size)
                ax.set_title(f"{kind}{SEX_NAMES.get(sex, sex)} {group}s (n = {counts[group]:,})", fontsize=9)
        ax = axes[row, n_columns - 1]
        if all(cells[g] is not None and face_shown(counts[g], min_group_size, show_faces) for g in GROUPS):
            pooled = sum(faces.mean_chip[cells[g]] * counts[g] for g in GROUPS) / sum(counts.values())
            ax.imshow(np.clip(pooled, 0, 255).astype(np.uint8), alpha=0.35)
        else:
            ax.imshow(np.full((*size, 3), 235, np.uint8))
        if all(cells[g] is not None for g in GROUPS):
            control = faces.mean_landmarks[cells["control"]]
            case = faces.mean_landmarks[cells["case"]]
            _draw_outline(ax, control, CONTROL_COLOUR, "control")
            _draw_outline(ax, control + exaggeration * (case - control), CASE_COLOUR, "case")
        ax.set_xlim(0, size[1])
        ax.set_ylim(size[0], 0)
        ax.set_title(f"case (red) vs control (blue)\ndisplacement x{exaggeration:g}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    return figure


def plot_landmark_comparison(
    tests: Mapping[str, LandmarkTest],
    notes: Mapping[str, str] | None = None,
    fdr: float = 0.05,
    exaggeration: float = DEFAULT_EXAGGERATION,
) -> Figure:
    """Procrustes mean shapes of cases and controls, one panel per subset.

    Controls in blue; cases in red at control + ``exaggeration`` x shift,
    with arrows; landmarks whose shift has ``q < fdr`` ringed in black. No
    face pictures are drawn.

    Parameters
    ----------
    tests : mapping of subset to LandmarkTest
        Subsets that were tested (``all``, ``M``, ``F``).
    notes : mapping of subset to str, optional
        Why an untested subset was skipped (shown in its panel).
    fdr : float
    exaggeration : float

    Returns
    -------
    matplotlib.figure.Figure
    """
    notes = dict(notes or {})
    subsets = [s for s in SUBSETS if s in tests or s in notes]
    figure = Figure(figsize=(4 * max(len(subsets), 1), 4.6))
    axes = figure.subplots(1, max(len(subsets), 1), squeeze=False)[0]
    for ax, subset in zip(axes, subsets):
        test = tests.get(subset)
        if test is None:
            ax.text(
                0.5, 0.5, notes.get(subset, "not tested"), ha="center", va="center", wrap=True, fontsize=8
            )
            ax.set_title(SEX_NAMES.get(subset, subset), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        control = test.control_mean
        case = control + exaggeration * test.shift
        _draw_outline(ax, control, CONTROL_COLOUR, f"control (n = {test.n_control:,})", size=8)
        _draw_outline(ax, case, CASE_COLOUR, f"case (n = {test.n_case:,})", size=8)
        ax.quiver(
            control[:, 0], control[:, 1], case[:, 0] - control[:, 0], case[:, 1] - control[:, 1],
            angles="xy", scale_units="xy", scale=1, width=0.004, color="#555555",
        )  # fmt: skip
        significant = np.flatnonzero(test.q_values < fdr)
        if significant.size:
            ax.scatter(
                control[significant, 0], control[significant, 1], s=70, facecolors="none",
                edgecolors="black", linewidths=1.2, label=f"q < {fdr:g}", zorder=4,
            )  # fmt: skip
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"{SEX_NAMES.get(subset, subset)}: displacement x{exaggeration:g}\n"
            f"{significant.size} landmark(s) q < {fdr:g}; distance p = {test.distance_p:.3g}",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="lower center", frameon=False, ncol=3, bbox_to_anchor=(0.5, -0.12))
    figure.suptitle("Procrustes mean shapes (unit centroid size), cases vs controls", fontsize=10)
    figure.tight_layout()
    return figure


def plot_shape_indices(indices: pd.DataFrame) -> Figure:
    """Box plots with points of each shape index by sex and group.

    Parameters
    ----------
    indices : pandas.DataFrame
        ``group, sex`` and one column per index (``fwhr, cjwr, par``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    sexes = [sex for sex in SEXES if (indices["sex"] == sex).any()]
    figure = Figure(figsize=(4 * len(INDEX_NAMES), 3.6))
    axes = figure.subplots(1, len(INDEX_NAMES), squeeze=False)[0]
    for ax, name in zip(axes, INDEX_NAMES):
        positions, ticks, labels = 0, [], []
        for sex in sexes:
            for group, colour in zip(GROUPS, (CASE_COLOUR, CONTROL_COLOUR)):
                values = indices.loc[(indices["sex"] == sex) & (indices["group"] == group), name].to_numpy()
                positions += 1
                if values.size:
                    ax.boxplot(values, positions=[positions], widths=0.6, showfliers=False,
                               medianprops={"color": colour})  # fmt: skip
                    # Deterministic spread (by rank) keeps the figure reproducible without randomness.
                    offsets = (np.argsort(np.argsort(values)) / max(values.size - 1, 1) - 0.5) * 0.4
                    ax.scatter(positions + offsets, values, s=4, color=colour, alpha=0.5)
                ticks.append(positions)
                labels.append(f"{sex} {group}\nn={values.size}")
            positions += 0.5
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(INDEX_LABELS[name], fontsize=9)
    figure.tight_layout()
    return figure
