"""Average-face figures: the privacy blanking and the landmark panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from test_shape import synthetic_cohort, template_face

from phenoface import average_faces, plots_faces, shape_tests


def constant_faces(n_case: int, n_control: int, value: int = 200) -> average_faces.AverageFaces:
    """Male case and control averages that are one constant colour."""
    landmarks = np.stack([template_face(), template_face() + (2.0, 0.0)])
    return average_faces.AverageFaces(
        group=np.array(["case", "control"]),
        sex=np.array(["M", "M"]),
        n=np.array([n_case, n_control]),
        mean_chip=np.full((2, 150, 150, 3), float(value)),
        mean_landmarks=landmarks,
    )


def render(figure) -> np.ndarray:
    """The figure as an RGB array (row 0 at the top)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def panel_corner(figure, pixels: np.ndarray, index: int) -> np.ndarray:
    """RGB of a pixel just inside the top-left corner of axes ``index``."""
    box = figure.axes[index].get_window_extent()
    row = int(pixels.shape[0] - box.y1) + 4
    return pixels[row, int(box.x0) + 4]


def test_small_group_average_is_a_grey_panel() -> None:
    """3 cases < min_group_size 20: the case panel renders grey (128) while 30 controls show their average (200)."""
    figure = plots_faces.plot_average_faces(constant_faces(3, 30), min_group_size=20, show_faces=False)
    pixels = render(figure)
    np.testing.assert_array_equal(panel_corner(figure, pixels, 0), [128, 128, 128])
    np.testing.assert_array_equal(panel_corner(figure, pixels, 1), [200, 200, 200])
    assert "n = 3" in figure.axes[0].texts[0].get_text()


def test_show_faces_overrides_blanking() -> None:
    """With show_faces true the 3-case average is drawn as it is."""
    figure = plots_faces.plot_average_faces(constant_faces(3, 30), min_group_size=20, show_faces=True)
    pixels = render(figure)
    np.testing.assert_array_equal(panel_corner(figure, pixels, 0), [200, 200, 200])
    assert not figure.axes[0].texts


def test_comparison_panel_hides_the_pooled_face_of_a_small_group() -> None:
    """The landmark panel leaves out its faint pooled average when a group is blanked, and states the exaggeration."""
    blanked = plots_faces.plot_average_faces(constant_faces(3, 30, value=0), min_group_size=20)
    shown = plots_faces.plot_average_faces(constant_faces(30, 30, value=0), min_group_size=20)
    # A black average under alpha 0.35 darkens the corner; the blanked version keeps a light background.
    assert panel_corner(blanked, render(blanked), 2).min() > 220
    assert panel_corner(shown, render(shown), 2).max() < 200
    assert "x5" in shown.axes[2].get_title()


def test_landmark_comparison_marks_significant_points() -> None:
    """Each tested subset gets a panel with its count of q < 0.05 landmarks; an untested one shows its reason."""
    images, shapes = synthetic_cohort(np.random.default_rng(1), 20, 1.08)
    comparison = shape_tests.compare_groups(images, shapes, np.random.default_rng(0), 200)
    tests = {key: value for key, value in comparison.tests.items() if key != "F"}
    figure = plots_faces.plot_landmark_comparison(tests, {"F": "not tested: 1 case(s)"})
    assert len(figure.axes) == 3
    n_significant = int((comparison.tests["all"].q_values < 0.05).sum())
    assert n_significant > 0 and f"{n_significant} landmark(s) q < 0.05" in figure.axes[0].get_title()
    assert figure.axes[2].texts[0].get_text() == "not tested: 1 case(s)"
    render(figure)


def test_shape_index_figure_counts_faces() -> None:
    """The shape-index figure has one panel per index with n per sex and group in the tick labels."""
    table = pd.DataFrame(
        {
            "group": ["case"] * 3 + ["control"] * 2,
            "sex": ["F"] * 5,
            "fwhr": np.arange(5.0),
            "cjwr": np.ones(5),
            "par": np.arange(5.0),
        }  # fmt: skip
    )
    figure = plots_faces.plot_shape_indices(table)
    assert len(figure.axes) == 3
    labels = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    assert labels == ["F case\nn=3", "F control\nn=2"]
