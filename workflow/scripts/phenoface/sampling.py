"""Age/sex-matched control sampling: strata, candidate rounds and the seeded draw.

The design (one straight line, all seeded):

1. Every case and pool row gets a *stratum*: sex x age bin by default
   (``F|40-49``, ``M|70+``), or age bin only (``40-49``) when matching on
   age alone. Age bins are given by their left edges; the last bin is
   open-ended. Pool rows that cannot be placed (no sex while sex is
   matched, age below the first edge) are *ineligible* and counted.
2. :func:`rank_pool` gives every eligible pool row a seeded rank within its
   stratum: a random permutation drawn from ``make_rng(seed)`` over the rows
   sorted by ``image_id``, so reordering the sheet does not change it.
3. The pool is large, so only candidates are preprocessed.
   :func:`plan_candidates` proposes them in rounds: per stratum, the next
   ``ceil(short * oversample)`` untried ranks, where ``short`` is the number
   of controls still missing (``needed`` minus controls that passed QC so
   far). Round 1 is the same rule with nothing tried yet. An empty plan
   means nothing is short (or nothing is left to try): rounds stop.
4. :func:`draw_controls` walks each stratum in rank order, skips rows that
   did not pass QC and takes the first ``needed`` that did. Because the
   ranks are a uniform random permutation, this is a seeded uniform draw
   without replacement among the QC-passing rows.

``needed`` for a stratum is ``ratio`` times its number of QC-passing cases.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .cohort import COHORT_COLUMNS, SEXES
from .errors import PhenofaceError
from .qc import NOT_NEEDED, OK, STATUSES
from .runtime import make_rng

LOGGER = logging.getLogger(__name__)

MATCH_VARIABLES = ("age", "sex")
SHORTFALL_COLUMNS = [
    "stratum",
    "cases",
    "needed",
    "pool_available",
    "pool_tried",
    "pool_ok",
    "drawn",
    "short",
]
#: Reasons a pool row cannot be matched.
INELIGIBLE_REASONS = {
    "no_sex": "no sex recorded",
    "age_below_bins": "age below the first age bin",
}


# ----------------------------------------------------------------------------
# strata
# ----------------------------------------------------------------------------


def check_design(age_bins: Sequence[int], match_on: Sequence[str]) -> tuple[list[int], list[str]]:
    """Validate the matching design and return it as plain lists.

    Parameters
    ----------
    age_bins : sequence of int
        Left edges of the age bins, strictly increasing, >= 0.
    match_on : sequence of str
        Subset of ``("age", "sex")``, not empty.

    Returns
    -------
    (list of int, list of str)
        The edges and the matched variables in canonical order (sex, age).
    """
    edges = [int(edge) for edge in age_bins]
    if not edges or any(edge < 0 for edge in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise PhenofaceError(
            f"config sampling.age_bins = {list(age_bins)}: give a non-empty list of strictly "
            "increasing left edges >= 0, e.g. [0, 10, 20, 30, 40, 50, 60, 70]."
        )
    unknown = [name for name in match_on if name not in MATCH_VARIABLES]
    if unknown or not match_on:
        raise PhenofaceError(
            f"config sampling.match_on = {list(match_on)}: use [age, sex] or [age] (or [sex])."
        )
    variables = [name for name in ("sex", "age") if name in match_on]
    return edges, variables


def age_bin_labels(age_bins: Sequence[int]) -> list[str]:
    """Labels of the age bins: ``0-9``, ..., ``60-69``, ``70+``."""
    edges = [int(edge) for edge in age_bins]
    labels = [f"{left}-{right - 1}" for left, right in zip(edges, edges[1:])]
    return labels + [f"{edges[-1]}+"]


def age_bin_index(ages: Iterable[int], age_bins: Sequence[int]) -> np.ndarray:
    """Index of the bin each age falls in; -1 for ages below the first edge."""
    edges = np.asarray([int(edge) for edge in age_bins])
    return np.searchsorted(edges, np.asarray(list(ages), dtype=float), side="right") - 1


def label_ages(ages: Iterable[float], age_bins: Sequence[int]) -> np.ndarray:
    """Bin label of each age (``0-9`` ... ``70+``); ``<0``-style below the bins, ``NA`` if unknown.

    The one place ages are put into bins, shared by sampling, the split and
    the subgroup metrics so their labels always agree.
    """
    edges = sorted(int(edge) for edge in age_bins)
    values = pd.to_numeric(pd.Series(list(ages), dtype=object), errors="coerce").to_numpy(dtype=float)
    names = np.array(age_bin_labels(edges), dtype=object)
    index = np.searchsorted(np.asarray(edges), values, side="right") - 1
    labels = np.full(values.size, "NA", dtype=object)
    finite = np.isfinite(values)
    labels[finite & (index < 0)] = f"<{edges[0]}"
    inside = finite & (index >= 0)
    labels[inside] = names[index[inside]]
    return labels


def strata_catalogue(
    age_bins: Sequence[int], match_on: Sequence[str], age_only_bins: Sequence[str] = ()
) -> list[str]:
    """Every stratum label of a design, in display order (sex, then age).

    This is the order used for tables, candidate lists and the cohort. Age
    bins named in ``age_only_bins`` (labels such as ``0-9``) are matched on
    age alone even when sex is matched; their labels come last.
    """
    edges, variables = check_design(age_bins, match_on)
    sexes = list(SEXES) if "sex" in variables else [""]
    ages = age_bin_labels(edges) if "age" in variables else [""]
    age_only = [age for age in ages if age in set(age_only_bins)] if "sex" in variables else []
    sexed = [age for age in ages if age not in age_only]
    return ["|".join(part for part in (sex, age) if part) for sex in sexes for age in sexed] + age_only


def stratum_labels(
    table: pd.DataFrame,
    age_bins: Sequence[int],
    match_on: Sequence[str],
    age_only_bins: Sequence[str] = (),
) -> pd.Series:
    """Stratum label of each row; empty string where the row cannot be placed.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows with ``age`` (int) and ``sex`` (``M``/``F``/empty).
    age_bins, match_on
        See :func:`check_design`.
    age_only_bins : sequence of str
        Age-bin labels matched on age alone (the sex part is dropped there).

    Returns
    -------
    pandas.Series of str
        ``F|40-49``, ``M|70+`` (sex and age), ``40-49`` (age only) or ``F``
        (sex only); ``""`` for a missing sex while sex is matched or an age
        below the first bin edge. Same index as ``table``.
    """
    edges, variables = check_design(age_bins, match_on)
    labels = np.array(age_bin_labels(edges) + [""], dtype=object)
    index = age_bin_index(table["age"].astype(int), edges)
    age_part = labels[np.where(index < 0, len(edges), index)]
    sex = table["sex"].fillna("").astype(str).to_numpy(dtype=object)
    out = []
    for sex_value, age_value in zip(sex, age_part):
        parts = []
        if "sex" in variables and age_value not in age_only_bins:
            parts.append(sex_value)
        if "age" in variables:
            parts.append(age_value)
        out.append("" if any(part == "" for part in parts) else "|".join(parts))
    return pd.Series(out, index=table.index, dtype=object, name="stratum")


# ----------------------------------------------------------------------------
# QC statuses
# ----------------------------------------------------------------------------


def attach_status(table: pd.DataFrame, qc: pd.DataFrame, sheet_kind: str) -> pd.DataFrame:
    """Return ``table`` with a ``status`` column taken from the QC rows.

    Parameters
    ----------
    table : pandas.DataFrame
        One sheet (``image_id`` column).
    qc : pandas.DataFrame
        QC rows with ``image_id``, ``sheet`` and ``status``.
    sheet_kind : {"cases", "pool"}
        Which sheet ``table`` is. A case without a QC row is an error (every
        image must end in one status row); a pool row without one was never
        preprocessed and gets ``not_needed``.
    """
    rows = qc.loc[qc["sheet"].astype(str) == sheet_kind, ["image_id", "status"]]
    duplicated = rows["image_id"].duplicated(keep=False)
    if duplicated.any():
        image_id = rows.loc[duplicated, "image_id"].iloc[0]
        n_rows = int((rows["image_id"] == image_id).sum())
        raise PhenofaceError(
            f"QC table: image {image_id} of the {sheet_kind} sheet has {n_rows} "
            "status rows; each image must have exactly one. Re-run preprocessing (delete results/qc)."
        )
    unknown = sorted(set(rows["status"]) - set(STATUSES))
    if unknown:
        raise PhenofaceError(
            f"QC table: unknown status(es) {', '.join(map(repr, unknown))} for the {sheet_kind} sheet; "
            f"expected one of {', '.join(STATUSES)}. Re-run preprocessing with this phenoface version."
        )
    status = table["image_id"].map(rows.set_index("image_id")["status"])
    missing = status.isna()
    if missing.any():
        if sheet_kind == "cases":
            first = table.loc[missing].iloc[0]
            raise PhenofaceError(
                f"QC table: {int(missing.sum())} case row(s) have no status, e.g. cases sheet row "
                f"{first.get('row', '?')} ({first['image_id']}). Every case must be preprocessed; "
                "re-run the workflow so results/qc is rebuilt from the current sheet."
            )
        LOGGER.info("%d pool row(s) without a QC row: counted as %s", int(missing.sum()), NOT_NEEDED)
        status = status.fillna(NOT_NEEDED)
    out = table.copy()
    out["status"] = status.astype(str)
    return out


# ----------------------------------------------------------------------------
# ranking, needs, candidate rounds
# ----------------------------------------------------------------------------


def rank_pool(
    pool: pd.DataFrame,
    age_bins: Sequence[int],
    match_on: Sequence[str],
    seed: int,
    age_only_bins: Sequence[str] = (),
) -> pd.DataFrame:
    """Stratify the pool and give every eligible row a seeded rank.

    Parameters
    ----------
    pool : pandas.DataFrame
        The reference-pool sheet (``image_id``, ``age``, ``sex``, ...).
    age_bins, match_on
        See :func:`check_design`.
    seed : int
        Seed of the permutation.
    age_only_bins : sequence of str
        Age-bin labels matched on age alone: rows there need no sex.

    Returns
    -------
    pandas.DataFrame
        ``pool`` (same rows and order) plus ``stratum`` (``""`` if
        ineligible), ``eligible`` (bool), ``reason`` (``""``, ``no_sex`` or
        ``age_below_bins``) and ``rank`` (1, 2, ... within the stratum in
        draw order; 0 for ineligible rows). The ranks depend only on the set
        of rows and the seed, not on the order of the sheet.
    """
    edges, variables = check_design(age_bins, match_on)
    if pool["image_id"].duplicated().any():
        image_id = pool.loc[pool["image_id"].duplicated(), "image_id"].iloc[0]
        raise PhenofaceError(f"reference pool: image id {image_id} occurs twice; keep one row per image.")
    out = pool.copy()
    out["stratum"] = stratum_labels(out, edges, variables, age_only_bins)
    sex_needed = ~pd.Series(label_ages(out["age"], edges), index=out.index).isin(list(age_only_bins))
    no_sex = (
        out["sex"].fillna("").astype(str).eq("") & sex_needed
        if "sex" in variables
        else pd.Series(False, index=out.index)
    )
    too_young = pd.Series(age_bin_index(out["age"].astype(int), edges) < 0, index=out.index)
    if "age" not in variables:
        too_young[:] = False
    out["reason"] = np.where(no_sex, "no_sex", np.where(too_young, "age_below_bins", ""))
    out["eligible"] = out["reason"].eq("")

    eligible = out.loc[out["eligible"], ["image_id", "stratum"]].sort_values("image_id", kind="stable")
    key = make_rng(seed).permutation(len(eligible))
    eligible = eligible.assign(_key=key).sort_values(["stratum", "_key"], kind="stable")
    eligible["rank"] = eligible.groupby("stratum", sort=False).cumcount() + 1
    out["rank"] = 0
    out.loc[eligible.index, "rank"] = eligible["rank"]
    out["rank"] = out["rank"].astype(int)
    LOGGER.info(
        "pool: %d rows, %d eligible, %d without sex, %d below the first age bin",
        len(out),
        int(out["eligible"].sum()),
        int(no_sex.sum()),
        int((too_young & ~no_sex).sum()),
    )
    return out


def needed_per_stratum(
    cases_ok: pd.DataFrame,
    age_bins: Sequence[int],
    match_on: Sequence[str],
    ratio: int = 1,
    age_only_bins: Sequence[str] = (),
) -> pd.Series:
    """Controls needed per stratum: ``ratio`` times the QC-passing cases there.

    Parameters
    ----------
    cases_ok : pandas.DataFrame
        The cases that passed QC (``age``, ``sex``).
    age_bins, match_on
        See :func:`check_design`.
    ratio : int
        Controls per case (k of k:1).
    age_only_bins : sequence of str
        Age-bin labels matched on age alone.

    Returns
    -------
    pandas.Series of int
        Index = stratum labels that hold at least one case, in catalogue
        order; name ``needed``.
    """
    edges, variables = check_design(age_bins, match_on)
    if int(ratio) < 1:
        raise PhenofaceError(f"config sampling.ratio = {ratio}: give an integer >= 1 (controls per case).")
    labels = stratum_labels(cases_ok, edges, variables, age_only_bins)
    unplaced = labels.eq("")
    if unplaced.any():
        first = cases_ok.loc[unplaced].iloc[0]
        raise PhenofaceError(
            f"cases sheet row {first.get('row', '?')} (age {first['age']}, sex {first['sex']!r}) falls in no "
            f"stratum of sampling.age_bins {edges}: start the bins at 0 "
            "(or at most at the youngest case's age)."
        )
    counts = labels.value_counts()
    order = [label for label in strata_catalogue(edges, variables, age_only_bins) if label in counts.index]
    needed = (counts.reindex(order) * int(ratio)).astype(int)
    needed.index.name = "stratum"
    return needed.rename("needed")


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (``1.1 * 10`` is 11, not 12)."""
    return int(math.ceil(round(value, 9)))


