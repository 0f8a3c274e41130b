"""Case-control tests of landmark shape and adiposity indices (the numbers behind the paper's Figure 3).

Per landmark, the shift of the case mean from the control mean after
Procrustes, with a permutation p-value (labels permuted *within* matching
strata, so the matching is respected) and Benjamini-Hochberg q-values; per
adiposity index, a Welch CI, Cohen's d, a within-strata permutation p-value
and an age/sex-adjusted OLS difference. Associations in this cohort only;
randomness only from the :class:`numpy.random.Generator` passed in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from . import landmarks as lm
from .cohort import GROUPS, SEXES
from .shape import INDEX_NAMES, generalized_procrustes, shape_indices
from .stats import bh_qvalues

LOGGER = logging.getLogger(__name__)

#: Subsets every test is run on: all faces, then each sex.
SUBSETS = ("all",) + SEXES
LANDMARK_TEST_COLUMNS = [
    "subset", "landmark", "region", "dx", "dy", "shift", "shift_px", "p_value", "q_value",
    "n_case", "n_control", "note",
]  # fmt: skip
SHAPE_TEST_COLUMNS = [
    "subset", "index", "n_case", "n_control", "mean_case", "mean_control", "diff", "ci_low", "ci_high",
    "cohens_d", "p_perm", "adj_diff", "adj_se", "adj_p", "adj_covariates", "note",
]  # fmt: skip


def permute_within_strata(
    labels: np.ndarray, strata: Sequence, rng: np.random.Generator, n_permutations: int
) -> np.ndarray:
    """Shuffle labels among the members of each stratum, many times at once.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n,)`` labels (e.g. True for a case).
    strata : sequence
        ``(n,)`` stratum of each row.
    rng : numpy.random.Generator
        The only source of randomness.
    n_permutations : int
        Number of permuted label vectors.

    Returns
    -------
    numpy.ndarray
        ``(n_permutations, n)``; every row holds, in each stratum, exactly
        the labels that stratum held.
    """
    labels = np.asarray(labels)
    codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1].astype(np.float64)
    n = labels.shape[0]
    sorted_labels = labels[np.argsort(codes, kind="stable")]
    # Sorting by stratum code + U[0, 1) orders every stratum's members as one
    # contiguous block (same blocks as the stable sort) in random order.
    order = np.argsort(codes[None, :] + rng.random((n_permutations, n)), axis=1)
    out = np.empty((n_permutations, n), dtype=labels.dtype)
    out[np.arange(n_permutations)[:, None], order] = sorted_labels[None, :]
    return out


def _permutation_p(exceed: np.ndarray, n_permutations: int) -> np.ndarray:
    """``(1 + #{perm >= observed}) / (1 + P)`` (never 0)."""
    return (1.0 + exceed) / (1.0 + n_permutations)


def _contrast_weights(is_case: np.ndarray) -> np.ndarray:
    """Row weights (``1/n_case`` cases, ``-1/n_control`` controls): their dot product is a mean difference."""
    is_case = np.asarray(is_case, dtype=bool)
    n_case, n_control = int(is_case.sum()), int((~is_case).sum())
    return np.where(is_case, 1.0 / n_case, -1.0 / n_control)


def permuted_contrasts(
    data: np.ndarray,
    is_case: np.ndarray,
    strata: Sequence,
    rng: np.random.Generator,
    n_permutations: int,
    chunk: int = 100,
):
    """Yield case-minus-control mean differences of ``data`` under within-strata permutations.

    Parameters
    ----------
    data : numpy.ndarray
        ``(n,)`` or ``(n, m)`` values per face.
    is_case : numpy.ndarray
        ``(n,)`` bool.
    strata, rng, n_permutations
        See :func:`permute_within_strata`.
    chunk : int
        Permutations per block (memory ~ ``chunk x n``).

    Yields
    ------
    numpy.ndarray
        ``(size,)`` or ``(size, m)`` blocks, ``n_permutations`` rows in all.
    """
    weights = _contrast_weights(is_case)
    done = 0
    while done < n_permutations:
        size = min(chunk, n_permutations - done)
        yield permute_within_strata(weights, strata, rng, size) @ data
        done += size


@dataclass
class LandmarkTest:
    """Case-minus-control mean shift of each landmark after Procrustes.

    Attributes
    ----------
    case_mean, control_mean : numpy.ndarray
        ``(68, 2)`` group means of the aligned shapes (unit centroid size).
    shift : numpy.ndarray
        ``(68, 2)`` ``case_mean - control_mean``.
    p_values, q_values : numpy.ndarray
        ``(68,)`` permutation p-values of the squared shift and their BH q-values.
    distance : float
        Root of the summed squared shifts (Procrustes distance between means).
    distance_p : float
        Permutation p-value of ``distance`` (one global test of shape).
    n_case, n_control, n_permutations : int
    """

    case_mean: np.ndarray
    control_mean: np.ndarray
    shift: np.ndarray
    p_values: np.ndarray
    q_values: np.ndarray
    distance: float
    distance_p: float
    n_case: int
    n_control: int
    n_permutations: int


def landmark_shift_test(
    aligned: np.ndarray,
    is_case: np.ndarray,
    strata: Sequence,
    rng: np.random.Generator,
    n_permutations: int,
    chunk: int = 100,
) -> LandmarkTest:
    """Test each landmark's case-control mean shift by permutation within strata.

    The statistic of landmark ``j`` is ``|mean_case_j - mean_control_j|^2``
    on the aligned shapes. Group labels are permuted within strata
    (:func:`permute_within_strata`), which keeps each stratum's case and
    control counts: the null distribution respects the matching. Superimposition
    ignores the labels, so it is done once, before permuting.

    Parameters
    ----------
    aligned : numpy.ndarray
        ``(n, 68, 2)`` Procrustes-aligned shapes.
    is_case : numpy.ndarray
        ``(n,)`` bool.
    strata : sequence
        ``(n,)`` matching stratum of each face.
    rng : numpy.random.Generator
    n_permutations : int
    chunk : int
        Permutations evaluated per matrix product (memory ~ chunk x n).

    Returns
    -------
    LandmarkTest
    """
    is_case = np.asarray(is_case, dtype=bool)
    if is_case.sum() < 1 or (~is_case).sum() < 1:
        raise ValueError("landmark_shift_test needs at least one case and one control")
    n = aligned.shape[0]
    flat = np.asarray(aligned, dtype=np.float64).reshape(n, -1)
    weights = _contrast_weights(is_case)
    difference = weights @ flat
    observed = (difference.reshape(-1, 2) ** 2).sum(axis=1)
    observed_total = observed.sum()
    # Relative tolerance so floating-point noise does not break ties.
    margin = 1.0 - 1e-9
    exceed = np.zeros_like(observed)
    exceed_total = 0
    for block in permuted_contrasts(flat, is_case, strata, rng, n_permutations, chunk):
        stats = (block.reshape(block.shape[0], -1, 2) ** 2).sum(axis=2)
        exceed += (stats >= observed * margin).sum(axis=0)
        exceed_total += int((stats.sum(axis=1) >= observed_total * margin).sum())
    p_values = _permutation_p(exceed, n_permutations)
    case_mean = flat[is_case].mean(axis=0).reshape(-1, 2)
    control_mean = flat[~is_case].mean(axis=0).reshape(-1, 2)
    return LandmarkTest(
        case_mean=case_mean,
        control_mean=control_mean,
        shift=case_mean - control_mean,
        p_values=p_values,
        q_values=bh_qvalues(p_values),
        distance=float(math.sqrt(observed_total)),
        distance_p=float(_permutation_p(exceed_total, n_permutations)),
        n_case=int(is_case.sum()),
        n_control=int((~is_case).sum()),
        n_permutations=int(n_permutations),
    )


@dataclass
class OlsEffect:
    """One OLS coefficient with its standard error and t-test.

    Attributes
    ----------
    coef, se, t, p : float
        NaN when the design is rank deficient or has no residual degrees of freedom.
    df : int
        Residual degrees of freedom.
    covariates : str
        Terms next to the effect, e.g. ``"age+sex"``.
    note : str
        Why the effect is NaN, else empty.
    """

    coef: float
    se: float
    t: float
    p: float
    df: int
    covariates: str
    note: str = ""


def ols_effect(y: np.ndarray, effect: np.ndarray, covariates: dict[str, np.ndarray]) -> OlsEffect:
    """OLS of ``y`` on an intercept, ``effect`` and covariates; the effect's coefficient.

    Parameters
    ----------
    y : numpy.ndarray
        ``(n,)`` outcome.
    effect : numpy.ndarray
        ``(n,)`` regressor of interest (1 = case, 0 = control).
    covariates : dict of str to numpy.ndarray
        Adjustment regressors, in order.

    Returns
    -------
    OlsEffect
        Coefficient, classical SE ``sqrt(s^2 (X'X)^-1)``, t and two-sided p
        from Student's t with ``n - p`` degrees of freedom.
    """
    y = np.asarray(y, dtype=np.float64)
    columns = [np.ones_like(y), np.asarray(effect, dtype=np.float64)]
    columns += [np.asarray(value, dtype=np.float64) for value in covariates.values()]
    design = np.column_stack(columns)
    n, k = design.shape
    label = "+".join(covariates) or "none"
    df = n - k
    if df <= 0:
        return OlsEffect(math.nan, math.nan, math.nan, math.nan, df, label, f"{n} faces for {k} coefficients")
    if np.linalg.matrix_rank(design) < k:
        return OlsEffect(math.nan, math.nan, math.nan, math.nan, df, label, "design is rank deficient")
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ beta
    sigma2 = float(residual @ residual) / df
    covariance = sigma2 * np.linalg.inv(design.T @ design)
    se = float(math.sqrt(covariance[1, 1]))
    coef = float(beta[1])
    if not se > 0:
        return OlsEffect(coef, se, math.nan, math.nan, df, label, "residuals are all zero (perfect fit)")
    t_value = coef / se
    return OlsEffect(coef, se, t_value, float(2.0 * scipy_stats.t.sf(abs(t_value), df)), df, label)


def index_group_test(
    values: np.ndarray,
    is_case: np.ndarray,
    strata: Sequence,
    age: np.ndarray,
    sex: Sequence[str],
    rng: np.random.Generator,
    n_permutations: int,
    confidence: float = 0.95,
) -> dict[str, float | int | str]:
    """Compare one shape index between cases and controls.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n,)`` index per face.
    is_case : numpy.ndarray
        ``(n,)`` bool; at least two cases and two controls.
    strata : sequence
        Matching stratum per face (permutations stay within strata).
    age : numpy.ndarray
        Age in years.
    sex : sequence of str
        ``M``/``F`` (or empty: unknown); entered in the adjusted model only
        when both occur, an unknown sex as its own indicator.
    rng : numpy.random.Generator
    n_permutations : int
    confidence : float
        Level of the Welch interval.

    Returns
    -------
    dict
        ``mean_case, mean_control, diff`` (case minus control), Welch
        ``ci_low, ci_high``, ``cohens_d`` (pooled SD), ``p_perm`` (two-sided,
        ``|diff|``, within strata), ``adj_diff, adj_se, adj_p,
        adj_covariates`` (OLS on group + age [+ sex]).
    """
    values = np.asarray(values, dtype=np.float64)
    is_case = np.asarray(is_case, dtype=bool)
    cases, controls = values[is_case], values[~is_case]
    n1, n0 = cases.size, controls.size
    if n1 < 2 or n0 < 2:
        raise ValueError("index_group_test needs at least two cases and two controls")
    diff = float(cases.mean() - controls.mean())
    var1, var0 = cases.var(ddof=1), controls.var(ddof=1)
    se = math.sqrt(var1 / n1 + var0 / n0)
    if se > 0:
        df = (var1 / n1 + var0 / n0) ** 2 / ((var1 / n1) ** 2 / (n1 - 1) + (var0 / n0) ** 2 / (n0 - 1))
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    else:
        half = 0.0
    pooled = math.sqrt(((n1 - 1) * var1 + (n0 - 1) * var0) / (n1 + n0 - 2))
    exceed = sum(
        int((np.abs(block) >= abs(diff) * (1.0 - 1e-9)).sum())
        for block in permuted_contrasts(values, is_case, strata, rng, n_permutations)
    )
    sex = np.asarray(sex, dtype=str)
    covariates = {"age": np.asarray(age, dtype=np.float64)}
    levels = set(np.unique(sex))
    if set(SEXES) <= levels:
        covariates["sex"] = (sex == "M").astype(np.float64)
    if "" in levels and len(levels) > 1:
        covariates["sex_unknown"] = (sex == "").astype(np.float64)
    adjusted = ols_effect(values, is_case.astype(np.float64), covariates)
    return {
        "n_case": n1,
        "n_control": n0,
        "mean_case": float(cases.mean()),
        "mean_control": float(controls.mean()),
        "diff": diff,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "cohens_d": diff / pooled if pooled > 0 else math.nan,
        "p_perm": float(_permutation_p(exceed, n_permutations)),
        "adj_diff": adjusted.coef,
        "adj_se": adjusted.se,
        "adj_p": adjusted.p,
        "adj_covariates": adjusted.covariates,
        "note": adjusted.note,
    }


def subset_mask(table: pd.DataFrame, subset: str) -> np.ndarray:
    """Rows of ``table`` in a subset: ``all`` or one sex (``M``/``F``)."""
    if subset == "all":
        return np.ones(len(table), dtype=bool)
    return (table["sex"] == subset).to_numpy()


def subset_skip_reason(n_case: int, n_control: int, minimum: int = 2) -> str:
    """Why a subset is not tested (empty string when it is)."""
    if n_case >= minimum and n_control >= minimum:
        return ""
    return f"not tested: {n_case} case(s) and {n_control} control(s); at least {minimum} of each needed"


@dataclass
class Comparison:
    """Everything ``compare_landmarks`` writes.

    Attributes
    ----------
    landmark_tests, shape_indices, shape_tests : pandas.DataFrame
        The three tables (see the columns constants of this module).
    tests : dict of str to LandmarkTest
        The landmark test of each tested subset (for figures).
    summary : dict
        Headline numbers for ``morphometry.json``.
    warnings : list of str
    """

    landmark_tests: pd.DataFrame
    shape_indices: pd.DataFrame
    shape_tests: pd.DataFrame
    tests: dict[str, LandmarkTest]
    summary: dict
    warnings: list[str] = field(default_factory=list)


def _landmark_rows(subset: str, test: LandmarkTest, mean_size: float) -> pd.DataFrame:
    shift_norm = np.sqrt((test.shift**2).sum(axis=1))
    return pd.DataFrame(
        {
            "subset": subset,
            "landmark": np.arange(lm.N_LANDMARKS),
            "region": lm.GROUP_OF_POINT,
            "dx": test.shift[:, 0],
            "dy": test.shift[:, 1],
            "shift": shift_norm,
            "shift_px": shift_norm * mean_size,
            "p_value": test.p_values,
            "q_value": test.q_values,
            "n_case": test.n_case,
            "n_control": test.n_control,
            "note": "",
        }
    )


def _test_subset(
    subset: str,
    part: pd.DataFrame,
    landmarks: np.ndarray,
    indices: pd.DataFrame,
    shape_rows: list[dict],
    rng: np.random.Generator,
    n_permutations: int,
    confidence: float,
) -> tuple[LandmarkTest, float]:
    """Landmark shift test of one subset (returned with its mean centroid size); index rows go to ``shape_rows``."""
    is_case = (part["group"] == "case").to_numpy()
    strata = part["stratum"].astype(str).to_numpy()
    procrustes = generalized_procrustes(landmarks)
    test = landmark_shift_test(procrustes.aligned, is_case, strata, rng, n_permutations)
    for name in INDEX_NAMES:
        result = index_group_test(
            indices[name].to_numpy(),
            is_case,
            strata,
            part["age"].to_numpy(),
            part["sex"].to_numpy(),
            rng,
            n_permutations,
            confidence,
        )
        shape_rows.append({"subset": subset, "index": name, **result})
    return test, float(procrustes.centroid_sizes.mean())


def compare_groups(
    images: pd.DataFrame,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    n_permutations: int,
    fdr: float = 0.05,
    confidence: float = 0.95,
) -> Comparison:
    """Landmark and shape-index tests of cases vs controls, for all faces and each sex.

    Parameters
    ----------
    images : pandas.DataFrame
        Cohort rows (``image_id, group, age, sex, stratum``), aligned with
        ``landmarks``.
    landmarks : numpy.ndarray
        ``(n, 68, 2)`` chip landmarks.
    rng : numpy.random.Generator
    n_permutations : int
    fdr : float
        q-value below which a landmark counts as shifted (summary, warnings).
    confidence : float
        Level of the shape-index intervals.

    Returns
    -------
    Comparison
        A subset with fewer than two cases or controls gets one row in each
        test table saying so, and a warning.
    """
    images = images.reset_index(drop=True)
    if len(images) != landmarks.shape[0]:
        raise ValueError("images and landmarks must have the same rows")
    indices = shape_indices(landmarks)
    index_table = pd.concat([images[["image_id", "group", "sex", "age"]], indices], axis=1)
    landmark_parts, shape_rows, tests, warnings = [], [], {}, []
    summary: dict = {"subsets": {}}
    for subset in SUBSETS:
        mask = subset_mask(images, subset)
        part = images[mask]
        is_case = (part["group"] == "case").to_numpy()
        n_case, n_control = int(is_case.sum()), int((~is_case).sum())
        counts = {"n_case": n_case, "n_control": n_control}
        reason = subset_skip_reason(n_case, n_control)
        if reason:
            landmark_parts.append(pd.DataFrame([{"subset": subset, **counts, "note": reason}]))
            shape_rows += [
                {"subset": subset, "index": name, **counts, "note": reason} for name in INDEX_NAMES
            ]
            warnings.append(f"subset {subset}: {reason}")
            summary["subsets"][subset] = {**counts, "tested": False, "note": reason}
            continue
        test, mean_size = _test_subset(subset, part, landmarks[mask], indices[mask], shape_rows, rng,
                                       n_permutations, confidence)  # fmt: skip
        tests[subset] = test
        landmark_parts.append(_landmark_rows(subset, test, mean_size))
        significant = np.flatnonzero(test.q_values < fdr)
        summary["subsets"][subset] = {
            **counts,
            "tested": True,
            "procrustes_distance": test.distance,
            "procrustes_distance_p": test.distance_p,
            "n_landmarks_q_below_fdr": int(significant.size),
            "landmarks_q_below_fdr": significant.tolist(),
            "mean_centroid_size_px": mean_size,
        }
        if significant.size == 0:
            warnings.append(
                f"subset {subset}: no landmark shift survives FDR {fdr} "
                f"(smallest q {np.nanmin(test.q_values):.3g})"
            )
        LOGGER.info(
            "%s: %d cases, %d controls; Procrustes distance %.4g (p %.3g); %d landmark(s) q < %g",
            subset, n_case, n_control, test.distance, test.distance_p, significant.size, fdr,
        )  # fmt: skip
    landmark_tests = pd.concat(landmark_parts, ignore_index=True).reindex(columns=LANDMARK_TEST_COLUMNS)
    landmark_tests["landmark"] = landmark_tests["landmark"].astype("Int64")
    landmark_tests["note"] = landmark_tests["note"].fillna("")
    landmark_tests["region"] = landmark_tests["region"].fillna("")
    shape_tests = pd.DataFrame(shape_rows).reindex(columns=SHAPE_TEST_COLUMNS)
    shape_tests[["note", "adj_covariates"]] = shape_tests[["note", "adj_covariates"]].fillna("")
    summary["shape_indices"] = {
        f"{row['subset']}:{row['index']}": {
            key: row[key] for key in ("diff", "ci_low", "ci_high", "cohens_d", "p_perm", "adj_diff", "adj_p")
        }
        for row in shape_tests.to_dict("records")
        if not row["note"].startswith("not tested")
    }
    summary["fdr"] = fdr
    return Comparison(landmark_tests, index_table, shape_tests, tests, summary, warnings)


def group_counts(images: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Faces per group and sex: ``{"case": {"M": 3, "F": 4, "all": 7}, ...}``."""
    counts = {}
    for group in GROUPS:
        part = images[images["group"] == group]
        counts[group] = {sex: int((part["sex"] == sex).sum()) for sex in SEXES}
        counts[group]["all"] = int(len(part))
    return counts
