"""The cohort's tables: Table 1 (age/sex by group), covariate balance and the CONSORT flow counts.

Descriptions of a drawn cohort (see :mod:`phenoface.sampling` for the draw);
the flow accounts for every sheet row exactly once (:func:`check_flow`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .cohort import SEXES
from .qc import FAILED_STATUSES, NOT_NEEDED, OK
from .sampling import INELIGIBLE_REASONS, age_bin_index, age_bin_labels, attach_status, check_design

LOGGER = logging.getLogger(__name__)

SEX_NAMES = {"M": "Male", "F": "Female"}
FLOW_COLUMNS = ["sheet", "node", "label", "parent", "main", "n"]


# ----------------------------------------------------------------------------
# Table 1 and balance
# ----------------------------------------------------------------------------


def table1(cohort: pd.DataFrame, age_bins: Sequence[int]) -> pd.DataFrame:
    """Age distribution by group and sex, like the paper's Table 1.

    Parameters
    ----------
    cohort : pandas.DataFrame
        Output of :func:`draw_controls`.
    age_bins : sequence of int
        Left edges of the age bins (last open-ended).

    Returns
    -------
    pandas.DataFrame
        One row per age bin plus a ``Total`` row; column ``age_bin``, then
        for each group (case, control) and sex (M, F, and ``unknown`` only
        when some sex is empty) the columns ``{group} {sex} n`` (int) and
        ``{group} {sex} %`` (percent of that group-and-sex column, as in the
        paper: the bins of one column add up to 100).
    """
    edges, _ = check_design(age_bins, ["age"])
    labels = age_bin_labels(edges)
    index = age_bin_index(cohort["age"].astype(int), edges)
    bin_label = pd.Series(
        np.where(index < 0, f"<{edges[0]}", np.array(labels, dtype=object)[np.maximum(index, 0)]),
        index=cohort.index,
    )
    if (index < 0).any():
        labels = [f"<{edges[0]}"] + labels
    sex = cohort["sex"].fillna("").astype(str).replace("", "unknown")
    sexes = list(SEXES) + (["unknown"] if sex.eq("unknown").any() else [])
    out = pd.DataFrame({"age_bin": labels + ["Total"]})
    for group in ("case", "control"):
        for sex_value in sexes:
            mask = (cohort["group"] == group) & (sex == sex_value)
            counts = bin_label[mask].value_counts().reindex(labels, fill_value=0).astype(int)
            total = int(counts.sum())
            percent = (100.0 * counts / total) if total else counts * 0.0
            out[f"{group} {sex_value} n"] = list(counts) + [total]
            out[f"{group} {sex_value} %"] = [round(float(p), 2) for p in percent] + [100.0 if total else 0.0]
    return out


def format_table1(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with ``n (%)`` strings, one column per group and sex, for display."""
    out = pd.DataFrame({"Age": table["age_bin"]})
    for column in table.columns:
        if column.endswith(" n"):
            stem = column[: -len(" n")]
            group, sex_value = stem.split(" ", 1)
            group_name = "Cases" if group == "case" else "Controls"
            sex_name = SEX_NAMES.get(sex_value, sex_value.capitalize())
            name = f"{group_name}\n{sex_name}, n (%)"
            out[name] = [f"{int(n)} ({p:.2f})" for n, p in zip(table[column], table[f"{stem} %"])]
    return out


def _smd(first: np.ndarray, second: np.ndarray) -> float:
    """Standardized mean difference with the pooled (average-variance) SD."""
    if len(first) < 2 or len(second) < 2:
        return float("nan")
    difference = float(np.mean(first) - np.mean(second))
    spread = math.sqrt((np.var(first, ddof=1) + np.var(second, ddof=1)) / 2.0)
    if spread == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / spread


