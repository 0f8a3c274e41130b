"""Case-control tests of landmark shape and shape indices, checked against independent computations.

Small synthetic inputs and tens of permutations: every p-value is recomputed here from the same
seeded permutations (``permute_within_strata`` with a copy of the generator), so a wrong count,
tie rule or denominator shows as a different number, not only as a weaker test.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from test_shape import synthetic_cohort

from phenoface import landmarks as lm
from phenoface import shape, shape_tests

#: Relative tolerance of a tie: a permuted statistic equal to the observed one up to rounding counts.
TIE = 1e-9


def at_least_as_extreme(permuted: np.ndarray, observed: np.ndarray | float) -> np.ndarray:
    """``permuted >= observed``, where a value equal to the observed one up to rounding counts as a tie."""
    return (permuted > observed) | np.isclose(permuted, observed, rtol=TIE, atol=0.0)


def permuted_case_masks(is_case: np.ndarray, strata, seed: int, n_permutations: int) -> np.ndarray:
    """The case masks of the permutations a test seeded with ``seed`` draws (same generator stream)."""
    return shape_tests.permute_within_strata(
        np.asarray(is_case, dtype=bool), strata, np.random.default_rng(seed), n_permutations
    )


def mean_difference(data: np.ndarray, case: np.ndarray) -> np.ndarray:
    """Case mean minus control mean of ``data`` rows."""
    return data[case].mean(axis=0) - data[~case].mean(axis=0)


# --------------------------------------------------------------------------- permutations


def test_permute_within_strata_is_a_uniform_shuffle_of_each_stratum() -> None:
    """Each stratum's labels are reshuffled among its own rows, every order about equally often; dtype kept."""
    # Strata interleaved and of mixed types (as read from a sheet): a stratum is its text.
    strata = np.array([7, "b", 7, "b", "b", "7", "c"], dtype=object)
    labels = np.arange(7)
    permuted = shape_tests.permute_within_strata(labels, strata, np.random.default_rng(0), 1200)
    assert permuted.shape == (1200, 7) and permuted.dtype == labels.dtype
    members = {"7": [0, 2, 5], "b": [1, 3, 4], "c": [6]}
    for rows in members.values():
        np.testing.assert_array_equal(np.sort(permuted[:, rows], axis=1), np.tile(rows, (1200, 1)))
    for rows in (members["7"], members["b"]):
        orders = pd.Series([tuple(row) for row in permuted[:, rows]]).value_counts(normalize=True)
        assert len(orders) == 6 and orders.between(0.12, 0.22).all()
    flags = shape_tests.permute_within_strata(labels < 3, strata, np.random.default_rng(0), 5)
    assert flags.dtype == bool and (flags.sum(axis=1) == 3).all()


def test_permuted_contrasts_are_mean_differences_in_blocks() -> None:
    """Blocks of ``chunk`` rows (the rest last) hold case-minus-control means under the test's permutations."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(9, 3)) + np.arange(9)[:, None]
    is_case = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1])  # 0/1 codes work like booleans
    strata = ["a", "a", "a", "a", "b", "b", "b", "b", "b"]
    blocks = list(
        shape_tests.permuted_contrasts(data, is_case, strata, np.random.default_rng(5), 25, chunk=10)
    )
    assert [block.shape for block in blocks] == [(10, 3), (10, 3), (5, 3)]
    masks = permuted_case_masks(is_case, strata, 5, 25)
    expected = np.stack([mean_difference(data, mask) for mask in masks])
    np.testing.assert_allclose(np.concatenate(blocks), expected, rtol=1e-12, atol=1e-12)
    default = shape_tests.permuted_contrasts(data[:, 0], is_case, strata, np.random.default_rng(5), 250)
    assert [block.shape for block in default] == [(100,), (100,), (50,)]


# --------------------------------------------------------------------------- landmark shift test


def small_landmark_study() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eight "aligned" shapes, 3 cases and 5 controls in three small strata; landmark 0 never moves."""
    rng = np.random.default_rng(11)
    aligned = rng.normal(0, 0.05, (8, lm.N_LANDMARKS, 2))
    aligned[:, 0] = 0.0
    is_case = np.array([1, 0, 1, 0, 1, 0, 0, 0])
    aligned[is_case == 1, 20:30] += 0.04  # a real shift on landmarks 20-29
    strata = np.array(["a", "a", "b", "b", "c", "c", "c", "c"])
    return aligned, is_case, strata


