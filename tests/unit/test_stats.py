"""Tests of phenoface.stats: DeLong AUC, Wilson intervals, metrics, subgroups, JSON."""

from __future__ import annotations

import json
import math
import statistics
import warnings

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
    assert result.as_dict("head") == {
        "head": 0.8123,
        "head_ci_low": 0.7712,
        "head_ci_high": 0.8534,
        "head_se": 0.02,
    }


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

    def interval(seed: int) -> tuple[float, float]:
        replicates = stats.stratified_bootstrap(
            labels, scores, stats.auc_score, np.random.default_rng(seed), 300
        )
        return stats.bootstrap_ci(replicates, 0.95)

    first, again, other = interval(7), interval(7), interval(8)
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


# --- Behaviours that mutation testing (bench/mutation.py) found unpinned -------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: stats.auc_delong([[0, 1]], [0.1, 0.2]), ValueError, "labels must be one-dimensional, got shape (1, 2)"),
        (lambda: stats.auc_delong([0, 2], [0.1, 0.2]), ValueError, "labels must be 0 (control) or 1 (case)"),
        (lambda: stats.auc_delong([0, 1], [0.1, 0.2, 0.3]), ValueError, "scores must have shape (2,), got (3,)"),
        (lambda: stats.auc_delong([0, 1], [0.1, math.nan]), ValueError, "scores must be finite"),
        (lambda: stats.auc_delong([0, 1], [0.1, 0.2], 1.5), ValueError, "confidence must be in (0, 1), got 1.5"),
        (lambda: stats.delong_components([1, 1], [0.1, 0.2]), ValueError, "DeLong needs at least one case and one control"),
        (lambda: stats.delong_components([0, 0], [0.1, 0.2]), ValueError, "DeLong needs at least one case and one control"),
        (lambda: stats.stratified_bootstrap([1, 1], [0.1, 0.2], stats.auc_score, np.random.default_rng(0), 5),
         ValueError, "a stratified bootstrap needs both classes"),
        (lambda: stats.stratified_bootstrap([0, 0], [0.1, 0.2], stats.auc_score, np.random.default_rng(0), 5),
         ValueError, "a stratified bootstrap needs both classes"),
        (lambda: stats.calibration_table([1, 1], [0.1, 0.2]), ValueError, "a calibration curve needs both classes"),
        (lambda: stats.derive_seeds(1, -1), ValueError, "n must be >= 0, got -1"),
        (lambda: stats.subgroup_metrics(pd.DataFrame({"y_true": [1], "prob": [0.5], "sex": ["F"]}), [0, 40]),
         stats.PhenofaceError, "predictions table lacks column(s) ['age'] for subgroup metrics"),
    ],
)  # fmt: skip
def test_bad_input_messages(call, error, message):
    """Each refusal says exactly what is wrong."""
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value) == message


def test_scores_given_as_text_are_read_as_numbers():
    """Scores read from a CSV as text are converted to float, not compared as strings."""
    assert stats.auc_delong([0, 1, 0, 1], ["9", "10", "0.5", "3"]).auc == 0.75


def test_delong_components_are_the_placement_values():
    """v10: share of controls each case out-scores; v01: share of cases that out-score each control (ties 1/2)."""
    auc, v10, v01 = stats.delong_components([1, 1, 0, 0, 0], [0.9, 0.4, 0.4, 0.2, 0.95])
    np.testing.assert_allclose(v10, [2 / 3, 0.5])
    np.testing.assert_allclose(v01, [0.75, 1.0, 0.0])
    assert auc == pytest.approx(7 / 12)