def balance(cohort: pd.DataFrame) -> pd.DataFrame:
    """Balance of cases vs controls after matching.

    Parameters
    ----------
    cohort : pandas.DataFrame
        Output of :func:`draw_controls`.

    Returns
    -------
    pandas.DataFrame
        Columns ``measure, value, p_value, note``; rows ``n_cases``,
        ``n_controls``, ``smd_age`` (cases minus controls over the pooled
        SD), ``smd_sex_female`` (difference of the proportions female over
        the pooled binomial SD, rows with a known sex only) and
        ``chi2_group_by_stratum`` (Pearson chi-square of the group x stratum
        table, :func:`scipy.stats.chi2_contingency`). |SMD| < 0.1 is the
        usual threshold for good balance.
    """
    is_case = cohort["group"] == "case"
    is_control = cohort["group"] == "control"
    rows = [
        {"measure": "n_cases", "value": float(is_case.sum()), "p_value": np.nan, "note": ""},
        {"measure": "n_controls", "value": float(is_control.sum()), "p_value": np.nan, "note": ""},
    ]
    ages = cohort["age"].astype(float)
    smd_age = _smd(ages[is_case].to_numpy(), ages[is_control].to_numpy())
    rows.append(
        {
            "measure": "smd_age",
            "value": smd_age,
            "p_value": np.nan,
            "note": (
                ""
                if math.isnan(smd_age)
                else ("balanced (|SMD| < 0.1)" if abs(smd_age) < 0.1 else "imbalanced (|SMD| >= 0.1)")
            ),
        }
    )

    sex = cohort["sex"].fillna("").astype(str)
    known = sex.isin(SEXES)
    female = sex.eq("F").astype(float)
    case_f, control_f = female[is_case & known], female[is_control & known]
    if len(case_f) and len(control_f):
        p1, p2 = float(case_f.mean()), float(control_f.mean())
        spread = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2.0)
        smd_sex = (p1 - p2) / spread if spread else (0.0 if p1 == p2 else math.copysign(math.inf, p1 - p2))
        note = f"female: cases {p1:.3f}, controls {p2:.3f}"
        unknown = int((~known & (is_case | is_control)).sum())
        if unknown:
            note += f"; {unknown} row(s) without sex left out"
    else:
        smd_sex, note = float("nan"), "no rows with a known sex in one group"
    rows.append({"measure": "smd_sex_female", "value": smd_sex, "p_value": np.nan, "note": note})

    crosstab = pd.crosstab(cohort["group"], cohort["stratum"])
    if crosstab.shape[0] < 2 or crosstab.shape[1] < 2:
        rows.append(
            {
                "measure": "chi2_group_by_stratum",
                "value": np.nan,
                "p_value": np.nan,
                "note": f"needs two groups and two strata, got {crosstab.shape[0]} x {crosstab.shape[1]}",
            }
        )
    else:
        result = stats.chi2_contingency(crosstab.to_numpy())
        small = int((result.expected_freq < 5).sum())
        note = f"dof {int(result.dof)}"
        if small:
            note += f"; {small} expected count(s) < 5, the chi-square approximation is rough"
        rows.append(
            {
                "measure": "chi2_group_by_stratum",
                "value": float(result.statistic),
                "p_value": float(result.pvalue),
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=["measure", "value", "p_value", "note"])


# ----------------------------------------------------------------------------
# CONSORT flow
# ----------------------------------------------------------------------------


def _node(sheet: str, node: str, label: str, parent: str, main: bool, n: int) -> dict:
    """One flow row; ``node`` and ``parent`` are prefixed with the sheet kind."""
    return {
        "sheet": sheet,
        "node": f"{sheet}.{node}",
        "label": label,
        "parent": f"{sheet}.{parent}" if parent else "",
        "main": main,
        "n": int(n),
    }


def flow_counts(
    cases: pd.DataFrame, ranked_pool: pd.DataFrame, qc: pd.DataFrame, cohort: pd.DataFrame
) -> pd.DataFrame:
    """CONSORT-style counts: where every row of both sheets ended up.

    Parameters
    ----------
    cases : pandas.DataFrame
        The cases sheet.
    ranked_pool : pandas.DataFrame
        Output of :func:`rank_pool` (carries ``eligible`` and ``reason``);
        with sex inferred (:func:`phenoface.sex_inference.infer_pool`) also
        ``sex_uncertain`` and ``sex_source``, which add a "sex uncertain"
        box and the count of controls whose sex was inferred.
    qc : pandas.DataFrame
        QC rows (``image_id``, ``sheet``, ``status``).
    cohort : pandas.DataFrame
        Output of :func:`draw_controls`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FLOW_COLUMNS`: a tree per sheet. ``node`` is an id
        (``cases.rows``, ``pool.qc_ok``, ...), ``parent`` the id of the node
        it splits from (``""`` for the sheet's root), ``main`` True on the
        CONSORT main line (rows -> ... -> analysed / matched) and False for
        side boxes (exclusions). Children of a node partition it, so the
        leaves of a sheet count each of its rows exactly once; see
        :func:`check_flow`.
    """
    cohort_ids = set(cohort["image_id"])
    nodes = []

    case_status = attach_status(cases, qc, "cases")["status"]
    nodes.append(_node("cases", "rows", "Cases sheet rows", "", True, len(cases)))
    for status in FAILED_STATUSES:
        nodes.append(
            _node(
                "cases", f"excluded_{status}", f"QC: {status}", "rows", False, (case_status == status).sum()
            )
        )
    unprocessed = case_status == NOT_NEEDED
    nodes.append(_node("cases", "excluded_not_needed", "not preprocessed", "rows", False, unprocessed.sum()))
    case_ok = case_status == OK
    nodes.append(_node("cases", "qc_ok", "Cases passing QC", "rows", True, case_ok.sum()))
    in_cohort = cases["image_id"].isin(cohort_ids)
    nodes.append(_node("cases", "analysed", "Cases analysed", "qc_ok", True, (case_ok & in_cohort).sum()))
    nodes.append(
        _node(
            "cases", "not_analysed", "passed QC, not in cohort", "qc_ok", False, (case_ok & ~in_cohort).sum()
        )
    )

    pool = attach_status(ranked_pool, qc, "pool")
    eligible = pool["eligible"].astype(bool)
    nodes.append(_node("pool", "rows", "Reference pool rows", "", True, len(pool)))
    for reason, text in INELIGIBLE_REASONS.items():
        nodes.append(
            _node(
                "pool",
                f"ineligible_{reason}",
                f"ineligible: {text}",
                "rows",
                False,
                (~eligible & (pool["reason"] == reason)).sum(),
            )
        )
    nodes.append(_node("pool", "eligible", "Eligible pool rows", "rows", True, eligible.sum()))
    not_needed = eligible & (pool["status"] == NOT_NEEDED)
    nodes.append(
        _node("pool", "not_needed", "not needed (never preprocessed)", "eligible", False, not_needed.sum())
    )
    tried = eligible & ~not_needed
    nodes.append(_node("pool", "tried", "Candidates preprocessed", "eligible", True, tried.sum()))
    for status in FAILED_STATUSES:
        nodes.append(
            _node(
                "pool",
                f"excluded_{status}",
                f"QC: {status}",
                "tried",
                False,
                (tried & (pool["status"] == status)).sum(),
            )
        )
    pool_ok = tried & (pool["status"] == OK)
    nodes.append(_node("pool", "qc_ok", "Candidates passing QC", "tried", True, pool_ok.sum()))
    matched = pool["image_id"].isin(cohort_ids)
    label = "Matched controls analysed"
    if "sex_uncertain" in pool.columns:
        # Sex inferred from the face (phenoface.sex_inference): uncertain rows cannot be drawn.
        uncertain = pool_ok & pool["sex_uncertain"].astype(bool)
        text = "sex uncertain (below sex_confidence)"
        nodes.append(_node("pool", "sex_uncertain", text, "qc_ok", False, uncertain.sum()))
        pool_ok = pool_ok & ~uncertain
        label += f"\n(sex inferred: {int((pool_ok & matched & pool['sex_source'].eq('inferred')).sum()):,})"
    nodes.append(_node("pool", "matched", label, "qc_ok", True, (pool_ok & matched).sum()))
    nodes.append(
        _node("pool", "not_drawn", "passed QC, not drawn", "qc_ok", False, (pool_ok & ~matched).sum())
    )
    return pd.DataFrame(nodes, columns=FLOW_COLUMNS)


def check_flow(counts: pd.DataFrame, sheet_rows: dict[str, int]) -> None:
    """Raise ``AssertionError`` unless the flow accounts for every row once.

    Checks, per sheet: the root equals the sheet's row count; the children
    of every node add up to it; the leaves add up to the row count.

    Parameters
    ----------
    counts : pandas.DataFrame
        Output of :func:`flow_counts`.
    sheet_rows : dict
        Row count of each sheet, e.g. ``{"cases": 120, "pool": 5000}``.
    """
    for sheet, n_rows in sheet_rows.items():
        part = counts.loc[counts["sheet"] == sheet]
        roots = part.loc[part["parent"] == ""]
        if len(roots) != 1 or int(roots["n"].iloc[0]) != int(n_rows):
            raise AssertionError(f"flow {sheet}: root count {roots['n'].tolist()} != {n_rows} sheet rows")
        parents = set(part["parent"]) - {""}
        for parent in parents:
            parent_n = int(part.loc[part["node"] == parent, "n"].iloc[0])
            children_n = int(part.loc[part["parent"] == parent, "n"].sum())
            if parent_n != children_n:
                raise AssertionError(
                    f"flow {sheet}: node {parent} has {parent_n} rows but its parts add up to {children_n}"
                )
        leaves = part.loc[~part["node"].isin(parents), "n"].sum()
        if int(leaves) != int(n_rows):
            raise AssertionError(f"flow {sheet}: leaves add up to {int(leaves)}, not {n_rows} sheet rows")