def test_landmark_shift_test_matches_permutation_counts() -> None:
    """Means, shift, distance and every p/q value equal a count over the same permutations (ties count)."""
    aligned, is_case, strata = small_landmark_study()
    result = shape_tests.landmark_shift_test(aligned, is_case, strata, np.random.default_rng(3), 30, chunk=7)

    case = is_case.astype(bool)
    np.testing.assert_allclose(result.case_mean, aligned[case].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.control_mean, aligned[~case].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.shift, result.case_mean - result.control_mean, rtol=1e-12, atol=1e-15)
    observed = (result.shift**2).sum(axis=1)
    assert result.distance == pytest.approx(math.sqrt(observed.sum()), rel=1e-12)
    assert (result.n_case, result.n_control, result.n_permutations) == (3, 5, 30)

    masks = permuted_case_masks(is_case, strata, 3, 30)
    assert (masks == case).all(axis=1).any(), "the observed labelling must recur for ties to be tested"
    permuted = np.stack([(mean_difference(aligned, mask) ** 2).sum(axis=1) for mask in masks])
    exceed = at_least_as_extreme(permuted, observed).sum(axis=0)
    np.testing.assert_allclose(result.p_values, (1 + exceed) / 31, rtol=1e-12)
    np.testing.assert_allclose(
        result.q_values, scipy_stats.false_discovery_control(result.p_values), rtol=1e-12
    )
    exceed_total = at_least_as_extreme(permuted.sum(axis=1), observed.sum()).sum()
    assert result.distance_p == pytest.approx((1 + exceed_total) / 31, rel=1e-12)
    # A landmark that never moves is never evidence of a shift.
    assert result.shift[0].tolist() == [0.0, 0.0] and result.p_values[0] == 1.0
    assert result.p_values[20:30].mean() < result.p_values[30:].mean()


def test_landmark_shift_test_no_difference_at_all_gives_p_one() -> None:
    """Shapes that are all zero do not differ: distance 0, and every p and the global p are exactly 1."""
    aligned = np.zeros((6, lm.N_LANDMARKS, 2))
    result = shape_tests.landmark_shift_test(
        aligned, [1, 1, 1, 0, 0, 0], ["s"] * 6, np.random.default_rng(0), 9
    )
    assert result.distance == 0.0 and result.distance_p == 1.0 and (result.p_values == 1.0).all()


def test_landmark_shift_test_computes_in_float64() -> None:
    """Single-precision shapes give the numbers of their float64 copy: nothing is summed in float32."""
    aligned, is_case, strata = small_landmark_study()
    single = (aligned + 1.0).astype(np.float32)  # an offset makes float32 sums inexact
    low, high = (
        shape_tests.landmark_shift_test(shapes, is_case, strata, np.random.default_rng(3), 30)
        for shapes in (single, single.astype(np.float64))
    )
    np.testing.assert_allclose(low.shift, high.shift, rtol=1e-12, atol=1e-15)
    assert low.distance == pytest.approx(high.distance, rel=1e-12)
    np.testing.assert_array_equal(low.p_values, high.p_values)


@pytest.mark.parametrize("is_case", [[1, 1, 1], [0, 0, 0]])
def test_landmark_shift_test_needs_both_groups(is_case: list[int]) -> None:
    """Without a case or without a control the test refuses, saying what it needs."""
    aligned = np.zeros((3, lm.N_LANDMARKS, 2))
    with pytest.raises(ValueError, match="^landmark_shift_test needs at least one case and one control$"):
        shape_tests.landmark_shift_test(aligned, is_case, ["s"] * 3, np.random.default_rng(0), 5)


def test_landmark_shift_test_runs_on_one_case_and_one_control() -> None:
    """One case and one control are enough; swapping them gives the same statistic, so every p is 1."""
    aligned = np.random.default_rng(0).normal(size=(2, lm.N_LANDMARKS, 2))
    result = shape_tests.landmark_shift_test(aligned, [True, False], ["s", "s"], np.random.default_rng(0), 9)
    assert (result.n_case, result.n_control) == (1, 1)
    np.testing.assert_allclose(result.shift, aligned[0] - aligned[1])
    assert (result.p_values == 1.0).all() and result.distance_p == 1.0


