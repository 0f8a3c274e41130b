"""Power-analysis figures: AUC against planted strength, and where the evidence moves.

Functions return a matplotlib ``Figure``; the entry script saves it with
``phenoface.io.save_figure``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_power(table: pd.DataFrame, threshold: float | None, confidence: float = 0.95):
    """Held-out AUC (with its interval) of every repeat against the planted strength.

    Parameters
    ----------
    table : pandas.DataFrame
        ``power.csv`` rows (``strength``, ``repeat``, ``auc``, ``auc_ci_low``,
        ``auc_ci_high``).
    threshold : float or None
        The smallest detected strength, marked with a vertical line.
    """
    figure, axes = plt.subplots(figsize=(6, 4.5))
    repeats = sorted(table["repeat"].unique())
    spread = 0.002 * (len(repeats) - 1)
    for index, (repeat, part) in enumerate(table.groupby("repeat", sort=True)):
        x = part["strength"].to_numpy(float) * 100 + (index * 0.004 - spread) * 100
        y = part["auc"].to_numpy(float)
        error = np.vstack([y - part["auc_ci_low"].to_numpy(float), part["auc_ci_high"].to_numpy(float) - y])
        axes.errorbar(x, y, yerr=error, marker="o", capsize=3, linewidth=1.2, label=f"repeat {repeat}")
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    if threshold is not None:
        axes.axvline(
            threshold * 100,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"detected from {threshold:.0%}",
        )
    axes.set_xlabel("planted lower-face widening (% of face width)")
    axes.set_ylabel(f"held-out AUC ({confidence:.0%} CI)")
    axes.set_ylim(0.3, 1.01)
    axes.set_title("Planted-effect positive control")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def plot_region_shift(regions: pd.DataFrame, map_name: str = "cam_case"):
    """Case-minus-control share of one Grad-CAM map per region, against strength.

    Parameters
    ----------
    regions : pandas.DataFrame
        ``power_regions.csv`` rows (``strength``, ``repeat``, ``map``,
        ``region``, ``difference``); repeats are averaged.
    map_name : str
        Which map: ``cam_case`` (case evidence on both groups) by default.
    """
    part = regions[regions["map"] == map_name]
    mean = part.groupby(["region", "strength"], sort=False)["difference"].mean().reset_index()
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for region, rows in mean.groupby("region", sort=False):
        rows = rows.sort_values("strength")
        axes.plot(rows["strength"] * 100, rows["difference"], marker="o", label=region)
    axes.axhline(0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("planted lower-face widening (% of face width)")
    axes.set_ylabel("share of case evidence: cases - controls")
    axes.set_title(f"Where the evidence moves ({map_name})")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
