"""The power analysis tables: the seeded draw, each strength's cohort, power.csv and its threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenoface.errors import PhenofaceError
from phenoface.power import (
    POWER_COLUMNS,
    detection_summary,
    draw_power_sample,
    landmark_rows,
    power_cohort,
    power_row,
    power_table,
    repeat_seed,
    strength_label,
)

AGE_BINS = [0, 10, 20, 30, 40, 50, 60, 70]


def sheet(n: int = 60) -> pd.DataFrame:
    """A read pool sheet: ids, paths, ages 5..84, alternating sex, some rows without sex."""
    ages = 5 + (np.arange(n) * 7) % 80
    sex = np.where(np.arange(n) % 2 == 0, "M", "F").astype(object)
    sex[::10] = ""
    return pd.DataFrame(
        {
            "image_id": [f"img{i:03d}" for i in range(n)],
            "path": [f"/data/img{i:03d}.jpg" for i in range(n)],
            "age": ages,
            "sex": sex,
            "subject_id": "",
        }
    )


def synthetic_power_table(aucs: dict[float, float], half_width: float = 0.05) -> pd.DataFrame:
    """power.csv rows for one repeat with the given AUC per strength and a fixed interval width."""
    rows = [
        {
            "strength": strength,
            "repeat": 0,
            "auc": auc,
            "auc_ci_low": auc - half_width,
            "auc_ci_high": auc + half_width,
        }
        for strength, auc in aucs.items()
    ]
    return pd.DataFrame(rows)


def test_monotone_power_curve_gives_the_first_strength_above_chance():
    """AUC rising 0.50, 0.53, 0.58, 0.70, ... with +-0.05 intervals is detected from 0.08 on."""
    table = synthetic_power_table({0.0: 0.50, 0.04: 0.53, 0.08: 0.58, 0.12: 0.70, 0.16: 0.85, 0.24: 0.97})
    summary = detection_summary(table)
    assert summary["threshold"] == pytest.approx(0.08)
    assert [row["detection_rate"] for row in summary["by_strength"]] == [0, 0, 1, 1, 1, 1]
    assert summary["warnings"] == []


def test_nothing_detected_gives_no_threshold():
    """When no interval clears 0.5 the threshold is None, not the largest strength."""
    summary = detection_summary(synthetic_power_table({0.0: 0.49, 0.04: 0.51, 0.08: 0.53}))
    assert summary["threshold"] is None


def test_detection_rate_over_repeats_sets_the_threshold():
    """With 4 repeats, a strength detected in 1 of 4 is below min_rate 0.5; in 3 of 4 it is above."""
    parts = []
    for repeat, (low_04, low_08) in enumerate([(0.52, 0.55), (0.45, 0.56), (0.44, 0.48), (0.47, 0.60)]):
        parts.append(
            pd.DataFrame(
                {
                    "strength": [0.0, 0.04, 0.08],
                    "repeat": repeat,
                    "auc": [0.5, low_04 + 0.05, low_08 + 0.05],
                    "auc_ci_low": [0.45, low_04, low_08],
                    "auc_ci_high": [0.55, low_04 + 0.1, low_08 + 0.1],
                }
            )
        )
    summary = detection_summary(pd.concat(parts, ignore_index=True), min_rate=0.5)
    rates = {row["strength"]: row["detection_rate"] for row in summary["by_strength"]}
    assert rates == {0.0: 0.0, 0.04: 0.25, 0.08: 0.75}
    assert summary["threshold"] == pytest.approx(0.08)


def test_a_detected_null_is_flagged_and_never_the_threshold():
    """An interval above 0.5 at strength 0 is a warning (something besides shape separates the groups)."""
    summary = detection_summary(synthetic_power_table({0.0: 0.60, 0.04: 0.52, 0.08: 0.70}))
    assert summary["threshold"] == pytest.approx(0.08)
    assert any("strength 0" in sentence for sentence in summary["warnings"])


def test_draw_is_seeded_balanced_and_eligible_only():
    """n faces, n//2 cases, only rows with a sex and an age in the bins; same seed, same draw."""
    pool = sheet()
    first = draw_power_sample(pool, 21, np.random.default_rng(repeat_seed(42, 0)), AGE_BINS, ["age", "sex"])
    again = draw_power_sample(
        pool.iloc[::-1], 21, np.random.default_rng(repeat_seed(42, 0)), AGE_BINS, ["age", "sex"]
    )
    other = draw_power_sample(pool, 21, np.random.default_rng(repeat_seed(42, 1)), AGE_BINS, ["age", "sex"])
    assert len(first) == 21 and (first["group"] == "case").sum() == 10
    assert first["sex"].isin(["M", "F"]).all() and first["image_id"].is_unique
    assert first.equals(again)  # independent of the sheet's row order
    assert set(first["image_id"]) != set(other["image_id"])
    assert (first["stratum"] != "").all()


