"""Figures of the guided Grad-CAM stage.

The group figures draw mean maps over the mean landmark outline, never over
face pixels, so they are safe to put in a report; :func:`plot_examples`
shows individual faces and enters the report only with ``report.show_faces``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import landmarks as lm  # noqa: E402
from .gradcam import REGIONS  # noqa: E402

#: Landmark runs drawn as the face outline (closed runs marked True).
OUTLINE_RUNS = (
    (lm.JAW, False),
    (lm.RIGHT_BROW, False),
    (lm.LEFT_BROW, False),
    (lm.NOSE_BRIDGE, False),
    (lm.NOSE_BASE, False),
    (lm.RIGHT_EYE, True),
    (lm.LEFT_EYE, True),
    (lm.OUTER_MOUTH, True),
)

MAP_TITLES = {
    "cam": "Grad-CAM, own class",
    "guided_gradcam": "guided Grad-CAM, own class",
    "cam_case": "Grad-CAM, case evidence",
}
#: Legend labels of the two bars of each map (cases, controls).
BAR_LABELS = {
    "cam_case": ("case maps, cases", "case maps, controls"),
}
OWN_CLASS_LABELS = ("case maps, cases", "control maps, controls")


def draw_outline(axes, landmarks: np.ndarray, color: str = "white", linewidth: float = 0.8) -> None:
    """Draw the 68-point face outline (jaw, brows, nose, eyes, lips) on ``axes``."""
    for run, closed in OUTLINE_RUNS:
        index = list(run) + ([run[0]] if closed else [])
        axes.plot(landmarks[index, 0], landmarks[index, 1], color=color, linewidth=linewidth)


def plot_group_maps(
    mean_maps: Mapping[str, Mapping[str, np.ndarray]],
    counts: Mapping[str, int],
    outline: np.ndarray,
    layer: str,
):
    """Mean maps of each class on its own group, and their difference.

    Parameters
    ----------
    mean_maps : mapping
        ``map name ("cam", "guided_gradcam") -> {"case": (H, W), "control": (H, W)}``,
        each the mean of per-image maps scaled to a maximum of 1.
    counts : mapping
        Images averaged per group.
    outline : ndarray of shape (68, 2)
        Mean chip landmarks of the explained images.
    layer : str
        Grad-CAM layer, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = plt.subplots(len(mean_maps), 3, figsize=(9.6, 3.3 * len(mean_maps)), squeeze=False)
    for row, (name, maps) in enumerate(mean_maps.items()):
        peak = max(float(maps["case"].max()), float(maps["control"].max()), 1e-12)
        panels = (
            (maps["case"], f"case evidence, cases (n={counts['case']})", "inferno", 0.0, peak),
            (maps["control"], f"control evidence, controls (n={counts['control']})", "inferno", 0.0, peak),
            (maps["case"] - maps["control"], "difference", "coolwarm", -peak, peak),
        )
        for column, (image, title, cmap, low, high) in enumerate(panels):
            ax = axes[row, column]
            shown = ax.imshow(image, cmap=cmap, vmin=low, vmax=high)
            draw_outline(ax, outline, color="white" if cmap == "inferno" else "black")
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
            if column == 0:
                ax.text(
                    -0.08,
                    0.5,
                    MAP_TITLES.get(name, name),
                    rotation=90,
                    fontsize=9,
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
            figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    figure.suptitle(f"Mean attribution maps, held-out images (layer {layer})", fontsize=10)
    figure.tight_layout()
    return figure


def plot_region_shares(tests: pd.DataFrame):
    """Bar chart of mean attribution share per facial region and group.

    Parameters
    ----------
    tests : pandas.DataFrame
        From :func:`phenoface.gradcam.region_tests`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    maps = list(dict.fromkeys(tests["map"]))
    figure, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 3.6), squeeze=False)
    positions = np.arange(len(REGIONS))
    for ax, name in zip(axes[0], maps):
        table = tests[tests["map"] == name].set_index("region").reindex(list(REGIONS))
        case_label, control_label = BAR_LABELS.get(name, OWN_CLASS_LABELS)
        ax.bar(positions - 0.2, table["share_case"], 0.4, label=case_label, color="#c0392b")
        ax.bar(positions + 0.2, table["share_control"], 0.4, label=control_label, color="#2e86c1")
        ax.scatter(positions, table["area_share"], marker="_", s=300, color="black", label="region area")
        for position, q_value in zip(positions, table["q_value"]):
            if np.isfinite(q_value) and q_value < 0.05:
                ax.annotate("*", (position, ax.get_ylim()[1] * 0.95), ha="center")
        ax.set_xticks(positions, list(REGIONS), rotation=30, fontsize=8)
        ax.set_ylabel("share of attribution")
        ax.set_title(f"{MAP_TITLES.get(name, name)} (* BH q < 0.05)", fontsize=9)
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def plot_examples(
    chips: np.ndarray,
    guided: np.ndarray,
    cams: np.ndarray,
    guided_gradcam: np.ndarray,
    labels: Sequence[str],
):
    """One row per example: chip, guided backpropagation, Grad-CAM, guided Grad-CAM.

    Shows individual faces: the caller decides whether it enters a report.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_rows = max(len(chips), 1)
    figure, axes = plt.subplots(n_rows, 4, figsize=(8.0, 2.1 * n_rows), squeeze=False)
    titles = ("chip", "guided backprop", "Grad-CAM", "guided Grad-CAM")
    for row in range(len(chips)):
        spread = np.abs(guided[row]).max() or 1.0
        panels = (
            chips[row],
            np.clip(guided[row] / (2 * spread) + 0.5, 0, 1),
            None,
            guided_gradcam[row],
        )
        for column, image in enumerate(panels):
            ax = axes[row, column]
            if column == 2:
                ax.imshow(chips[row])
                ax.imshow(cams[row], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            elif column == 3:
                ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image)
            ax.set_axis_off()
            ax.set_title(titles[column] if row == 0 else "", fontsize=8)
        axes[row, 0].text(0, -4, labels[row], fontsize=7)
    if not len(chips):
        axes[0, 0].text(0.5, 0.5, "no examples", ha="center")
        for ax in axes[0]:
            ax.set_axis_off()
    figure.tight_layout()
    return figure
