"""Tests of phenoface.stats: DeLong AUC, Wilson intervals, metrics, subgroups, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from phenoface import stats


def noisy_scores(n: int, seed: int, rounding: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores with signal (AUC about 0.75); rounding creates ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = labels + rng.normal(0, 1.0, n)
    if rounding is not None:
        scores = np.round(scores, rounding)
    return labels, scores


def naive_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """DeLong AUC and variance straight from the definition (all case-control pairs)."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    variance = v10.var(ddof=1) / positives.size + v01.var(ddof=1) / negatives.size
    return float(kernel.mean()), float(variance)


@pytest.mark.parametrize("rounding", [None, 1, 0])
def test_delong_auc_equals_sklearn(rounding):
    """The fast DeLong AUC is sklearn's roc_auc_score, with and without ties."""
    labels, scores = noisy_scores(301, seed=3, rounding=rounding)
    assert stats.auc_delong(labels, scores).auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_delong_variance_equals_pairwise_definition():
    """Fast midrank DeLong variance equals the O(m*n) structural-component definition (ties included)."""
    labels, scores = noisy_scores(157, seed=11, rounding=1)
    auc, variance = naive_delong(labels, scores)
    result = stats.auc_delong(labels, scores)
    assert result.auc == pytest.approx(auc, abs=1e-12)
    assert result.se == pytest.approx(math.sqrt(variance), rel=1e-10)


def hanley_mcneil_ratings() -> tuple[np.ndarray, np.ndarray]:
    """Hanley & McNeil (1982, Radiology 143:29, Table 1): 58 normal and 51 abnormal CT ratings 1-5."""
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    ratings = np.concatenate([np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)])
    labels = np.concatenate([np.zeros(sum(normal), int), np.ones(sum(abnormal), int)])
    return labels, ratings