def test_delong_se_with_one_or_two_cases():
    """With one case (or control) only the other class's term is left (no NaN); with two both terms count."""
    one = stats.auc_delong([1, 0, 0, 0, 0], [0.5, 0.1, 0.6, 0.3, 0.7])
    v01 = np.array([0.0, 1.0, 0.0, 1.0])
    assert one.se == pytest.approx(math.sqrt(v01.var(ddof=1) / 4))
    one_control = stats.auc_delong([0, 1, 1, 1, 1], [0.5, 0.1, 0.6, 0.3, 0.7])
    assert one_control.se == pytest.approx(math.sqrt(np.var([0.0, 1.0, 0.0, 1.0], ddof=1) / 4))
    labels, scores = np.array([1, 1, 0, 0, 0, 0, 0]), np.array([0.8, 0.3, 0.1, 0.5, 0.2, 0.9, 0.4])
    assert stats.auc_delong(labels, scores).se == pytest.approx(
        math.sqrt(naive_delong(labels, scores)[1]), rel=1e-12
    )
    assert stats.auc_delong(1 - labels, scores).se == pytest.approx(
        math.sqrt(naive_delong(1 - labels, scores)[1]), rel=1e-12
    )


def test_one_class_result_is_nan_throughout():
    """With cases only, AUC, SE and both limits are NaN and the counts are kept."""
    result = stats.auc_delong([1, 1], [0.2, 0.3])
    assert all(math.isnan(x) for x in (result.auc, result.se, result.ci_low, result.ci_high))
    assert (result.n_case, result.n_control) == (2, 0)


def test_default_as_dict_prefix_is_auc():
    """as_dict() without a prefix gives the metrics.json keys auc, auc_ci_low, auc_ci_high, auc_se."""
    result = stats.AucResult(0.8, 0.02, 0.76, 0.84, 5, 5)
    assert result.as_dict() == {"auc": 0.8, "auc_ci_low": 0.76, "auc_ci_high": 0.84, "auc_se": 0.02}


def test_bootstrap_interval_level():
    """The interval is the (1-c)/2 and 1-(1-c)/2 percentiles of the finite replicates."""
    labels, scores = noisy_scores(60, seed=8)
    replicates = stats.stratified_bootstrap(
        labels, scores, lambda y, s: float(s.mean()), np.random.default_rng(3), 400
    )
    assert replicates.shape == (400,)
    assert stats.bootstrap_ci(replicates, 0.8) == pytest.approx(
        np.percentile(replicates, [10, 90]), rel=1e-12
    )
    with_nan = np.r_[replicates, math.nan]
    assert stats.bootstrap_ci(with_nan, 0.95) == pytest.approx(
        np.percentile(replicates, [2.5, 97.5]), rel=1e-12
    )


def test_bootstrap_with_one_case_runs():
    """A single case is enough for a stratified bootstrap (both classes present)."""
    replicates = stats.stratified_bootstrap(
        [1, 0, 0], [0.9, 0.1, 0.5], stats.auc_score, np.random.default_rng(0), 20
    )
    assert stats.bootstrap_ci(replicates, 0.95) == (1.0, 1.0)


def test_bh_qvalues_of_integer_and_nan_p_values():
    """Integer p-values are read as floats; NaN stays NaN and does not count as a test."""
    np.testing.assert_allclose(stats.bh_qvalues([0, 1]), [0.0, 1.0])
    np.testing.assert_allclose(stats.bh_qvalues([0.01, math.nan, 0.04]), [0.02, math.nan, 0.04])


def test_wilson_ci_at_90_percent_equals_the_formula():
    """The Wilson interval uses the requested level (z = 1.645 at 90%), by its closed form."""
    z, k, n = 1.6448536269514722, 81, 263
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.wilson_ci(k, n, 0.90) == pytest.approx((centre - half, centre + half), rel=1e-9)


def test_threshold_metrics_carry_counts_and_the_level():
    """Each metric carries numerator, denominator and a Wilson interval at the requested level."""
    labels = [1, 1, 1, 0, 0, 0, 0]
    probs = [0.9, 0.6, 0.2, 0.1, 0.7, 0.3, 0.4]
    metrics = stats.threshold_metrics(labels, probs, confidence=0.9)
    low, high = stats.wilson_ci(2, 3, 0.9)
    assert metrics["sensitivity"] == {
        "value": 2 / 3,
        "ci_low": low,
        "ci_high": high,
        "numerator": 2,
        "denominator": 3,
    }
    assert (metrics["ppv"]["numerator"], metrics["ppv"]["denominator"]) == (2, 3)
    assert (metrics["accuracy"]["numerator"], metrics["accuracy"]["denominator"]) == (5, 7)


