"""Evaluation figures: the ROC curve (the paper's Figure 4B) and calibration.

Functions return a matplotlib ``Figure``; the entry script saves it with
``phenoface.io.save_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .stats import AucResult  # noqa: E402


def plot_roc(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float], AucResult]],
    title: str = "ROC curve, held-out test set",
    confidence: float = 0.95,
):
    """ROC curves with AUC and its CI in the legend (Figure 4B of Liang et al.).

    Parameters
    ----------
    curves : mapping
        ``name -> (y_true, scores, auc_result)``; the first one is drawn
        as the main curve, the others (baselines) thinner and dashed.
    title : str
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, axes = plt.subplots(figsize=(5, 5))
    for index, (name, (y_true, scores, result)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(np.asarray(y_true), np.asarray(scores))
        style = {"linewidth": 2.0} if index == 0 else {"linewidth": 1.2, "linestyle": "--"}
        axes.plot(fpr, tpr, label=f"{name}: {result.label(confidence)}", **style)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("False positive rate (1 - specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def plot_calibration(table: pd.DataFrame, probabilities: Sequence[float], brier: float):
    """Reliability diagram above a histogram of predicted probabilities.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`phenoface.stats.calibration_table` output.
    probabilities : sequence of float
        All test-set probabilities (for the histogram).
    brier : float
        Brier score, shown in the legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    top.plot(
        table["mean_predicted"],
        table["fraction_case"],
        marker="o",
        linewidth=1.5,
        label=f"model (Brier {brier:.3f})",
    )
    top.set_ylabel("Observed fraction of cases")
    top.set_ylim(-0.02, 1.02)
    top.set_title("Calibration, held-out test set")
    top.legend(loc="upper left", fontsize=8)
    bottom.hist(np.asarray(probabilities, dtype=float), bins=20, range=(0, 1), color="grey")
    bottom.set_xlabel("Predicted probability of case")
    bottom.set_ylabel("Images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return figure