def plan_candidates(
    ranked_pool: pd.DataFrame,
    needed: pd.Series,
    tried_status: pd.DataFrame | None = None,
    oversample: float = 1.5,
) -> pd.DataFrame:
    """Pool rows to preprocess in the next candidate round.

    Parameters
    ----------
    ranked_pool : pandas.DataFrame
        Output of :func:`rank_pool`.
    needed : pandas.Series
        Output of :func:`needed_per_stratum`.
    tried_status : pandas.DataFrame, optional
        ``image_id`` and ``status`` of the pool candidates preprocessed so
        far (any number of earlier rounds). Rows with status ``not_needed``
        and image ids not in the pool are ignored. ``None`` or empty for
        round 1.
    oversample : float
        Candidates taken per control still missing (>= 1), to absorb QC
        losses without another round.

    Returns
    -------
    pandas.DataFrame
        The new candidate rows of ``ranked_pool`` (all its columns), ordered
        by stratum (catalogue order) then rank; empty (same columns) when no
        stratum is short or no short stratum has untried rows left.
    """
    if oversample < 1:
        raise PhenofaceError(f"config sampling.oversample = {oversample}: give a number >= 1.")
    status = pd.Series(dtype=object)
    if tried_status is not None and len(tried_status):
        tried = tried_status.loc[tried_status["status"].astype(str) != NOT_NEEDED]
        status = tried.drop_duplicates("image_id", keep="last").set_index("image_id")["status"].astype(str)
    pool = ranked_pool.loc[ranked_pool["eligible"]]
    pool_status = pool["image_id"].map(status)
    picks = []
    for stratum, n_needed in needed.items():
        in_stratum = pool["stratum"] == stratum
        n_ok = int((pool_status[in_stratum] == OK).sum())
        short = int(n_needed) - n_ok
        untried = pool.loc[in_stratum & pool_status.isna()].sort_values("rank")
        if short <= 0 or untried.empty:
            continue
        take = untried.head(_ceil(short * oversample))
        LOGGER.info(
            "stratum %s: needed %d, ok so far %d, short %d -> %d new candidate(s) (%d untried left)",
            stratum,
            int(n_needed),
            n_ok,
            short,
            len(take),
            len(untried) - len(take),
        )
        picks.append(take)
    if not picks:
        return ranked_pool.iloc[0:0].copy()
    return pd.concat(picks)