# --------------------------------------------------------------------------- OLS


def test_ols_effect_with_covariates_matches_nested_model_f_test() -> None:
    """Coefficient from least squares; t^2 equals the F of dropping the effect, and p, SE and t follow."""
    rng = np.random.default_rng(4)
    n = 40
    group = np.repeat([0.0, 1.0], 20)
    age = rng.uniform(20, 60, n) + 5 * group
    sex = rng.integers(0, 2, n).astype(float)
    y = 0.5 + 0.8 * group + 0.05 * age - 0.4 * sex + rng.normal(0, 0.5, n)
    effect = shape_tests.ols_effect(y, group, {"age": age, "sex": sex})

    full = np.column_stack([np.ones(n), group, age, sex])
    reduced = np.column_stack([np.ones(n), age, sex])
    beta = np.linalg.lstsq(full, y, rcond=None)[0]
    rss_full = float(np.sum((y - full @ beta) ** 2))
    rss_reduced = float(np.sum((y - reduced @ np.linalg.lstsq(reduced, y, rcond=None)[0]) ** 2))
    f_value = (rss_reduced - rss_full) / (rss_full / (n - 4))
    assert effect.coef == pytest.approx(beta[1], rel=1e-10)
    assert effect.t == pytest.approx(math.copysign(math.sqrt(f_value), beta[1]), rel=1e-8)
    assert effect.se == pytest.approx(abs(beta[1]) / math.sqrt(f_value), rel=1e-8)
    assert effect.p == pytest.approx(scipy_stats.f.sf(f_value, 1, n - 4), rel=1e-8)
    assert (effect.df, effect.covariates, effect.note) == (36, "age+sex", "")


def test_ols_effect_without_residual_degrees_of_freedom() -> None:
    """As many faces as coefficients: every number is NaN and the note counts faces and coefficients."""
    effect = shape_tests.ols_effect([1.0, 2.0, 4.0], [0.0, 1.0, 1.0], {"age": np.array([30.0, 40.0, 45.0])})
    assert all(math.isnan(value) for value in (effect.coef, effect.se, effect.t, effect.p))
    assert (effect.df, effect.covariates, effect.note) == (0, "age", "3 faces for 3 coefficients")


def test_ols_effect_with_one_residual_degree_of_freedom() -> None:
    """One face more than coefficients is enough for an estimate, a finite SE and a p-value."""
    effect = shape_tests.ols_effect(
        [1.0, 2.0, 4.0, 3.5], [0.0, 1.0, 1.0, 0.0], {"age": np.array([30.0, 40.0, 45.0, 50.0])}
    )
    assert effect.df == 1 and effect.note == ""
    assert all(math.isfinite(value) for value in (effect.coef, effect.se, effect.t, effect.p))


def test_ols_effect_rank_deficient_design_is_named() -> None:
    """A covariate that copies the group gives NaNs, the residual df and the exact note."""
    group = np.repeat([0.0, 1.0], 5)
    effect = shape_tests.ols_effect(np.arange(10.0), group, {"copy": group})
    assert all(math.isnan(value) for value in (effect.coef, effect.se, effect.t, effect.p))
    assert (effect.df, effect.covariates, effect.note) == (7, "copy", "design is rank deficient")


def test_ols_effect_perfect_fit_has_no_test() -> None:
    """An outcome the design fits exactly has coefficient and SE 0, no t or p, and says why."""
    effect = shape_tests.ols_effect(np.zeros(6), [0, 0, 0, 1, 1, 1], {})
    assert (effect.coef, effect.se) == (0.0, 0.0) and math.isnan(effect.t) and math.isnan(effect.p)
    assert (effect.df, effect.covariates, effect.note) == (4, "none", "residuals are all zero (perfect fit)")


# --------------------------------------------------------------------------- index group test


def index_study() -> dict:
    """Unbalanced groups with unequal spread (SD < 1) in four strata, both sexes, varied ages."""
    rng = np.random.default_rng(8)
    is_case = np.array([True] * 7 + [False] * 11)
    values = np.where(is_case, rng.normal(1.3, 0.15, 18), rng.normal(1.0, 0.4, 18))
    strata = np.array(["a", "b", "c", "d"] * 4 + ["a", "b"])
    values = values + np.select([strata == "a", strata == "b"], [2.0, -2.0], 0.0)  # strata matter
    sex = np.array(["M", "F", "M"] * 6)
    age = rng.uniform(20, 60, 18)
    return {"values": values, "is_case": is_case, "strata": strata, "age": age, "sex": sex}


