"""metrics.json's warnings: small test set, overfitting, descriptor beating the head, unstable repeats.

Each threshold is checked just inside and just outside its boundary, so a wrong
constant or a dropped condition changes a result.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from phenoface.evaluation import evaluation_warnings

NO_BASELINES = pd.DataFrame(columns=["baseline", "status", "auc", "auc_ci_low", "auc_ci_high"])
NO_SUBGROUPS = pd.DataFrame(columns=["variable", "subgroup", "note"])


def metrics(**changes) -> dict:
    """Metrics of a healthy evaluation (no warning), with ``changes`` applied."""
    base = {
        "n_test_case": 100,
        "n_test_control": 100,
        "auc": 0.80,
        "auc_train": 0.85,
        "baselines": {"descriptor": {"status": "ok", "auc": 0.70}},
        "repeats": {"n": 5, "auc_sd": 0.02, "auc_min": 0.77, "auc_max": 0.83},
    }
    base.update(changes)
    return base


def warnings_for(values: dict, subgroups: pd.DataFrame = NO_SUBGROUPS, baselines=NO_BASELINES) -> list[str]:
    return evaluation_warnings(values, subgroups, baselines, 0.7, [0.4, 0.6])


def test_healthy_evaluation_has_no_warning():
    """Large groups, small train-test gap, weaker descriptor, stable repeats: no warning."""
    assert warnings_for(metrics()) == []


@pytest.mark.parametrize(
    ("n_case", "n_control", "warned"),
    [(30, 30, False), (29, 100, True), (100, 29, True), (30, 200, False)],
)
def test_small_test_set_warns_below_30_per_class(n_case, n_control, warned):
    """Fewer than 30 test cases or fewer than 30 test controls warns, naming both counts."""
    found = warnings_for(metrics(n_test_case=n_case, n_test_control=n_control))
    assert len(found) == int(warned)
    if warned:
        assert f"only {n_case} cases and {n_control} controls" in found[0]


@pytest.mark.parametrize(("auc_train", "warned"), [(0.91, True), (0.89, False), (math.nan, False)])
def test_overfitting_warns_when_train_auc_exceeds_test_by_more_than_010(auc_train, warned):
    """A training-half AUC more than 0.10 above the test AUC (0.80) warns; 0.09 above or NaN does not."""
    found = warnings_for(metrics(auc_train=auc_train))
    assert len(found) == int(warned)
    if warned:
        assert "overfits" in found[0] and "0.91" in found[0] and "0.80" in found[0]


@pytest.mark.parametrize(
    ("descriptor", "warned"),
    [
        ({"status": "ok", "auc": 0.81}, True),
        ({"status": "ok", "auc": 0.80}, False),
        ({"status": "ok", "auc": 0.79}, False),
        ({"status": "skipped: too few", "auc": 0.95}, False),
    ],
)
def test_descriptor_beating_the_head_warns(descriptor, warned):
    """A logistic regression on the descriptor with a higher AUC than the head (0.80) warns, if it ran."""
    found = warnings_for(metrics(baselines={"descriptor": descriptor}))
    assert len(found) == int(warned)
    if warned:
        assert "descriptor (AUC 0.81)" in found[0]


def test_missing_descriptor_baseline_gives_no_warning():
    """Without a descriptor baseline there is nothing to compare."""
    assert warnings_for(metrics(baselines={})) == []


@pytest.mark.parametrize(("sd", "warned"), [(0.051, True), (0.049, False), (math.nan, False)])
def test_unstable_repeats_warn_above_sd_005(sd, warned):
    """Repeat AUC SD above 0.05 warns with the range; 0.049 or an undefined SD does not."""
    repeats = {"n": 5, "auc_sd": sd, "auc_min": 0.62, "auc_max": 0.88}
    found = warnings_for(metrics(repeats=repeats))
    assert len(found) == int(warned)
    if warned:
        assert "5 repeated splits" in found[0] and "0.62-0.88" in found[0]


def test_no_repeats_gives_no_repeat_warning():
    """Without repeats (evaluation.repeats: 0) nothing is said about them."""
    assert warnings_for(metrics(repeats=None)) == []


def test_one_class_subgroup_is_named():
    """A subgroup holding one class only gets a sentence naming it; other notes do not."""
    subgroups = pd.DataFrame(
        {"variable": ["sex", "age_bin"], "subgroup": ["F", "[60, 70)"], "note": ["only cases", ""]}
    )
    found = warnings_for(metrics(), subgroups)
    assert found == ["Subgroup sex=F holds only cases; it is left out of subgroup AUCs."]


def test_audit_warnings_come_first_and_use_warn_auc():
    """Shortcut-audit sentences (from audit.baseline_warnings with warn_auc) precede the others."""
    baselines = pd.DataFrame(
        [{"baseline": "image_statistics", "status": "ok", "auc": 0.75, "auc_ci_low": 0.7, "auc_ci_high": 0.8}]
    )
    found = warnings_for(metrics(n_test_case=10), baselines=baselines)
    assert len(found) == 2
    assert found[0].startswith("Image-statistics baseline") and "test set holds only 10" in found[1]
    stricter = evaluation_warnings(metrics(), NO_SUBGROUPS, baselines, 0.8, [0.4, 0.6])
    assert stricter == []


def test_thresholds_are_strict():
    """A train-test gap of exactly 0.10 and a repeat SD of exactly 0.05 do not warn (strictly greater)."""
    # 0.16 - 0.06 is exactly 0.10 in floating point (0.85 - 0.75 is not).
    assert warnings_for(metrics(auc=0.06, auc_train=0.16, baselines={})) == []
    assert warnings_for(metrics(repeats={"n": 3, "auc_sd": 0.05, "auc_min": 0.7, "auc_max": 0.8})) == []


def test_repeats_without_sd_give_no_warning():
    """A repeats summary without an SD (one repeat) is not a warning and not an error."""
    assert warnings_for(metrics(repeats={"n": 1, "auc_min": 0.8, "auc_max": 0.8})) == []


def test_small_test_set_sentence_in_full():
    """The small-test-set warning, word for word."""
    assert warnings_for(metrics(n_test_case=12)) == [
        "The test set holds only 12 cases and 100 controls; confidence intervals are wide and the AUC is imprecise."
    ]


def test_age_sex_range_is_passed_to_the_audit():
    """The configured audit.age_sex_range (not the default 0.40-0.60) decides the age+sex warning."""
    baselines = pd.DataFrame(
        [{"baseline": "age_sex", "status": "ok", "auc": 0.42, "auc_ci_low": 0.37, "auc_ci_high": 0.47}]
    )
    assert evaluation_warnings(metrics(), NO_SUBGROUPS, baselines, 0.7, [0.4, 0.6]) == []
    found = evaluation_warnings(metrics(), NO_SUBGROUPS, baselines, 0.7, [0.45, 0.55])
    assert len(found) == 1 and "outside 0.45-0.55" in found[0]