@pytest.mark.parametrize(
    ("labels", "probs", "expected"),
    [([1, 1], [0.9, 0.8], 0.025), ([0, 0], [0.1, 0.2], 0.025), ([1], [0.7], 0.09)],
)
def test_brier_score_with_one_class_or_one_row(labels, probs, expected):
    """The Brier score is the mean squared error even when one class (or one row) is all there is."""
    assert stats.brier_score(labels, probs) == pytest.approx(expected)


def test_brier_score_of_nothing_is_nan():
    """No predictions: NaN."""
    assert math.isnan(stats.brier_score([], []))


def test_classification_summary_defaults_and_level():
    """Defaults are threshold 0.5 and 95%; a 90% summary carries 90% DeLong and Wilson limits and the Brier score."""
    labels, scores = noisy_scores(80, seed=6)
    probs = 1 / (1 + np.exp(-scores))
    assert stats.classification_summary(labels, probs) == stats.classification_summary(
        labels, probs, 0.5, 0.95
    )
    summary = stats.classification_summary(labels, probs, confidence=0.9)
    auc90 = stats.auc_delong(labels, probs, 0.9)
    assert (summary["auc_ci_low"], summary["auc_ci_high"]) == (auc90.ci_low, auc90.ci_high)
    npv = stats.threshold_metrics(labels, probs, 0.5, 0.9)["npv"]
    assert (summary["npv"], summary["npv_ci_low"], summary["npv_ci_high"]) == (
        npv["value"],
        npv["ci_low"],
        npv["ci_high"],
    )
    assert summary["brier"] == pytest.approx(brier_score_loss(labels, probs))


def test_calibration_table_default_has_ten_equal_bins():
    """By default the bins are tenths of [0, 1]."""
    labels = np.array([0, 0, 1, 1, 0, 1])
    table = stats.calibration_table(labels, [0.05, 0.12, 0.18, 0.55, 0.61, 0.97])
    np.testing.assert_allclose(table["bin_low"], [0.0, 0.1, 0.5, 0.6, 0.9])
    np.testing.assert_allclose(table["bin_high"], [0.1, 0.2, 0.6, 0.7, 1.0])
    assert table["n"].tolist() == [1, 2, 1, 1, 1]


def subgroup_predictions() -> pd.DataFrame:
    """F: 12 cases (10 aged 25, 2 aged 75), 10 controls aged 25; M: 9 cases aged 45, 15 controls (10 aged 45, 5 aged 65)."""
    people = [(1, "F", 25)] * 10 + [(1, "F", 75)] * 2 + [(0, "F", 25)] * 10
    people += [(1, "M", 45)] * 9 + [(0, "M", 45)] * 10 + [(0, "M", 65)] * 5
    labels = np.array([p[0] for p in people])
    probs = np.clip(
        0.5 + 0.25 * (labels - 0.5) + np.random.default_rng(2).normal(0, 0.2, len(people)), 0.01, 0.99
    )
    return pd.DataFrame(
        {"y_true": labels, "prob": probs, "sex": [p[1] for p in people], "age": [p[2] for p in people]}
    )