def test_index_group_test_matches_welch_cohen_permutation_and_ols() -> None:
    """Each number equals its textbook computation: Welch CI, pooled-SD d, permutation p, adjusted OLS."""
    study = index_study()
    values, is_case = study["values"], study["is_case"]
    result = shape_tests.index_group_test(
        **study, rng=np.random.default_rng(6), n_permutations=40, confidence=0.9
    )
    cases, controls = values[is_case], values[~is_case]
    assert (result["n_case"], result["n_control"]) == (7, 11)
    assert result["mean_case"] == pytest.approx(cases.mean(), rel=1e-12)
    assert result["mean_control"] == pytest.approx(controls.mean(), rel=1e-12)
    assert result["diff"] == pytest.approx(cases.mean() - controls.mean(), rel=1e-12)
    welch = scipy_stats.ttest_ind(cases, controls, equal_var=False).confidence_interval(0.9)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((welch.low, welch.high), rel=1e-9)
    pooled = math.sqrt((6 * cases.var(ddof=1) + 10 * controls.var(ddof=1)) / 16)
    assert result["cohens_d"] == pytest.approx(result["diff"] / pooled, rel=1e-12)

    masks = permuted_case_masks(is_case, study["strata"], 6, 40)
    permuted = np.abs([mean_difference(values, mask) for mask in masks])
    exceed = at_least_as_extreme(permuted, abs(result["diff"])).sum()
    assert result["p_perm"] == pytest.approx((1 + exceed) / 41, rel=1e-12)

    adjusted = shape_tests.ols_effect(
        values, is_case.astype(float), {"age": study["age"], "sex": (study["sex"] == "M").astype(float)}
    )
    assert (result["adj_diff"], result["adj_se"], result["adj_p"]) == pytest.approx(
        (adjusted.coef, adjusted.se, adjusted.p), rel=1e-12
    )
    assert (result["adj_covariates"], result["note"]) == ("age+sex", "")
    assert list(result) == [c for c in shape_tests.SHAPE_TEST_COLUMNS if c not in ("subset", "index")]


def test_index_group_test_computes_in_float64() -> None:
    """A single-precision index gives the numbers of its float64 copy."""
    study = index_study()
    study["values"] = (study["values"] + 100.0).astype(np.float32)  # float32 means would be inexact
    low = shape_tests.index_group_test(**study, rng=np.random.default_rng(0), n_permutations=20)
    study["values"] = study["values"].astype(np.float64)
    high = shape_tests.index_group_test(**study, rng=np.random.default_rng(0), n_permutations=20)
    for key in ("mean_case", "mean_control", "diff", "ci_low", "cohens_d", "p_perm", "adj_diff"):
        assert low[key] == pytest.approx(high[key], rel=1e-12), key


def test_index_group_test_default_level_is_95_percent() -> None:
    """Without ``confidence`` the Welch interval is the 95% one."""
    study = index_study()
    result = shape_tests.index_group_test(**study, rng=np.random.default_rng(0), n_permutations=5)
    cases, controls = study["values"][study["is_case"]], study["values"][~study["is_case"]]
    welch = scipy_stats.ttest_ind(cases, controls, equal_var=False).confidence_interval(0.95)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((welch.low, welch.high), rel=1e-9)


def test_index_group_test_observed_labelling_recurs_as_a_tie() -> None:
    """Permutations that reproduce the observed difference (pairs of one case, one control) count in p."""
    values = np.array([1.0, 0.2, 0.9, 0.4, 1.7, 0.1])
    is_case = np.array([True, False] * 3)
    strata = ["a", "a", "b", "b", "c", "c"]
    result = shape_tests.index_group_test(
        values, is_case, strata, np.arange(6.0), ["F"] * 6, np.random.default_rng(2), 16
    )
    masks = permuted_case_masks(is_case, strata, 2, 16)
    assert (masks == is_case).all(axis=1).any()
    exceed = at_least_as_extreme(
        np.abs([mean_difference(values, m) for m in masks]), abs(result["diff"])
    ).sum()
    assert result["p_perm"] == pytest.approx((1 + exceed) / 17, rel=1e-12)


