"""The planted-effect power analysis: which faces, and what each strength's study found.

The ``power`` target (issue 13) asks how large a real difference in face shape
must be for a study of this size to detect it. It draws ``n`` faces from a
sheet (by default the study's eligible pool rows), gives half of them, at
random, the role of "cases", widens the cases' lower faces by each strength
of :mod:`phenoface.planted`, and runs the study's own preprocessing, features,
split, training and evaluation on each strength. This module holds the pure
parts around those stages: the seeded draw (:func:`draw_power_sample`), the
cohort of each strength (:func:`power_cohort`), and the tables made from the
stages' outputs (:func:`power_row`, :func:`detection_summary`,
:func:`region_share_rows`, :func:`landmark_rows`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .cohort import COHORT_COLUMNS, SEXES
from .errors import PhenofaceError
from .sampling import stratum_labels

LOGGER = logging.getLogger(__name__)

#: Facial-adiposity indices reported per strength (see :func:`phenoface.shape.shape_indices`).
INDICES = ("fwhr", "cjwr", "par")
POWER_COLUMNS = [
    "strength", "repeat", "auc", "auc_ci_low", "auc_ci_high", "accuracy", "n_train", "n_test",
    "n_case_ok", "n_control_ok",
] + [f"{name}_{part}" for name in INDICES for part in ("diff", "p")]  # fmt: skip
#: Landmark groups summarised per strength (0-based iBUG indices).
LANDMARK_GROUPS = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}
SAMPLE_COLUMNS = ["image_id", "path", "group", "age", "sex", "subject_id", "stratum"]


def strength_label(strength: float) -> str:
    """The strength as it appears in paths and tables (``0``, ``0.04``, ``0.24``)."""
    return f"{float(strength):g}"


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of repeat ``repeat`` (0, 1, ...), derived from the study seed."""
    return int(np.random.SeedSequence([int(seed), int(repeat)]).generate_state(1)[0])