def test_subgroup_rows_counts_and_notes():
    """One row per sex and occupied age bin, with the one-class and fewer-than-10 notes at their boundaries."""
    predictions = subgroup_predictions()
    table = stats.subgroup_metrics(predictions, [0, 10, 20, 30, 40, 50, 60, 70], confidence=0.9)
    assert table["variable"].tolist() == ["all", "sex", "sex", "age_bin", "age_bin", "age_bin", "age_bin"]
    assert table["subgroup"].tolist() == ["all", "F", "M", "20-29", "40-49", "60-69", "70+"]
    assert table["n"].tolist() == [46, 22, 24, 20, 19, 5, 2]
    assert table["n_case"].tolist() == [21, 12, 9, 10, 9, 0, 2]
    fewer = "fewer than 10 of one class: interval unreliable"
    assert table["note"].tolist() == [
        "",
        "",
        fewer,
        "",
        fewer,
        "only controls (n=5): AUC undefined",
        "only cases (n=2): AUC undefined",
    ]
    women = predictions[predictions["sex"] == "F"]
    expected = stats.auc_delong(women["y_true"], women["prob"], 0.9)
    row = table.iloc[1]
    assert (row["auc"], row["auc_ci_low"], row["auc_ci_high"]) == (
        expected.auc,
        expected.ci_low,
        expected.ci_high,
    )


def test_derive_seeds_of_zero_is_empty():
    """Zero repeats need zero seeds (not an error)."""
    assert stats.derive_seeds(7, 0) == []


def test_summarise_repeats_of_none_and_one():
    """No finite AUC gives n 0 and NaNs under the usual keys; one AUC has no SD."""
    empty = stats.summarise_repeats([math.nan])
    assert list(empty) == ["n", "auc_mean", "auc_sd", "auc_min", "auc_max"] and empty["n"] == 0
    assert all(math.isnan(empty[key]) for key in ("auc_mean", "auc_sd", "auc_min", "auc_max"))
    one = stats.summarise_repeats([0.7])
    assert one["n"] == 1 and one["auc_mean"] == 0.7 and math.isnan(one["auc_sd"])
    two = stats.summarise_repeats([0.7, 0.8])
    assert two["auc_sd"] == pytest.approx(math.sqrt(0.005))


def test_json_ready_mixed_keys_arrays_and_bools():
    """Keys of mixed type sort as text; arrays become lists; numpy booleans stay booleans."""
    value = stats.json_ready({2: np.array([1, 2]), "b": np.bool_(True), 10: np.array([0.5, np.nan])})
    assert json.dumps(value) == '{"10": [0.5, null], "2": [1, 2], "b": true}'


def test_bootstrap_statistic_receives_integer_labels():
    """The statistic gets 0/1 integer labels, so integer-only numpy (bincount, indexing) works on them."""
    labels = np.array([1, 0, 1, 0, 0])
    cases = stats.stratified_bootstrap(
        labels,
        np.arange(5.0),
        lambda y, s: float(np.bincount(y, minlength=2)[1]),
        np.random.default_rng(4),
        5,
    )
    assert cases.tolist() == [2.0] * 5


def test_bootstrap_ci_of_replicates_read_back_from_json():
    """Replicates written by json_ready (NaN as null) and read back give the interval of the finite ones."""
    finite = [0.61, 0.64, 0.70, 0.72, 0.75, 0.79, 0.83]
    loaded = json.loads(json.dumps(stats.json_ready([math.nan, *finite, math.nan])))
    assert loaded[0] is None
    assert stats.bootstrap_ci(loaded, 0.5) == pytest.approx(tuple(np.percentile(finite, [25, 75])), rel=1e-12)


def test_summarise_one_repeat_without_numpy_warning():
    """One finite AUC gives an undefined SD directly, without numpy's degrees-of-freedom RuntimeWarning in the log."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = stats.summarise_repeats([math.nan, 0.7])
    assert one["n"] == 1 and math.isnan(one["auc_sd"])


def test_summarise_float32_aucs_in_double_precision():
    """AUCs given as float32 (as Keras metrics return them) are averaged in double precision, not rounded to float32."""
    aucs = np.array([0.1, 0.2, 0.4], dtype=np.float32)
    exact = [float(a) for a in aucs]
    summary = stats.summarise_repeats(list(aucs))
    assert summary["auc_mean"] == pytest.approx(math.fsum(exact) / 3, rel=1e-15)
    assert summary["auc_sd"] == pytest.approx(statistics.stdev(exact), rel=1e-15)