def test_index_group_test_constant_index() -> None:
    """An index equal in every face: zero-width CI, no Cohen's d, p 1, and a perfect-fit note for OLS."""
    is_case, age = [1, 1, 1, 1, 0, 0, 0, 0], np.arange(8.0) + 30
    result = shape_tests.index_group_test(
        np.zeros(8), is_case, ["s"] * 8, age, ["M", "F"] * 4, np.random.default_rng(0), 19
    )
    assert (result["diff"], result["ci_low"], result["ci_high"]) == (0.0, 0.0, 0.0)
    assert math.isnan(result["cohens_d"]) and result["p_perm"] == 1.0
    assert (result["adj_diff"], result["adj_se"]) == (0.0, 0.0) and math.isnan(result["adj_p"])
    assert result["note"] == "residuals are all zero (perfect fit)"


@pytest.mark.parametrize("is_case", [[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
def test_index_group_test_needs_two_of_each(is_case: list[int]) -> None:
    """One case or one control is refused with the rule in the message."""
    with pytest.raises(ValueError, match="^index_group_test needs at least two cases and two controls$"):
        shape_tests.index_group_test(
            np.arange(5.0), is_case, ["s"] * 5, np.arange(5.0), ["M"] * 5, np.random.default_rng(0), 5
        )


def test_index_group_test_two_of_each_is_enough() -> None:
    """Two cases and two controls are tested."""
    result = shape_tests.index_group_test(
        np.array([1.0, 1.5, 0.2, 0.3]), [1, 1, 0, 0], ["s"] * 4, np.arange(4.0), ["M"] * 4,
        np.random.default_rng(0), 5,
    )  # fmt: skip
    assert (result["n_case"], result["n_control"]) == (2, 2) and result["diff"] == pytest.approx(1.0)


def test_index_group_test_all_sexes_unknown_adjusts_for_age_only() -> None:
    """When no face has a known sex there is no sex term at all (an all-ones indicator would be collinear)."""
    study = index_study()
    study["sex"] = np.full(18, "")
    result = shape_tests.index_group_test(**study, rng=np.random.default_rng(0), n_permutations=5)
    assert result["adj_covariates"] == "age" and math.isfinite(result["adj_p"])


def test_index_group_test_zero_difference_has_p_one() -> None:
    """Equal group means: every permutation is at least as extreme, so p is exactly 1."""
    values = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    is_case = np.array([True, True, False, False, True, True, False, False])
    result = shape_tests.index_group_test(
        values, is_case, ["s"] * 8, np.arange(8.0), ["M", "F"] * 4, np.random.default_rng(1), 30
    )
    assert result["diff"] == 0.0 and result["p_perm"] == 1.0


# --------------------------------------------------------------------------- subsets and counts


def test_subset_skip_reason_boundaries() -> None:
    """Exactly ``minimum`` of each is tested; one fewer of either is not, and the message gives the counts."""
    assert shape_tests.subset_skip_reason(2, 2) == ""
    assert shape_tests.subset_skip_reason(1, 2) == (
        "not tested: 1 case(s) and 2 control(s); at least 2 of each needed"
    )
    assert shape_tests.subset_skip_reason(2, 1).startswith("not tested: 2 case(s) and 1 control(s)")
    assert shape_tests.subset_skip_reason(4, 5, minimum=5).endswith("at least 5 of each needed")


def test_group_counts_by_group_and_sex() -> None:
    """Counts per group and sex, and all faces of the group, from an unbalanced table."""
    images = pd.DataFrame(
        {"group": ["case", "case", "case", "control", "control"], "sex": ["M", "M", "F", "F", ""]}
    )
    assert shape_tests.group_counts(images) == {
        "case": {"M": 2, "F": 1, "all": 3},
        "control": {"M": 0, "F": 1, "all": 2},
    }


# --------------------------------------------------------------------------- compare_groups


def small_cohort() -> tuple[pd.DataFrame, np.ndarray]:
    """Ten faces: men have a single case (not tested), women 3 cases and 3 controls; a non-default index."""
    images, shapes = synthetic_cohort(np.random.default_rng(0), 6, 1.08)
    keep = ~((images["sex"] == "M") & (images["group"] == "case") & (images["image_id"] != "case_001"))
    images = images[keep.to_numpy()].set_index("image_id", drop=False)  # index named like a column
    return images, shapes[keep.to_numpy()]


def test_compare_groups_tables(caplog: pytest.LogCaptureFixture) -> None:
    """Landmark and index tables of tested and untested subsets, numbered rows, logged headline per subset."""
    images, shapes = small_cohort()
    caplog.set_level(logging.INFO, logger=shape_tests.LOGGER.name)
    comparison = shape_tests.compare_groups(images, shapes, np.random.default_rng(3), 20, confidence=0.8)

    table = comparison.landmark_tests
    assert list(table.columns) == shape_tests.LANDMARK_TEST_COLUMNS
    assert table.index.equals(pd.RangeIndex(len(table)))
    assert str(table["landmark"].dtype) == "Int64"  # the CSV says 3, not 3.0
    assert list(table["subset"].value_counts().sort_index().items()) == [("F", 68), ("M", 1), ("all", 68)]
    assert set(comparison.tests) == {"all", "F"}
    for subset in ("all", "F"):
        rows = table[table["subset"] == subset]
        test = comparison.tests[subset]
        part = images["sex"].eq(subset).to_numpy() if subset == "F" else np.ones(len(images), bool)
        assert rows["landmark"].tolist() == list(range(68)) and rows["region"].tolist() == lm.GROUP_OF_POINT
        np.testing.assert_allclose(rows[["dx", "dy"]].to_numpy(), test.shift)
        np.testing.assert_allclose(rows["shift"], np.hypot(test.shift[:, 0], test.shift[:, 1]))
        mean_size = shape.centroid_size(shapes[part]).mean()
        np.testing.assert_allclose(rows["shift_px"], rows["shift"] * mean_size, rtol=1e-12)
        np.testing.assert_array_equal(rows["p_value"], test.p_values)
        np.testing.assert_array_equal(rows["q_value"], test.q_values)
        counts = (int(images[part]["group"].eq("case").sum()), int(images[part]["group"].eq("control").sum()))
        assert set(zip(rows["n_case"], rows["n_control"])) == {counts} == {(test.n_case, test.n_control)}
        assert (rows["note"] == "").all()
    men = table[table["subset"] == "M"].iloc[0]
    assert (men["n_case"], men["n_control"], men["region"]) == (1, 3, "")
    assert men["note"] == "not tested: 1 case(s) and 3 control(s); at least 2 of each needed"

    tests = comparison.shape_tests
    assert list(tests.columns) == shape_tests.SHAPE_TEST_COLUMNS
    assert list(zip(tests["subset"], tests["index"])) == list(
        itertools.product(("all", "M", "F"), shape.INDEX_NAMES)
    )
    indices = comparison.shape_indices
    assert list(indices["image_id"]) == list(images["image_id"])
    for row in tests[tests["subset"] != "M"].itertuples():
        part = indices if row.subset == "all" else indices[indices["sex"] == row.subset]
        cases, controls = (part.loc[part["group"] == g, row.index].to_numpy() for g in ("case", "control"))
        welch = scipy_stats.ttest_ind(cases, controls, equal_var=False).confidence_interval(0.8)
        assert (row.ci_low, row.ci_high) == pytest.approx((welch.low, welch.high), rel=1e-9)
        covariates = {"age": part["age"].to_numpy(float)}
        if row.subset == "all":
            covariates["sex"] = (part["sex"] == "M").to_numpy(float)
        adjusted = shape_tests.ols_effect(
            part[row.index], (part["group"] == "case").to_numpy(float), covariates
        )
        assert (row.adj_diff, row.adj_p, row.adj_covariates) == (
            pytest.approx(adjusted.coef, rel=1e-12), pytest.approx(adjusted.p, rel=1e-12), adjusted.covariates
        )  # fmt: skip
        assert row.note == ""
    untested = tests[tests["subset"] == "M"]
    assert (untested["adj_covariates"] == "").all() and untested["note"].str.startswith("not tested").all()
    assert (untested[["n_case", "n_control"]].to_numpy() == (1, 3)).all()

    everyone = comparison.summary["subsets"]["all"]
    lines = [record.getMessage() for record in caplog.records if record.name == shape_tests.LOGGER.name]
    assert lines[0] == (
        f"all: 4 cases, 6 controls; Procrustes distance {comparison.tests['all'].distance:.4g} "
        f"(p {comparison.tests['all'].distance_p:.3g}); {everyone['n_landmarks_q_below_fdr']} landmark(s) q < 0.05"
    )
    assert len(lines) == 2 and lines[1].startswith("F: 3 cases, 3 controls; Procrustes distance ")


def test_compare_groups_summary_and_warnings() -> None:
    """The summary's headline numbers per subset and index, the skipped subset, and the FDR warning."""
    images, shapes = small_cohort()
    comparison = shape_tests.compare_groups(images, shapes, np.random.default_rng(3), 20, fdr=1.0)
    summary = comparison.summary
    assert summary["fdr"] == 1.0 and list(summary["subsets"]) == ["all", "M", "F"]
    assert summary["subsets"]["M"] == {
        "n_case": 1, "n_control": 3, "tested": False,
        "note": "not tested: 1 case(s) and 3 control(s); at least 2 of each needed",
    }  # fmt: skip
    for subset in ("all", "F"):
        test = comparison.tests[subset]
        below = np.flatnonzero(test.q_values < 1.0)
        part = images["sex"].eq(subset).to_numpy() if subset == "F" else np.ones(len(images), bool)
        headline = dict(summary["subsets"][subset])
        assert headline.pop("mean_centroid_size_px") == pytest.approx(
            shape.centroid_size(shapes[part]).mean()
        )
        assert headline == {
            "n_case": test.n_case, "n_control": test.n_control, "tested": True,
            "procrustes_distance": test.distance, "procrustes_distance_p": test.distance_p,
            "n_landmarks_q_below_fdr": below.size, "landmarks_q_below_fdr": below.tolist(),
        }  # fmt: skip
    # q is at most 1: a q-value of exactly 1 is not "below" an FDR of 1.
    assert (comparison.tests["all"].q_values == 1.0).any()
    tests = comparison.shape_tests.set_index(["subset", "index"])
    assert set(summary["shape_indices"]) == {f"{s}:{i}" for s in ("all", "F") for i in shape.INDEX_NAMES}
    keys = ("diff", "ci_low", "ci_high", "cohens_d", "p_perm", "adj_diff", "adj_p")
    assert summary["shape_indices"]["F:cjwr"] == {key: tests.loc[("F", "cjwr"), key] for key in keys}
    assert (
        comparison.warnings[0]
        == "subset M: not tested: 1 case(s) and 3 control(s); at least 2 of each needed"
    )

    strict = shape_tests.compare_groups(images, shapes, np.random.default_rng(3), 20, fdr=1e-6)
    smallest = np.nanmin(strict.tests["F"].q_values)
    assert f"subset F: no landmark shift survives FDR 1e-06 (smallest q {smallest:.3g})" in strict.warnings


def test_compare_groups_with_a_single_case_tests_nothing_but_keeps_the_columns() -> None:
    """With one case no subset is tested, yet both tables have every column and one note row per subset."""
    images, shapes = small_cohort()
    single = (images["group"] == "control") | (images["image_id"] == "case_001")
    comparison = shape_tests.compare_groups(
        images[single.to_numpy()], shapes[single.to_numpy()], np.random.default_rng(0), 5
    )
    assert comparison.tests == {} and comparison.summary["shape_indices"] == {}
    assert list(comparison.landmark_tests.columns) == shape_tests.LANDMARK_TEST_COLUMNS
    assert list(comparison.landmark_tests["subset"]) == ["all", "M", "F"]
    assert list(comparison.shape_tests.columns) == shape_tests.SHAPE_TEST_COLUMNS
    assert len(comparison.shape_tests) == 9 and comparison.shape_tests["mean_case"].isna().all()
    assert [w.split(":")[0] for w in comparison.warnings] == ["subset all", "subset M", "subset F"]


def test_compare_groups_rows_must_match() -> None:
    """Images and landmarks of different lengths are refused."""
    images, shapes = small_cohort()
    with pytest.raises(ValueError, match="^images and landmarks must have the same rows$"):
        shape_tests.compare_groups(images, shapes[:-1], np.random.default_rng(0), 5)