# ----------------------------------------------------------------------------
# the draw
# ----------------------------------------------------------------------------


def _shortfall_message(shortfall: pd.DataFrame, ratio: int) -> str:
    """Error text naming each short stratum and the ways out."""
    lines = [
        f"too few controls in {len(shortfall)} stratum/strata for {ratio}:1 matching "
        "(needed = controls required, available = eligible pool rows, after QC = pool rows that passed QC):"
    ]
    for row in shortfall.itertuples(index=False):
        untried = row.pool_available - row.pool_tried
        extra = f"; {untried} pool row(s) never preprocessed" if untried > 0 else ""
        lines.append(
            f"  stratum {row.stratum}: needed {row.needed} for {row.cases} case(s), available in pool "
            f"{row.pool_available}, left after QC {row.pool_ok}, short by {row.short}{extra}"
        )
    lines.append(
        "Ways out: set sampling.allow_shortfall: true to draw what exists and report the imbalance; "
        "use coarser sampling.age_bins or sampling.match_on: [age]; add images to the reference pool; "
        "lower sampling.ratio"
        + (
            "; or raise sampling.max_rounds / sampling.oversample"
            if (shortfall["pool_available"] > shortfall["pool_tried"]).any()
            else ""
        )
        + "."
    )
    return "\n".join(lines)