#: Two-sided standard normal quantiles z_(1 - alpha/2), as printed in statistical tables.
NORMAL_QUANTILES = {0.90: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


def test_delong_hanley_mcneil_published_auc():
    """Hanley & McNeil (1982, Radiology 143:29) rating data: AUC 0.893, CI brackets it."""
    labels, ratings = hanley_mcneil_ratings()
    result = stats.auc_delong(labels, ratings)
    assert round(result.auc, 4) == 0.8932
    # Hanley-McNeil's exponential approximation gives SE 0.0326; DeLong's is close.
    assert result.se == pytest.approx(0.0326, abs=0.004)
    assert result.ci_low < 0.8932 < result.ci_high


@pytest.mark.parametrize("confidence", sorted(NORMAL_QUANTILES))
def test_delong_interval_half_width_is_the_normal_quantile_times_se(confidence):
    """The interval is AUC -/+ z * SE with z the tabled normal quantile of the requested level."""
    labels, ratings = hanley_mcneil_ratings()
    result = stats.auc_delong(labels, ratings, confidence=confidence)
    z = NORMAL_QUANTILES[confidence]
    assert result.ci_high - result.auc == pytest.approx(z * result.se, rel=1e-9)
    assert result.auc - result.ci_low == pytest.approx(z * result.se, rel=1e-9)


def test_delong_interval_on_the_published_ratings():
    """Hanley & McNeil's ratings: DeLong SE 0.0307 and 95% CI 0.833-0.953 (SE from the pairwise definition)."""
    labels, ratings = hanley_mcneil_ratings()
    auc, variance = naive_delong(labels, ratings)
    result = stats.auc_delong(labels, ratings)
    assert result.se == pytest.approx(math.sqrt(variance), rel=1e-10)
    assert round(result.se, 4) == 0.0307
    assert (round(result.ci_low, 3), round(result.ci_high, 3)) == (0.833, 0.953)
    assert result.ci_low == pytest.approx(auc - 1.959963984540054 * math.sqrt(variance), rel=1e-9)
    assert (result.n_case, result.n_control) == (51, 58)


def test_default_interval_is_95_percent():
    """Without a confidence argument the interval is the 95% one, and it is narrower at 90%."""
    labels, ratings = hanley_mcneil_ratings()
    default = stats.auc_delong(labels, ratings)
    assert default == stats.auc_delong(labels, ratings, confidence=0.95)
    narrower = stats.auc_delong(labels, ratings, confidence=0.90)
    assert default.ci_low < narrower.ci_low < narrower.ci_high < default.ci_high


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_confidence_outside_zero_one_is_rejected(confidence):
    """A confidence given as a percentage or at the ends of (0, 1) raises instead of a silent interval."""
    labels, ratings = hanley_mcneil_ratings()
    with pytest.raises(ValueError, match="confidence"):
        stats.auc_delong(labels, ratings, confidence=confidence)


def test_delong_interval_is_clipped_to_zero_one():
    """An AUC near 1 with a small sample keeps ci_high at exactly 1.0 and ci_low unclipped."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9])
    result = stats.auc_delong(labels, scores)
    assert result.auc == pytest.approx(15 / 16)
    assert result.ci_high == 1.0
    assert result.ci_low == pytest.approx(result.auc - 1.959963984540054 * result.se, rel=1e-9)
    flipped = stats.auc_delong(labels, -scores)
    assert flipped.ci_low == 0.0 and flipped.auc == pytest.approx(1 / 16)


def test_auc_label_names_the_confidence_level():
    """The legend text states the level it was computed at, and says undefined for a NaN AUC."""
    result = stats.AucResult(auc=0.8123, se=0.02, ci_low=0.7712, ci_high=0.8534, n_case=5, n_control=5)
    assert result.label() == "AUC = 0.81 (95% CI 0.77\u20130.85)"
    assert result.label(0.9) == "AUC = 0.81 (90% CI 0.77\u20130.85)"
    assert stats.AucResult(math.nan, math.nan, math.nan, math.nan, 0, 3).label() == "AUC undefined"
    assert result.as_dict("head") == {"head": 0.8123, "head_ci_low": 0.7712, "head_ci_high": 0.8534, "head_se": 0.02}


def test_delong_ci_matches_large_bootstrap():
    """The DeLong SE and 95% CI agree with a 4000-replicate stratified bootstrap."""
    labels, scores = noisy_scores(240, seed=5)
    result = stats.auc_delong(labels, scores)

    def rank_auc(y: np.ndarray, s: np.ndarray) -> float:
        return stats.delong_components(y, s)[0]  # equals roc_auc_score (tested above), faster

    replicates = stats.stratified_bootstrap(labels, scores, rank_auc, np.random.default_rng(0), 4000)
    assert replicates.std(ddof=1) == pytest.approx(result.se, rel=0.1)
    low, high = np.percentile(replicates, [2.5, 97.5])
    assert low == pytest.approx(result.ci_low, abs=0.02)
    assert high == pytest.approx(result.ci_high, abs=0.02)


def test_stratified_bootstrap_keeps_class_counts():
    """Every bootstrap replicate keeps the case and control counts (stratified)."""
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.arange(8, dtype=float)
    counts = stats.stratified_bootstrap(
        labels, scores, lambda y, s: float(y.sum()), np.random.default_rng(1), 50
    )
    assert set(counts.tolist()) == {3.0}


def test_bootstrap_ci_is_reproducible_for_a_seed():
    """Same seed, same interval; another seed, another interval."""
    labels, scores = noisy_scores(100, seed=2)
    first = stats.bootstrap_ci(labels, scores, stats.auc_score, np.random.default_rng(7), 300)
    again = stats.bootstrap_ci(labels, scores, stats.auc_score, np.random.default_rng(7), 300)
    other = stats.bootstrap_ci(labels, scores, stats.auc_score, np.random.default_rng(8), 300)
    assert first == again
    assert first != other


def test_auc_one_class_is_nan():
    """With controls only the AUC and its interval are NaN, not an exception."""
    result = stats.auc_delong([0, 0, 0], [0.1, 0.5, 0.9])
    assert math.isnan(result.auc) and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert (result.n_case, result.n_control) == (0, 3)


def test_wilson_ci_newcombe_examples():
    """Wilson intervals of Newcombe (1998, Stat Med 17:857): 81/263 and 0/10."""
    assert [round(x, 4) for x in stats.wilson_ci(81, 263)] == [0.2553, 0.3662]
    low, high = stats.wilson_ci(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert round(high, 4) == 0.2775


def test_wilson_ci_empty_is_nan():
    """A proportion of nothing has a NaN interval."""
    assert all(math.isnan(x) for x in stats.wilson_ci(0, 0))


def test_threshold_metrics_match_sklearn():
    """Accuracy, sensitivity, specificity, PPV, NPV at 0.5 equal sklearn's confusion-matrix metrics."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.25, 200), 0, 1)
    predicted = (probs >= 0.5).astype(int)
    metrics = stats.threshold_metrics(labels, probs)
    assert metrics["accuracy"]["value"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["sensitivity"]["value"] == pytest.approx(recall_score(labels, predicted))
    assert metrics["specificity"]["value"] == pytest.approx(recall_score(labels, predicted, pos_label=0))
    assert metrics["ppv"]["value"] == pytest.approx(precision_score(labels, predicted))
    assert metrics["npv"]["value"] == pytest.approx(precision_score(labels, predicted, pos_label=0))
    for metric in metrics.values():
        assert metric["ci_low"] < metric["value"] < metric["ci_high"]


def test_threshold_is_inclusive():
    """A probability exactly at the threshold counts as a predicted case."""
    metrics = stats.threshold_metrics([1, 0], [0.5, 0.49])
    assert metrics["sensitivity"]["value"] == 1.0
    assert metrics["specificity"]["value"] == 1.0


def test_brier_matches_sklearn():
    """The Brier score is sklearn's brier_score_loss, also with one class present."""
    labels, scores = noisy_scores(80, seed=9)
    probs = 1 / (1 + np.exp(-scores))
    assert stats.brier_score(labels, probs) == pytest.approx(brier_score_loss(labels, probs))
    assert stats.brier_score([1, 1], [0.1, 0.2]) == pytest.approx((0.81 + 0.64) / 2)


def test_calibration_table_matches_sklearn_and_counts_everyone():
    """Calibration rates are sklearn's and the bin counts add up to n."""
    rng = np.random.default_rng(6)
    probs = rng.uniform(0, 1, 500)
    labels = (rng.uniform(0, 1, 500) < probs).astype(int)
    table = stats.calibration_table(labels, probs, n_bins=10)
    expected_true, expected_pred = calibration_curve(labels, probs, n_bins=10)
    np.testing.assert_allclose(table["fraction_case"], expected_true)
    np.testing.assert_allclose(table["mean_predicted"], expected_pred)
    assert table["n"].sum() == 500
    assert (
        (table["mean_predicted"] >= table["bin_low"]) & (table["mean_predicted"] <= table["bin_high"])
    ).all()


def test_age_bin_labels():
    """Ages fall in [lo, hi) bins labelled like Table 1; the last bin is open-ended."""
    from phenoface.sampling import label_ages

    assert list(label_ages([0, 9, 10, 69, 70, 101, None], [0, 10, 70])) == [
        "0-9",
        "0-9",
        "10-69",
        "10-69",
        "70+",
        "70+",
        "NA",
    ]
    assert list(label_ages([3], [5, 10])) == ["<5"]


def test_subgroup_with_one_class_gives_nan_and_note():
    """A subgroup holding only cases has NaN AUC and specificity, a note, and no exception."""
    predictions = pd.DataFrame(
        {
            "y_true": [1, 0, 1, 0, 1, 1],
            "prob": [0.9, 0.2, 0.7, 0.4, 0.6, 0.8],
            "sex": ["F", "F", "M", "M", "F", "F"],
            "age": [30, 31, 45, 44, 75, 80],
        }
    )
    table = stats.subgroup_metrics(predictions, age_bins=[0, 40, 70])
    old = table[(table["variable"] == "age_bin") & (table["subgroup"] == "70+")].iloc[0]
    assert math.isnan(old["auc"]) and math.isnan(old["specificity"])
    assert old["sensitivity"] == 1.0
    assert old["note"].startswith("only cases")
    assert list(table["subgroup"]) == ["all", "F", "M", "0-39", "40-69", "70+"]
    overall = table[table["variable"] == "all"].iloc[0]
    assert overall["auc"] == 1.0 and overall["n"] == 6


def test_derive_seeds_deterministic_and_distinct():
    """Derived seeds depend only on the master seed and differ from each other."""
    seeds = stats.derive_seeds(42, 5)
    assert seeds == stats.derive_seeds(42, 5)
    assert len(set(seeds)) == 5
    assert seeds != stats.derive_seeds(43, 5)
    assert stats.derive_seeds(42, 3) == seeds[:3]


def test_summarise_repeats():
    """Mean, sample SD, min and max of repeat AUCs."""
    summary = stats.summarise_repeats([0.7, 0.8, 0.9])
    assert summary["n"] == 3
    assert summary["auc_mean"] == pytest.approx(0.8)
    assert summary["auc_sd"] == pytest.approx(0.1)
    assert (summary["auc_min"], summary["auc_max"]) == (0.7, 0.9)


def test_json_ready_sorts_keys_and_nulls_nan():
    """Nested keys come out sorted and NaN becomes null, so json.dumps is canonical."""
    value = stats.json_ready({"b": {"z": np.float64("nan"), "a": np.int64(3)}, "a": [np.float32(0.5)]})
    assert json.dumps(value) == '{"a": [0.5], "b": {"a": 3, "z": null}}'


def test_bh_qvalues_hand_example() -> None:
    """BH q-values of a four-test example match the hand computation; NaN stays NaN and does not count."""
    q = stats.bh_qvalues([0.01, 0.04, 0.03, 0.005, math.nan])
    np.testing.assert_allclose(q[:4], [0.02, 0.04, 0.04, 0.02])
    assert math.isnan(q[4])
    assert np.isnan(stats.bh_qvalues([math.nan, math.nan])).all()