def draw_power_sample(
    sheet: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    age_bins: Sequence[int],
    match_on: Sequence[str],
) -> pd.DataFrame:
    """Draw ``n`` faces and assign half of them, at random, to the case group.

    Parameters
    ----------
    sheet : pandas.DataFrame
        A read sample sheet (``image_id``, ``path``, ``age``, ``sex``, optional
        ``subject_id``). Rows the study could not stratify (no sex while sex
        is matched, age below the first bin) or without a sex are left out.
    n : int
        Faces to draw (``n // 2`` cases, the rest controls).
    rng : numpy.random.Generator
        The draw's generator; the result depends only on it and on the set of
        rows (not on their order).
    age_bins, match_on
        The study's matching design (strata are carried for the landmark
        tests' within-stratum permutations).

    Returns
    -------
    pandas.DataFrame
        :data:`SAMPLE_COLUMNS`, sorted by ``image_id``.

    Raises
    ------
    PhenofaceError
        When fewer than ``n`` rows are eligible or ``n`` is below 4.
    """
    if n < 4:
        raise PhenofaceError(f"power.n is {n}; a power study needs at least 4 faces (2 per group)")
    table = sheet.copy()
    table["stratum"] = stratum_labels(table, age_bins, match_on)
    has_sex = table["sex"].fillna("").astype(str).isin(SEXES)
    eligible = table[(table["stratum"] != "") & has_sex].sort_values("image_id", kind="stable")
    if len(eligible) < n:
        raise PhenofaceError(
            f"power.n is {n} but the power sheet has only {len(eligible)} eligible rows (with a sex and an age "
            "in the study's age bins); lower power.n or give a larger power.sheet"
        )
    drawn = eligible.iloc[np.sort(rng.choice(len(eligible), size=n, replace=False))].copy()
    groups = np.array(["case"] * (n // 2) + ["control"] * (n - n // 2))
    drawn["group"] = groups[rng.permutation(n)]
    if "subject_id" not in drawn.columns:
        drawn["subject_id"] = ""
    drawn["subject_id"] = drawn["subject_id"].fillna("").astype(str)
    return drawn[SAMPLE_COLUMNS].reset_index(drop=True)


def power_cohort(sample: pd.DataFrame, qc: pd.DataFrame) -> pd.DataFrame:
    """The cohort of one strength: drawn faces whose warped photo passed QC.

    Parameters
    ----------
    sample : pandas.DataFrame
        :func:`draw_power_sample` rows (or a subset).
    qc : pandas.DataFrame
        QC rows of the warped photos (``image_id``, ``status``); every drawn
        face must have exactly one.

    Returns
    -------
    pandas.DataFrame
        The cohort table the study's stages read
        (:data:`phenoface.sampling.COHORT_COLUMNS`).
    """
    status = qc.drop_duplicates("image_id", keep=False).set_index("image_id")["status"]
    missing = sorted(set(sample["image_id"]) - set(status.index))
    if missing:
        raise PhenofaceError(
            f"power study: {len(missing)} drawn faces have no single QC row (e.g. {missing[0]})"
        )
    ok = sample[sample["image_id"].map(status).eq("ok").to_numpy()]
    return ok[COHORT_COLUMNS].reset_index(drop=True)


def power_row(
    strength: float,
    repeat: int,
    metrics: Mapping[str, Any],
    shape_tests: pd.DataFrame,
    cohort: pd.DataFrame,
) -> dict[str, Any]:
    """One row of ``power.csv`` from a strength's metrics.json and shape tests (all faces)."""
    row: dict[str, Any] = {"strength": float(strength), "repeat": int(repeat)}
    for key in ("auc", "auc_ci_low", "auc_ci_high", "accuracy"):
        row[key] = float(metrics[key])
    row["n_train"], row["n_test"] = int(metrics["n_train"]), int(metrics["n_test"])
    row["n_case_ok"] = int((cohort["group"] == "case").sum())
    row["n_control_ok"] = int((cohort["group"] == "control").sum())
    tests = shape_tests[shape_tests["subset"].astype(str) == "all"].set_index("index")
    for name in INDICES:
        tested = name in tests.index
        row[f"{name}_diff"] = float(tests.loc[name, "diff"]) if tested else np.nan
        row[f"{name}_p"] = float(tests.loc[name, "p_perm"]) if tested else np.nan
    return row


def power_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``power.csv``: one row per strength and repeat, sorted."""
    table = pd.DataFrame(list(rows), columns=POWER_COLUMNS)
    return table.sort_values(["strength", "repeat"], kind="stable").reset_index(drop=True)


def detection_summary(table: pd.DataFrame, min_rate: float = 0.5) -> dict[str, Any]:
    """Which strengths the study detects, and the smallest one.

    A repeat detects a strength when its AUC interval lies wholly above 0.5;
    the detection rate of a strength is the share of repeats that detect it
    (the study's power at that strength). The threshold is the smallest
    strength above 0 whose rate reaches ``min_rate`` (with one repeat: the
    smallest strength whose interval excludes 0.5).

    Returns
    -------
    dict
        ``threshold`` (float or None when no strength is detected),
        ``min_rate``, ``by_strength`` (strength, repeats, detection rate, mean
        AUC, mean interval) and ``warnings`` (strength 0 detected: something
        besides the planted shape separates the groups; a detected strength
        followed by an undetected larger one: the study is near its limit).
    """
    by_strength = []
    for strength, part in table.groupby("strength", sort=True):
        detected = part["auc_ci_low"].to_numpy(float) > 0.5
        by_strength.append(
            {
                "strength": float(strength),
                "repeats": int(len(part)),
                "detection_rate": float(detected.mean()),
                "auc_mean": float(part["auc"].mean()),
                "auc_ci_low_mean": float(part["auc_ci_low"].mean()),
                "auc_ci_high_mean": float(part["auc_ci_high"].mean()),
            }
        )
    detected = [
        row["strength"] for row in by_strength if row["strength"] > 0 and row["detection_rate"] >= min_rate
    ]
    warnings = []
    null = [row for row in by_strength if row["strength"] == 0 and row["detection_rate"] > 0]
    if null:
        warnings.append(
            f"at strength 0 the AUC interval excludes 0.5 in {null[0]['detection_rate']:.0%} of repeats: "
            "something other than the planted shape separates the groups"
        )
    if detected:
        undetected_above = [
            row["strength"]
            for row in by_strength
            if row["strength"] > detected[0] and row["strength"] not in detected
        ]
        if undetected_above:
            warnings.append(
                f"strength {strength_label(detected[0])} is detected but {strength_label(undetected_above[0])} "
                "is not: detection is unstable near the threshold; add power.repeats"
            )
    return {
        "threshold": detected[0] if detected else None,
        "min_rate": float(min_rate),
        "by_strength": by_strength,
        "warnings": warnings,
    }


def region_share_rows(strength: float, repeat: int, region_tests: pd.DataFrame) -> pd.DataFrame:
    """A strength's Grad-CAM region tests, tagged with its strength and repeat."""
    columns = [
        "comparison",
        "map",
        "region",
        "share_case",
        "share_control",
        "difference",
        "p_value",
        "q_value",
    ]
    out = region_tests[columns].copy()
    out.insert(0, "repeat", int(repeat))
    out.insert(0, "strength", float(strength))
    return out


def landmark_rows(
    strength: float, repeat: int, landmark_tests: pd.DataFrame, summary: Mapping[str, Any], fdr: float = 0.05
) -> pd.DataFrame:
    """Per landmark group: how many landmarks shift at q < ``fdr`` and their mean shift (all faces).

    The shift is in chip pixels (``shift_px``, case mean minus control mean
    after Procrustes superimposition); the global Procrustes-distance p-value
    is repeated on every row.
    """
    tests = landmark_tests[
        (landmark_tests["subset"].astype(str) == "all") & landmark_tests["landmark"].notna()
    ]
    tests = tests[tests["landmark"].astype(str) != ""]
    landmark = tests["landmark"].astype(int).to_numpy()
    q_values = pd.to_numeric(tests["q_value"], errors="coerce").to_numpy()
    shifts = pd.to_numeric(tests["shift_px"], errors="coerce").to_numpy()
    overall = summary.get("subsets", {}).get("all", {})
    rows = []
    for group, indices in LANDMARK_GROUPS.items():
        inside = np.isin(landmark, list(indices))
        rows.append(
            {
                "strength": float(strength),
                "repeat": int(repeat),
                "landmarks": group,
                "n_landmarks": int(inside.sum()),
                "n_q_below": int((q_values[inside] < fdr).sum()),
                "mean_shift_px": float(np.nanmean(shifts[inside])) if inside.any() else np.nan,
                "procrustes_distance_p": float(overall.get("procrustes_distance_p", np.nan)),
            }
        )
    return pd.DataFrame(rows)