def draw_controls(
    cases: pd.DataFrame,
    ranked_pool: pd.DataFrame,
    qc: pd.DataFrame,
    age_bins: Sequence[int],
    match_on: Sequence[str],
    ratio: int = 1,
    allow_shortfall: bool = False,
    age_only_bins: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the matched controls and assemble the cohort.

    Parameters
    ----------
    cases : pandas.DataFrame
        The cases sheet (``image_id``, ``row``, ``age``, ``sex``, ``subject_id``).
    ranked_pool : pandas.DataFrame
        Output of :func:`rank_pool` (same ``age_bins``/``match_on``).
    qc : pandas.DataFrame
        QC rows of both sheets (``image_id``, ``sheet``, ``status``).
    age_bins, match_on
        See :func:`check_design`.
    ratio : int
        Controls per case.
    allow_shortfall : bool
        False: raise :class:`PhenofaceError` if any stratum is short. True:
        draw what exists, log a warning and report it.
    age_only_bins : sequence of str
        Age-bin labels matched on age alone (as given to :func:`rank_pool`).

    Returns
    -------
    cohort : pandas.DataFrame
        Columns :data:`COHORT_COLUMNS`; QC-passing cases in sheet-row order,
        then controls by stratum (catalogue order) and rank.
    shortfall : pandas.DataFrame
        Columns :data:`SHORTFALL_COLUMNS`, one row per short stratum (empty
        when every stratum got its controls).
    """
    edges, variables = check_design(age_bins, match_on)
    cases_status = attach_status(cases, qc, "cases")
    cases_ok = cases_status.loc[cases_status["status"] == OK].copy()
    if cases_ok.empty:
        raise PhenofaceError(
            f"none of the {len(cases)} cases passed QC (see results/qc/preprocess.tsv): nothing to match. "
            "Check the case images and the preprocess settings."
        )
    needed = needed_per_stratum(cases_ok, edges, variables, ratio, age_only_bins)
    cases_ok["stratum"] = stratum_labels(cases_ok, edges, variables, age_only_bins)
    pool = attach_status(ranked_pool, qc, "pool")
    eligible = pool.loc[pool["eligible"]]

    drawn_parts = []
    short_rows = []
    for stratum, n_needed in needed.items():
        in_stratum = eligible.loc[eligible["stratum"] == stratum]
        ok_rows = in_stratum.loc[in_stratum["status"] == OK].sort_values("rank")
        take = ok_rows.head(int(n_needed))
        drawn_parts.append(take)
        if len(take) < n_needed:
            short_rows.append(
                {
                    "stratum": stratum,
                    "cases": int(n_needed) // int(ratio),
                    "needed": int(n_needed),
                    "pool_available": len(in_stratum),
                    "pool_tried": int((in_stratum["status"] != NOT_NEEDED).sum()),
                    "pool_ok": len(ok_rows),
                    "drawn": len(take),
                    "short": int(n_needed) - len(take),
                }
            )
    shortfall = pd.DataFrame(short_rows, columns=SHORTFALL_COLUMNS)
    if len(shortfall):
        message = _shortfall_message(shortfall, int(ratio))
        if not allow_shortfall:
            raise PhenofaceError(message)
        LOGGER.warning("allow_shortfall is set, drawing what exists: %s", message)

    case_part = cases_ok.sort_values("row" if "row" in cases_ok.columns else "image_id", kind="stable")
    case_part = case_part.assign(group="case")
    controls = pd.concat(drawn_parts) if drawn_parts else eligible.iloc[0:0]
    controls = controls.assign(group="control")
    cohort = pd.concat([case_part[COHORT_COLUMNS], controls[COHORT_COLUMNS]], ignore_index=True)
    cohort["age"] = cohort["age"].astype(int)
    cohort["subject_id"] = cohort["subject_id"].fillna("").astype(str)
    LOGGER.info(
        "cohort: %d cases, %d controls (%d:1) in %d strata; %d short stratum/strata",
        len(case_part),
        len(controls),
        int(ratio),
        len(needed),
        len(shortfall),
    )
    return cohort, shortfall