def test_draw_refuses_more_faces_than_eligible_rows():
    """Asking for more faces than eligible rows names power.n and the count."""
    with pytest.raises(PhenofaceError, match="power.n is 59 but .* only 54 eligible"):
        draw_power_sample(sheet(), 59, np.random.default_rng(0), AGE_BINS, ["age", "sex"])


def test_cohort_keeps_faces_whose_planted_photo_passed_qc():
    """A face that lost its detection after the warp leaves the cohort; one without a QC row is an error."""
    sample = draw_power_sample(sheet(), 8, np.random.default_rng(0), AGE_BINS, ["age", "sex"])
    qc = pd.DataFrame({"image_id": sample["image_id"], "status": ["ok"] * 7 + ["no_face"]})
    cohort = power_cohort(sample, qc)
    assert list(cohort["image_id"]) == list(sample["image_id"][:7])
    assert list(cohort.columns) == ["image_id", "group", "age", "sex", "subject_id", "stratum"]
    with pytest.raises(PhenofaceError, match="no single QC row"):
        power_cohort(sample, qc.iloc[:6])


def test_power_row_reads_metrics_and_all_faces_indices():
    """A power.csv row carries the metrics and the all-faces index differences, not a sex subset's."""
    metrics = {
        "auc": 0.8,
        "auc_ci_low": 0.75,
        "auc_ci_high": 0.85,
        "accuracy": 0.7,
        "n_train": 10,
        "n_test": 12,
    }
    tests = pd.DataFrame(
        {
            "subset": ["all", "all", "all", "M"],
            "index": ["fwhr", "cjwr", "par", "cjwr"],
            "diff": [0.01, -0.03, -0.1, 9.0],
            "p_perm": [0.5, 0.001, 0.04, 0.9],
        }
    )
    cohort = pd.DataFrame({"group": ["case"] * 11 + ["control"] * 11})
    row = power_row(0.08, 0, metrics, tests, cohort)
    assert row["cjwr_diff"] == -0.03 and row["cjwr_p"] == 0.001 and row["n_case_ok"] == 11
    assert list(power_table([row]).columns) == POWER_COLUMNS


def test_landmark_rows_count_significant_shifts_per_group():
    """Jaw landmarks with q < 0.05 are counted per landmark group; the global row is ignored."""
    tests = pd.DataFrame(
        {
            "subset": ["all"] * 69,
            "landmark": [""] + [str(i) for i in range(68)],
            "q_value": [0.0] + [0.01 if i in (3, 4, 12) else 0.5 for i in range(68)],
            "shift_px": [9.0] + [1.0] * 68,
        }
    )
    rows = landmark_rows(0.24, 0, tests, {"subsets": {"all": {"procrustes_distance_p": 0.001}}})
    jaw = rows[rows["landmarks"] == "jaw"].iloc[0]
    assert jaw["n_q_below"] == 3 and jaw["n_landmarks"] == 17
    assert rows["n_q_below"].sum() == 3 and rows["procrustes_distance_p"].eq(0.001).all()


def test_strength_label_is_stable():
    """Strengths become short, stable path labels."""
    assert [strength_label(s) for s in (0, 0.04, 0.24, 0.1)] == ["0", "0.04", "0.24", "0.1"]
