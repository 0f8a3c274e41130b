"""Tests of phenoface.sampling (matched control draw, Table 1, balance, flow) and megaage_to_sheet."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import megaage_to_sheet
import numpy as np
import pandas as pd
import pytest
from sheet_factory import make_sheet

from phenoface import cohort_tables, sampling
from phenoface.cohort import COHORT_COLUMNS
from phenoface.errors import PhenofaceError
from phenoface.sheets import read_sheet

BINS = [0, 10, 20, 30, 40, 50, 60, 70]
AGE_SEX = ["age", "sex"]


def make_qc(
    *tables: pd.DataFrame, status: str = "ok", overrides: dict[str, str] | None = None
) -> pd.DataFrame:
    """QC rows for every row of the given sheets, all ``status`` except ``overrides`` (image_id -> status)."""
    rows = pd.concat([table[["image_id", "sheet"]] for table in tables], ignore_index=True)
    rows["status"] = status
    if overrides:
        rows["status"] = [
            overrides.get(image_id, value) for image_id, value in zip(rows["image_id"], rows["status"])
        ]
    return rows


def people(spec: dict[tuple[int, str], int]) -> list[tuple[int, str]]:
    """Expand {(age, sex): count} to a list of (age, sex)."""
    return [key for key, count in spec.items() for _ in range(count)]


CASE_SPEC = {(45, "F"): 6, (52, "M"): 4, (8, "F"): 3, (75, "M"): 2}
POOL_SPEC = {
    (41, "F"): 20,
    (48, "F"): 15,
    (55, "M"): 25,
    (3, "F"): 10,
    (80, "M"): 12,
    (33, "M"): 9,
    (44, ""): 7,
}


@pytest.fixture()
def cases() -> pd.DataFrame:
    return make_sheet("cases", people(CASE_SPEC), "case")


@pytest.fixture()
def pool() -> pd.DataFrame:
    return make_sheet("pool", people(POOL_SPEC), "pool")


def test_stratum_labels_sex_and_age_bins():
    """Labels are `F|40-49`, `M|70+`; an empty sex or an age below the first edge gives ''."""
    table = pd.DataFrame({"age": [45, 70, 99, 0, 44, 5], "sex": ["F", "M", "F", "M", "", "F"]})
    labels = sampling.stratum_labels(table, BINS, AGE_SEX)
    assert labels.tolist() == ["F|40-49", "M|70+", "F|70+", "M|0-9", "", "F|0-9"]
    shifted = sampling.stratum_labels(table, [10, 40], AGE_SEX)
    assert shifted.tolist() == ["F|40+", "M|40+", "F|40+", "", "", ""]


def test_stratum_labels_age_only_ignore_sex():
    """Matching on age only gives `40-49` labels, also for rows without sex."""
    table = pd.DataFrame({"age": [45, 44, 71], "sex": ["F", "", "M"]})
    assert sampling.stratum_labels(table, BINS, ["age"]).tolist() == ["40-49", "40-49", "70+"]


def test_bad_design_raises():
    """Unsorted bins or an unknown match variable are user errors naming the config key."""
    with pytest.raises(PhenofaceError, match="sampling.age_bins"):
        sampling.check_design([0, 20, 10], AGE_SEX)
    with pytest.raises(PhenofaceError, match="sampling.match_on"):
        sampling.check_design(BINS, ["age", "ethnicity"])


def test_rank_pool_marks_rows_without_sex_ineligible(pool):
    """Pool rows without sex are ineligible (reason no_sex, rank 0) while sex is matched."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=1)
    no_sex = ranked["sex"] == ""
    assert int(no_sex.sum()) == 7
    assert not ranked.loc[no_sex, "eligible"].any()
    assert set(ranked.loc[no_sex, "reason"]) == {"no_sex"}
    assert (ranked.loc[no_sex, "rank"] == 0).all()
    assert ranked.loc[~no_sex, "eligible"].all()


def test_rank_pool_ranks_are_a_permutation_per_stratum(pool):
    """Within each stratum the ranks are exactly 1..n."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3)
    for stratum, group in ranked.loc[ranked["eligible"]].groupby("stratum"):
        assert sorted(group["rank"]) == list(range(1, len(group) + 1)), stratum
    assert ranked.loc[ranked["stratum"] == "F|40-49", "rank"].max() == 35


def test_rank_pool_independent_of_row_order(pool):
    """Shuffling the pool sheet gives every image the same rank."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=7).set_index("image_id")["rank"]
    shuffled_pool = pool.sample(frac=1.0, random_state=0).reset_index(drop=True)
    shuffled = sampling.rank_pool(shuffled_pool, BINS, AGE_SEX, seed=7).set_index("image_id")["rank"]
    pd.testing.assert_series_equal(ranked.sort_index(), shuffled.sort_index())


def test_needed_per_stratum_multiplies_by_ratio(cases):
    """needed = ratio x cases per stratum, in catalogue order (M before F, young before old)."""
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX, ratio=2)
    assert needed.to_dict() == {"M|50-59": 8, "M|70+": 4, "F|0-9": 6, "F|40-49": 12}
    assert list(needed.index) == ["M|50-59", "M|70+", "F|0-9", "F|40-49"]


def test_needed_per_stratum_rejects_case_below_bins(cases):
    """A case younger than the first bin edge is an error naming its row and the fix."""
    with pytest.raises(PhenofaceError, match=r"cases sheet row 12 .*age 8"):
        sampling.needed_per_stratum(cases, [10, 50], AGE_SEX)


def test_plan_candidates_round_one_takes_oversampled_first_ranks(cases, pool):
    """Round 1 takes ceil(needed x oversample) lowest ranks of each stratum with cases, nothing else."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX, ratio=1)
    plan = sampling.plan_candidates(ranked, needed, None, oversample=1.5)
    counts = plan["stratum"].value_counts().to_dict()
    assert counts == {"F|40-49": 9, "M|50-59": 6, "F|0-9": 5, "M|70+": 3}
    for _, group in plan.groupby("stratum"):
        assert sorted(group["rank"]) == list(range(1, len(group) + 1))
    assert "M|30-39" not in counts  # a stratum without cases gets no candidates


def test_plan_candidates_later_round_extends_only_short_strata(cases, pool):
    """Round 2 adds ceil(short x oversample) next ranks to short strata only, and then stops."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX, ratio=1)
    round1 = sampling.plan_candidates(ranked, needed, None, oversample=1.5)
    # F|40-49 (needs 6): 9 tried, 5 fail -> 4 ok, short 2. M|50-59 (needs 4): 6 tried, 2 fail -> 4 ok.
    failing = pd.concat(
        [
            round1.loc[round1["stratum"] == "F|40-49"].nsmallest(5, "rank"),
            round1.loc[round1["stratum"] == "M|50-59"].nsmallest(2, "rank"),
        ]
    )["image_id"]
    tried = round1[["image_id"]].assign(status=np.where(round1["image_id"].isin(failing), "no_face", "ok"))
    round2 = sampling.plan_candidates(ranked, needed, tried, oversample=1.5)
    assert round2["stratum"].tolist() == ["F|40-49"] * 3
    assert round2["rank"].tolist() == [10, 11, 12]
    tried2 = pd.concat([tried, round2[["image_id"]].assign(status="ok")])
    assert sampling.plan_candidates(ranked, needed, tried2, oversample=1.5).empty


def test_plan_candidates_ignores_not_needed_rows(cases, pool):
    """Pool rows marked not_needed in the status table count as untried."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX)
    all_not_needed = ranked[["image_id"]].assign(status="not_needed")
    first = sampling.plan_candidates(ranked, needed, None, oversample=1.5)
    again = sampling.plan_candidates(ranked, needed, all_not_needed, oversample=1.5)
    assert again["image_id"].tolist() == first["image_id"].tolist()


@pytest.mark.parametrize("ratio", [1, 2])
def test_draw_controls_exact_ratio_per_stratum(cases, pool, ratio):
    """Each stratum gets exactly ratio x its cases when the pool suffices (k=1, k=2)."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=11)
    cohort, shortfall = sampling.draw_controls(
        cases, ranked, make_qc(cases, pool), BINS, AGE_SEX, ratio=ratio
    )
    assert shortfall.empty and list(shortfall.columns) == sampling.SHORTFALL_COLUMNS
    per_group = pd.crosstab(cohort["stratum"], cohort["group"])
    assert (per_group["control"] == ratio * per_group["case"]).all()
    assert len(cohort) == (1 + ratio) * len(cases)
    assert list(cohort.columns) == COHORT_COLUMNS
    assert cohort["group"].tolist() == ["case"] * len(cases) + ["control"] * ratio * len(cases)
    controls = cohort.loc[cohort["group"] == "control"]
    assert controls["image_id"].is_unique
    assert set(controls["image_id"]) <= set(pool["image_id"])


def test_draw_controls_same_seed_same_cohort(cases, pool):
    """Two draws with the same seed give identical cohorts."""
    qc = make_qc(cases, pool)
    first, _ = sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 5), qc, BINS, AGE_SEX)
    second, _ = sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 5), qc, BINS, AGE_SEX)
    pd.testing.assert_frame_equal(first, second)


def test_draw_controls_different_seed_different_controls(cases, pool):
    """Another seed picks another set of controls (same per-stratum counts)."""
    qc = make_qc(cases, pool)
    first, _ = sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 5), qc, BINS, AGE_SEX)
    second, _ = sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 6), qc, BINS, AGE_SEX)
    controls = [set(c.loc[c["group"] == "control", "image_id"]) for c in (first, second)]
    assert controls[0] != controls[1]
    assert first["stratum"].value_counts().equals(second["stratum"].value_counts())


def test_draw_controls_unchanged_by_pool_order(cases, pool):
    """Reordering the pool sheet (new row numbers too) leaves the cohort unchanged."""
    qc = make_qc(cases, pool)
    shuffled = pool.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled["row"] = range(2, len(shuffled) + 2)
    first, _ = sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 9), qc, BINS, AGE_SEX)
    second, _ = sampling.draw_controls(
        cases, sampling.rank_pool(shuffled, BINS, AGE_SEX, 9), qc, BINS, AGE_SEX
    )
    pd.testing.assert_frame_equal(first, second)


def test_draw_controls_skips_failed_qc_in_rank_order(cases, pool):
    """The draw takes the lowest-ranked QC-passing rows, skipping failed and untried ones."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=2)
    stratum = ranked.loc[ranked["stratum"] == "M|70+"].sort_values("rank")
    # ranks 1 and 3 fail, rank 2 passes, rank 4 never tried, rank 5 passes
    overrides = dict(zip(stratum["image_id"], ["no_face", "ok", "too_small", "not_needed", "ok"]))
    qc = make_qc(cases, pool, overrides=overrides)
    cohort, _ = sampling.draw_controls(cases, ranked, qc, BINS, AGE_SEX)
    drawn = cohort.loc[(cohort["group"] == "control") & (cohort["stratum"] == "M|70+"), "image_id"].tolist()
    assert drawn == [stratum["image_id"].iloc[1], stratum["image_id"].iloc[4]]


def test_draw_controls_excludes_failed_cases_from_matching(cases, pool):
    """A case that failed QC is not in the cohort and needs no control."""
    failed = cases.loc[cases["age"] == 75, "image_id"].iloc[0]
    qc = make_qc(cases, pool, overrides={failed: "no_face"})
    cohort, _ = sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 1), qc, BINS, AGE_SEX)
    assert failed not in set(cohort["image_id"])
    assert (cohort["stratum"] == "M|70+").sum() == 2  # 1 case + 1 control


def test_shortfall_error_names_strata_and_numbers(pool):
    """Too few controls raises, naming each short stratum with needed / available / after-QC counts."""
    cases = make_sheet("cases", people({(45, "F"): 6, (82, "M"): 10, (35, "M"): 3}), "case")
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    m30 = ranked.loc[ranked["stratum"] == "M|30-39"].sort_values("rank")["image_id"]
    qc = make_qc(cases, pool, overrides={m30.iloc[0]: "no_face"})
    with pytest.raises(PhenofaceError) as caught:
        sampling.draw_controls(cases, ranked, qc, BINS, AGE_SEX, ratio=3)
    message = str(caught.value)
    assert (
        "stratum M|70+: needed 30 for 10 case(s), available in pool 12, left after QC 12, short by 18"
        in message
    )
    assert (
        "stratum M|30-39: needed 9 for 3 case(s), available in pool 9, left after QC 8, short by 1" in message
    )
    assert "F|40-49" not in message
    assert "allow_shortfall" in message and "match_on" in message and "sampling.ratio" in message


def test_allow_shortfall_draws_what_exists(pool):
    """With allow_shortfall the draw takes every QC-passing row of a short stratum and reports it."""
    cases = make_sheet("cases", people({(45, "F"): 6, (82, "M"): 20}), "case")
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    cohort, shortfall = sampling.draw_controls(
        cases, ranked, make_qc(cases, pool), BINS, AGE_SEX, allow_shortfall=True
    )
    controls = cohort.loc[cohort["group"] == "control", "stratum"].value_counts()
    assert controls.to_dict() == {"M|70+": 12, "F|40-49": 6}
    assert shortfall.to_dict("records") == [
        {
            "stratum": "M|70+",
            "cases": 20,
            "needed": 20,
            "pool_available": 12,
            "pool_tried": 12,
            "pool_ok": 12,
            "drawn": 12,
            "short": 8,
        }
    ]


def test_age_only_matching_uses_rows_without_sex(pool):
    """With match_on [age], pool rows without sex are eligible and can be drawn."""
    cases = make_sheet("cases", people({(45, "F"): 42}), "case")
    ranked = sampling.rank_pool(pool, BINS, ["age"], seed=0)
    assert ranked["eligible"].all()
    cohort, shortfall = sampling.draw_controls(cases, ranked, make_qc(cases, pool), BINS, ["age"])
    controls = cohort.loc[cohort["group"] == "control"]
    assert shortfall.empty and len(controls) == 42  # every pool row aged 40-49, 7 of them without sex
    assert (controls["sex"] == "").sum() == 7


def test_missing_case_status_is_an_error(cases, pool):
    """A case with no QC row raises instead of silently dropping the case."""
    qc = make_qc(cases.iloc[1:], pool)
    with pytest.raises(PhenofaceError, match="case row"):
        sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 0), qc, BINS, AGE_SEX)


def test_flow_counts_account_for_every_row_once(cases, pool):
    """Flow leaves partition each sheet; counts per status, eligibility and match are right."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=4)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX)
    plan = sampling.plan_candidates(ranked, needed, None, oversample=1.5)
    statuses = {image_id: "not_needed" for image_id in pool["image_id"]}
    statuses.update({image_id: "ok" for image_id in plan["image_id"]})
    statuses[plan["image_id"].iloc[0]] = "no_face"
    statuses[plan["image_id"].iloc[1]] = "unreadable"
    statuses[cases["image_id"].iloc[0]] = "too_small"
    qc = make_qc(cases, pool, overrides=statuses)
    cohort, _ = sampling.draw_controls(cases, ranked, qc, BINS, AGE_SEX, allow_shortfall=True)
    flow = cohort_tables.flow_counts(cases, ranked, qc, cohort)
    cohort_tables.check_flow(flow, {"cases": len(cases), "pool": len(pool)})
    n = flow.set_index("node")["n"]
    assert n["cases.rows"] == 15 and n["cases.excluded_too_small"] == 1 and n["cases.analysed"] == 14
    assert n["pool.rows"] == 98 and n["pool.ineligible_no_sex"] == 7 and n["pool.eligible"] == 91
    assert (
        n["pool.tried"] == len(plan)
        and n["pool.excluded_no_face"] == 1
        and n["pool.excluded_unreadable"] == 1
    )
    assert n["pool.matched"] == (cohort["group"] == "control").sum() == 14
    assert n["pool.not_needed"] == 91 - len(plan)


def test_check_flow_rejects_counts_that_do_not_add_up(cases, pool):
    """check_flow raises when a node's parts do not add up to it."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=4)
    qc = make_qc(cases, pool)
    cohort, _ = sampling.draw_controls(cases, ranked, qc, BINS, AGE_SEX)
    flow = cohort_tables.flow_counts(cases, ranked, qc, cohort)
    flow.loc[flow["node"] == "pool.not_drawn", "n"] += 1
    with pytest.raises(AssertionError, match="pool.qc_ok"):
        cohort_tables.check_flow(flow, {"cases": len(cases), "pool": len(pool)})
    with pytest.raises(AssertionError, match="root"):
        cohort_tables.check_flow(flow, {"cases": len(cases) + 1})


def test_table1_counts_and_column_percentages(cases, pool):
    """Table 1 counts per bin x group x sex, and each column's percentages add up to 100."""
    cohort, _ = sampling.draw_controls(
        cases, sampling.rank_pool(pool, BINS, AGE_SEX, 0), make_qc(cases, pool), BINS, AGE_SEX, ratio=2
    )
    table = cohort_tables.table1(cohort, BINS).set_index("age_bin")
    assert list(table.index) == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+", "Total"]
    assert table.loc["40-49", "case F n"] == 6 and table.loc["40-49", "control F n"] == 12
    assert table.loc["Total", "case M n"] == 6 and table.loc["Total", "control M n"] == 12
    assert table.loc["0-9", "case F %"] == pytest.approx(100 * 3 / 9, abs=0.01)
    for column in [c for c in table.columns if c.endswith("%")]:
        assert table[column].iloc[:-1].sum() == pytest.approx(100.0, abs=0.05)
    shown = cohort_tables.format_table1(table.reset_index())
    assert shown.loc[4, "Cases\nFemale, n (%)"] == "6 (66.67)"


def test_balance_of_a_matched_cohort(cases, pool):
    """An exactly matched cohort has equal sex proportions and a chi-square p of 1."""
    cohort, _ = sampling.draw_controls(
        cases, sampling.rank_pool(pool, BINS, AGE_SEX, 0), make_qc(cases, pool), BINS, AGE_SEX
    )
    result = cohort_tables.balance(cohort).set_index("measure")
    assert list(result.index) == [
        "n_cases",
        "n_controls",
        "smd_age",
        "smd_sex_female",
        "chi2_group_by_stratum",
    ]
    assert result.loc["smd_sex_female", "value"] == 0.0
    assert result.loc["chi2_group_by_stratum", "value"] == pytest.approx(0.0)
    assert result.loc["chi2_group_by_stratum", "p_value"] == pytest.approx(1.0)
    ages = cohort.groupby("group")["age"]
    expected = (ages.mean()["case"] - ages.mean()["control"]) / math.sqrt(
        (ages.var()["case"] + ages.var()["control"]) / 2
    )
    assert result.loc["smd_age", "value"] == pytest.approx(expected)


def test_balance_detects_an_unmatched_cohort():
    """Cases all old women vs controls all young men: large SMDs and a tiny chi-square p."""
    cohort = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(60)],
            "group": ["case"] * 30 + ["control"] * 30,
            "age": list(range(60, 90)) + list(range(10, 40)),
            "sex": ["F"] * 30 + ["M"] * 30,
            "subject_id": "",
            "stratum": ["F|70+"] * 30 + ["M|10-19"] * 30,
        }
    )
    result = cohort_tables.balance(cohort).set_index("measure")
    assert result.loc["smd_age", "value"] > 5
    assert math.isinf(result.loc["smd_sex_female", "value"])
    assert result.loc["chi2_group_by_stratum", "p_value"] < 1e-10


def test_utkface_pool_matches_age_and_sex(utkface_dir):
    """UTKFace as pool, its Asian rows as cases (all QC ok): |SMD age| < 0.1, same share of women."""
    meta = pd.read_csv(utkface_dir / "metadata.csv", dtype=str, keep_default_na=False)
    meta["age"] = meta["age"].astype(int)
    is_case = meta["ethnicity"] == "asian"
    cases = make_sheet("cases", list(zip(meta.loc[is_case, "age"], meta.loc[is_case, "sex"])), "utk_case")
    pool = make_sheet("pool", list(zip(meta.loc[~is_case, "age"], meta.loc[~is_case, "sex"])), "utk_pool")
    assert len(cases) >= 500
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=42)
    cohort, shortfall = sampling.draw_controls(cases, ranked, make_qc(cases, pool), BINS, AGE_SEX)
    assert shortfall.empty
    result = cohort_tables.balance(cohort).set_index("measure")
    assert abs(result.loc["smd_age", "value"]) < 0.1
    female = cohort.assign(f=cohort["sex"] == "F").groupby("group")["f"].mean()
    assert female["case"] == female["control"]
    assert (cohort["group"] == "control").sum() == len(cases) == 1394


# ---------------------------------------------------------------------------
# design, bins and strata at their boundaries
# ---------------------------------------------------------------------------


def test_check_design_returns_int_edges_and_sex_before_age():
    """The design comes back as int edges and the matched variables in canonical order (sex, age)."""
    assert sampling.check_design((0.0, 10, 70), ["age", "sex"]) == ([0, 10, 70], ["sex", "age"])
    assert sampling.check_design([5], ["age"]) == ([5], ["age"])
    assert sampling.check_design([0], ("sex",)) == ([0], ["sex"])


@pytest.mark.parametrize("bins", [[], [-1, 10], [0, 10, 10], [0, 20, 10]])
def test_check_design_rejects_bins_naming_the_fix(bins):
    """Empty, negative, repeated or decreasing edges are an error quoting the bins and the fix."""
    expected = (
        f"config sampling.age_bins = {bins}: give a non-empty list of strictly increasing left edges >= 0, "
        "e.g. [0, 10, 20, 30, 40, 50, 60, 70]."
    )
    with pytest.raises(PhenofaceError) as caught:
        sampling.check_design(bins, AGE_SEX)
    assert str(caught.value) == expected


@pytest.mark.parametrize("match_on", [[], ["age", "ethnicity"], ["Sex"]])
def test_check_design_rejects_match_variables_naming_the_fix(match_on):
    """No variable or an unknown one is an error quoting the setting and the accepted values."""
    with pytest.raises(PhenofaceError) as caught:
        sampling.check_design(BINS, match_on)
    assert str(caught.value) == f"config sampling.match_on = {match_on}: use [age, sex] or [age] (or [sex])."


def test_age_bins_labels_and_index_at_the_edges():
    """Each edge opens its bin, one below it closes the previous one; the last bin is open-ended."""
    assert sampling.age_bin_labels([0, 10, 70]) == ["0-9", "10-69", "70+"]
    assert sampling.age_bin_labels([18]) == ["18+"]
    index = sampling.age_bin_index([4, 5, 14.5, 15, 69, 70, 120], [5, 15, 70])
    assert index.tolist() == [-1, 0, 0, 1, 1, 2, 2]


def test_label_ages_marks_young_and_unknown_ages():
    """Ages below the first edge read `<edge`, unknown or non-numeric ages `NA`; edges in any order."""
    ages = [9, 9.5, 10, 19, 20, 75, "42", None, "x", float("inf"), float("-inf")]
    labels = sampling.label_ages(ages, [70, 10, 20])
    assert labels.tolist() == [
        "<10",
        "<10",
        "10-19",
        "10-19",
        "20-69",
        "70+",
        "20-69",
        "NA",
        "NA",
        "NA",
        "NA",
    ]


def test_strata_catalogue_orders_sex_then_age_with_age_only_bins_last():
    """Catalogue: M strata, then F strata, young to old; age-only bins drop the sex and come last."""
    bins = [0, 10, 20]
    assert sampling.strata_catalogue(bins, AGE_SEX) == [
        "M|0-9",
        "M|10-19",
        "M|20+",
        "F|0-9",
        "F|10-19",
        "F|20+",
    ]
    assert sampling.strata_catalogue(bins, AGE_SEX, age_only_bins=["20+", "0-9"]) == [
        "M|10-19",
        "F|10-19",
        "0-9",
        "20+",
    ]
    assert sampling.strata_catalogue(bins, ["age"], age_only_bins=["0-9"]) == ["0-9", "10-19", "20+"]
    assert sampling.strata_catalogue(bins, ["sex"]) == ["M", "F"]


def test_stratum_labels_sex_only_and_age_only_bins():
    """Sex-only labels ignore age; in an age-only bin the sex is dropped, so a row without sex is placed."""
    table = pd.DataFrame({"age": [45, 3, 50, 5, 5, 45]}, index=[7, 8, 9, 10, 11, 12]).assign(
        sex=["F", "M", None, "", "F", ""]
    )
    sex_only = sampling.stratum_labels(table, [10, 40], ["sex"])
    assert sex_only.tolist() == ["F", "M", "", "", "F", ""]
    assert list(sex_only.index) == [7, 8, 9, 10, 11, 12] and sex_only.name == "stratum"
    mixed = sampling.stratum_labels(table, BINS, AGE_SEX, age_only_bins=["0-9"])
    assert mixed.tolist() == ["F|40-49", "0-9", "", "0-9", "0-9", ""]


# ---------------------------------------------------------------------------
# QC statuses
# ---------------------------------------------------------------------------


def test_attach_status_pool_rows_without_qc_are_not_needed(pool, caplog):
    """Pool rows without a pool QC row become not_needed (logged); the input table is left as it was."""
    first_three = pool.iloc[:3]
    qc = pd.DataFrame(
        {
            "image_id": [first_three["image_id"].iloc[0], first_three["image_id"].iloc[1]],
            "sheet": ["pool", "cases"],  # a row of the other sheet does not count
            "status": ["no_face", "ok"],
        }
    )
    with caplog.at_level("INFO", logger="phenoface.sampling"):
        out = sampling.attach_status(first_three, qc, "pool")
    assert out["status"].tolist() == ["no_face", "not_needed", "not_needed"]
    assert "status" not in first_three.columns
    assert "2 pool row(s) without a QC row: counted as not_needed" in caplog.messages


def test_attach_status_rejects_duplicate_status_rows(pool):
    """Several status rows for an image are an error naming the first such image, the sheet and its count."""
    image_id = pool["image_id"].iloc[2]
    qc = make_qc(pool)
    qc = pd.concat([qc, qc.iloc[[4, 4, 2]]], ignore_index=True)
    with pytest.raises(PhenofaceError) as caught:
        sampling.attach_status(pool, qc, "pool")
    assert str(caught.value) == (
        f"QC table: image {image_id} of the pool sheet has 2 status rows; each image must have exactly one. "
        "Re-run preprocessing (delete results/qc)."
    )


def test_attach_status_rejects_unknown_statuses(cases):
    """A status this version does not know is an error listing the unknown and the known statuses."""
    qc = make_qc(cases, overrides={cases["image_id"].iloc[0]: "blurry", cases["image_id"].iloc[1]: "dark"})
    with pytest.raises(PhenofaceError) as caught:
        sampling.attach_status(cases, qc, "cases")
    assert str(caught.value) == (
        "QC table: unknown status(es) 'blurry', 'dark' for the cases sheet; expected one of ok, unreadable, "
        "no_face, too_small, multiple_faces, error, not_needed. Re-run preprocessing with this phenoface version."
    )


def test_attach_status_missing_case_names_count_and_first_row(cases):
    """Cases without a status are an error with their count and the first one's sheet row and image."""
    qc = make_qc(cases.drop(index=[2, 5]))
    with pytest.raises(PhenofaceError) as caught:
        sampling.attach_status(cases, qc, "cases")
    assert str(caught.value) == (
        f"QC table: 2 case row(s) have no status, e.g. cases sheet row 4 ({cases['image_id'].iloc[2]}). "
        "Every case must be preprocessed; re-run the workflow so results/qc is rebuilt from the current sheet."
    )
    with pytest.raises(PhenofaceError, match=r"cases sheet row \? "):
        sampling.attach_status(cases.drop(columns="row"), qc, "cases")


# ---------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------


def ranked_small(
    match_on: list[str], age_only_bins: tuple[str, ...] | list[str] = (), index: range | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rank_pool over a small pool: ages 3, 5, 12 and 45, with and without sex (empty or missing)."""
    pool = make_sheet(
        "pool", [(3, "F"), (3, None), (45, "M"), (45, ""), (45, "F"), (12, "M"), (5, "M")], "small"
    )
    if index is not None:
        pool = pool.set_axis(index)
    return pool, sampling.rank_pool(pool, [10, 40], match_on, seed=0, age_only_bins=age_only_bins)


def test_rank_pool_reasons_no_sex_first_then_age(caplog):
    """Missing sex wins over a young age; rows below the first edge are age_below_bins, rank 0, logged."""
    with caplog.at_level("INFO", logger="phenoface.sampling"):
        pool, ranked = ranked_small(AGE_SEX)
        _, shifted = ranked_small(AGE_SEX, index=range(10, 17))
    assert ranked["reason"].tolist() == ["age_below_bins", "no_sex", "", "no_sex", "", "", "age_below_bins"]
    assert ranked["eligible"].tolist() == [False, False, True, False, True, True, False]
    assert ranked["stratum"].tolist() == ["", "", "M|40+", "", "F|40+", "M|10-39", ""]
    assert ranked["rank"].tolist() == [0, 0, 1, 0, 1, 1, 0]
    assert set(ranked.columns) - set(pool.columns) == {"stratum", "eligible", "reason", "rank"}
    # the same counts, also for a sheet whose index does not start at 0
    assert caplog.messages.count("pool: 7 rows, 3 eligible, 2 without sex, 2 below the first age bin") == 2
    pd.testing.assert_frame_equal(shifted.reset_index(drop=True), ranked)


def test_rank_pool_age_only_and_sex_only_designs():
    """Age-only bins need no sex; sex-only matching ignores age; age-only matching ignores sex."""
    _, age_only_bin = ranked_small(AGE_SEX, age_only_bins=["10-39", "40+"])
    _, shifted = ranked_small(AGE_SEX, age_only_bins=["10-39", "40+"], index=range(10, 17))
    pd.testing.assert_frame_equal(shifted.reset_index(drop=True), age_only_bin)  # any index, same ranks
    assert age_only_bin["reason"].tolist() == ["age_below_bins", "no_sex", "", "", "", "", "age_below_bins"]
    assert age_only_bin["stratum"].tolist() == ["", "", "40+", "40+", "40+", "10-39", ""]
    assert sorted(age_only_bin.loc[age_only_bin["stratum"] == "40+", "rank"]) == [1, 2, 3]
    _, sex_only = ranked_small(["sex"])
    assert sex_only["reason"].tolist() == ["", "no_sex", "", "no_sex", "", "", ""]
    assert sex_only["stratum"].tolist() == ["F", "", "M", "", "F", "M", "M"]
    _, age_only = ranked_small(["age"])
    assert age_only["reason"].tolist() == [
        "age_below_bins",
        "age_below_bins",
        "",
        "",
        "",
        "",
        "age_below_bins",
    ]
    assert age_only["rank"].dtype == int


def test_rank_pool_rejects_duplicate_image_ids(pool):
    """A pool sheet listing an image twice is an error naming the image."""
    doubled = pd.concat([pool, pool.iloc[[3]]], ignore_index=True)
    with pytest.raises(PhenofaceError) as caught:
        sampling.rank_pool(doubled, BINS, AGE_SEX, seed=0)
    assert str(caught.value) == (
        f"reference pool: image id {pool['image_id'].iloc[3]} occurs twice; keep one row per image."
    )


# ---------------------------------------------------------------------------
# needs and candidate rounds
# ---------------------------------------------------------------------------


def test_needed_per_stratum_rejects_ratio_below_one(cases):
    """A ratio below 1 is an error naming the setting; ratio 1 gives one control per case."""
    with pytest.raises(PhenofaceError) as caught:
        sampling.needed_per_stratum(cases, BINS, AGE_SEX, ratio=0)
    assert str(caught.value) == "config sampling.ratio = 0: give an integer >= 1 (controls per case)."
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX, ratio=1)
    assert needed.sum() == len(cases) and needed.name == "needed" and needed.index.name == "stratum"
    assert needed.dtype == int


def test_needed_per_stratum_unplaced_case_message(cases):
    """A case that falls in no stratum is named with its row, age, sex, the bins and the fix."""
    no_sex = cases.assign(sex=["F"] * 3 + [""] + ["F"] * (len(cases) - 4))
    with pytest.raises(PhenofaceError) as caught:
        sampling.needed_per_stratum(no_sex, BINS, AGE_SEX)
    assert str(caught.value) == (
        "cases sheet row 5 (age 45, sex '') falls in no stratum of sampling.age_bins "
        "[0, 10, 20, 30, 40, 50, 60, 70]: start the bins at 0 (or at most at the youngest case's age)."
    )
    with pytest.raises(PhenofaceError, match=r"^cases sheet row \? \(age 45"):
        sampling.needed_per_stratum(no_sex.drop(columns="row"), BINS, AGE_SEX)


def many_in_one_stratum(n_pool: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A ranked pool of ``n_pool`` women aged 45 (seed 0) and a frame of 10 such cases."""
    pool = make_sheet("pool", [(45, "F")] * n_pool, "big")
    cases = make_sheet("cases", [(45, "F")] * 10, "ten")
    return sampling.rank_pool(pool, BINS, AGE_SEX, seed=0), cases


def test_plan_candidates_oversample_rounds_up_without_float_noise(caplog):
    """10 short x 1.1 is 11 candidates (not 12); 10 x 1.15 is 12; oversample 1 takes exactly the shortfall."""
    ranked, cases = many_in_one_stratum(40)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX)
    with caplog.at_level("INFO", logger="phenoface.sampling"):
        plan = sampling.plan_candidates(ranked, needed, None, oversample=1.1)
    assert plan["rank"].tolist() == list(range(1, 12))
    assert (
        "stratum F|40-49: needed 10, ok so far 0, short 10 -> 11 new candidate(s) (29 untried left)"
        in caplog.messages
    )
    assert len(sampling.plan_candidates(ranked, needed, None, oversample=1.15)) == 12
    assert len(sampling.plan_candidates(ranked, needed, None, oversample=1)) == 10
    with pytest.raises(PhenofaceError) as caught:
        sampling.plan_candidates(ranked, needed, None, oversample=0.99)
    assert str(caught.value) == "config sampling.oversample = 0.99: give a number >= 1."


def test_plan_candidates_counts_latest_status_and_skips_full_strata(caplog):
    """The last status row of an image counts; a stratum with enough ok rows gets nothing and no log line."""
    ranked, cases = many_in_one_stratum(30)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX)
    order = ranked.sort_values("rank")["image_id"].tolist()
    # ranks 1-10 tried; rank 1 first failed, then passed on a rerun; rank 10 failed
    tried = pd.DataFrame(
        {
            "image_id": [order[0], *order[:10], "not-in-pool-1234"],
            "status": ["no_face", *["ok"] * 9, "no_face", "ok"],
        }
    )
    plan = sampling.plan_candidates(ranked, needed, tried, oversample=2)
    assert plan["rank"].tolist() == [11, 12]  # 9 ok (rank 1 passed on the rerun), short 1, x2
    all_ok = pd.DataFrame({"image_id": order[:10], "status": "ok"})
    caplog.clear()
    with caplog.at_level("INFO", logger="phenoface.sampling"):
        empty = sampling.plan_candidates(ranked, needed, all_ok, oversample=2)
    assert empty.empty and list(empty.columns) == list(ranked.columns)
    assert "stratum" not in caplog.text


def test_plan_candidates_orders_strata_by_catalogue_then_rank(cases, pool):
    """Candidates come stratum by stratum in catalogue order, each by rank (default oversample: config's 1.5)."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX)
    plan = sampling.plan_candidates(ranked, needed)
    assert plan["stratum"].tolist() == ["M|50-59"] * 6 + ["M|70+"] * 3 + ["F|0-9"] * 5 + ["F|40-49"] * 9
    assert plan["rank"].tolist() == [*range(1, 7), *range(1, 4), *range(1, 6), *range(1, 10)]


# ---------------------------------------------------------------------------
# the draw: messages, logs and the cohort's columns
# ---------------------------------------------------------------------------


def test_draw_controls_no_case_passed_qc(cases, pool):
    """When every case failed QC the draw stops with the count and where to look."""
    qc = make_qc(pool).pipe(lambda q: pd.concat([q, make_qc(cases, status="no_face")], ignore_index=True))
    with pytest.raises(PhenofaceError) as caught:
        sampling.draw_controls(cases, sampling.rank_pool(pool, BINS, AGE_SEX, 0), qc, BINS, AGE_SEX)
    assert str(caught.value) == (
        "none of the 15 cases passed QC (see results/qc/preprocess.tsv): nothing to match. "
        "Check the case images and the preprocess settings."
    )


def test_shortfall_message_counts_untried_rows_and_suggests_more_rounds(pool):
    """Never-preprocessed rows are counted per stratum, and more rounds are suggested only then."""
    cases = make_sheet("cases", people({(45, "F"): 20, (82, "M"): 10}), "case")
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    f40 = ranked.loc[ranked["stratum"] == "F|40-49"].sort_values("rank")["image_id"]
    overrides = {image_id: "not_needed" for image_id in f40.iloc[25:]}  # 10 of 35 never tried
    overrides.update({image_id: "no_face" for image_id in f40.iloc[:20]})  # 5 ok
    with pytest.raises(PhenofaceError) as caught:
        sampling.draw_controls(
            cases, ranked, make_qc(cases, pool, overrides=overrides), BINS, AGE_SEX, ratio=2
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "too few controls in 2 stratum/strata for 2:1 matching (needed = controls required, available = "
        "eligible pool rows, after QC = pool rows that passed QC):"
    )
    assert (
        lines[1]
        == "  stratum M|70+: needed 20 for 10 case(s), available in pool 12, left after QC 12, short by 8"
    )
    assert lines[2] == (
        "  stratum F|40-49: needed 40 for 20 case(s), available in pool 35, left after QC 5, short by 35; "
        "10 pool row(s) never preprocessed"
    )
    assert lines[3] == (
        "Ways out: set sampling.allow_shortfall: true to draw what exists and report the imbalance; use coarser "
        "sampling.age_bins or sampling.match_on: [age]; add images to the reference pool; lower sampling.ratio; "
        "or raise sampling.max_rounds / sampling.oversample."
    )
    with pytest.raises(PhenofaceError) as caught:
        sampling.draw_controls(cases, ranked, make_qc(cases, pool), BINS, AGE_SEX, ratio=2)
    assert str(caught.value).endswith("add images to the reference pool; lower sampling.ratio.")


def test_allow_shortfall_logs_a_warning_and_reports_tried_rows(pool, caplog):
    """allow_shortfall warns with the full message; pool_tried counts every preprocessed row, failed ones too."""
    cases = make_sheet("cases", people({(82, "M"): 10}), "case")
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    m70 = ranked.loc[ranked["stratum"] == "M|70+"].sort_values("rank")["image_id"]
    overrides = {m70.iloc[0]: "not_needed", m70.iloc[1]: "no_face", m70.iloc[2]: "too_small"}
    qc = make_qc(cases, pool, overrides=overrides)
    with caplog.at_level("INFO", logger="phenoface.sampling"):
        cohort, shortfall = sampling.draw_controls(
            cases, ranked, qc, BINS, AGE_SEX, ratio=2, allow_shortfall=True
        )
    assert shortfall.to_dict("records") == [
        {
            "stratum": "M|70+",
            "cases": 10,
            "needed": 20,
            "pool_available": 12,
            "pool_tried": 11,
            "pool_ok": 9,
            "drawn": 9,
            "short": 11,
        }
    ]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    with pytest.raises(PhenofaceError) as caught:
        sampling.draw_controls(cases, ranked, qc, BINS, AGE_SEX, ratio=2)
    assert warnings[0].getMessage() == f"allow_shortfall is set, drawing what exists: {caught.value}"
    assert str(caught.value).startswith("too few controls in 1 stratum/strata for 2:1 matching")
    assert "; 1 pool row(s) never preprocessed" in str(caught.value)
    assert "cohort: 10 cases, 9 controls (2:1) in 1 strata; 1 short stratum/strata" in caplog.messages
    assert (cohort["group"] == "control").sum() == 9


def test_draw_controls_orders_cases_by_sheet_row_and_cleans_columns(pool):
    """Cases come in sheet-row order (image id without a row column); ages int, missing subject ids ''."""
    cases = make_sheet("cases", people({(45, "F"): 3, (52, "M"): 2}), "case")
    cases["row"] = [6, 2, 5, 3, 4]
    cases["age"] = cases["age"].astype(float)
    cases["subject_id"] = [None, "s1", None, "s2", "s3"]
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0)
    qc = make_qc(cases, pool)
    cohort, _ = sampling.draw_controls(cases, ranked, qc, BINS, AGE_SEX)
    case_rows = cohort.loc[cohort["group"] == "case"]
    assert case_rows["image_id"].tolist() == cases.sort_values("row")["image_id"].tolist()
    assert case_rows["subject_id"].tolist() == ["s1", "s2", "s3", "", ""]
    assert cohort["age"].dtype == int and cohort["subject_id"].map(type).eq(str).all()
    by_id, _ = sampling.draw_controls(cases.drop(columns="row"), ranked, qc, BINS, AGE_SEX)
    ids = by_id.loc[by_id["group"] == "case", "image_id"].tolist()
    assert ids == sorted(cases["image_id"])


def test_draw_controls_age_only_bin_matches_children_on_age_alone():
    """In an age-only bin cases of any sex (or none) share one stratum, filled from pool rows without sex."""
    cases = make_sheet("cases", [(5, "F"), (6, "M"), (7, ""), (45, "F")], "kid")
    pool = make_sheet(
        "pool", [(3, ""), (4, ""), (8, "F"), (9, ""), (45, "F"), (46, "F"), (47, "")], "kidpool"
    )
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=0, age_only_bins=["0-9"])
    needed = sampling.needed_per_stratum(cases, BINS, AGE_SEX, age_only_bins=["0-9"])
    assert needed.to_dict() == {"F|40-49": 1, "0-9": 3} and list(needed.index) == ["F|40-49", "0-9"]
    cohort, shortfall = sampling.draw_controls(
        cases, ranked, make_qc(cases, pool), BINS, AGE_SEX, age_only_bins=["0-9"]
    )
    assert shortfall.empty
    assert cohort["stratum"].tolist() == ["0-9", "0-9", "0-9", "F|40-49", "F|40-49", "0-9", "0-9", "0-9"]
    controls = cohort.loc[cohort["group"] == "control"]
    assert set(controls["image_id"]) < set(pool["image_id"]) and (controls["age"] < 10).sum() == 3


# ---------------------------------------------------------------------------
# megaage_to_sheet
# ---------------------------------------------------------------------------


def make_megaage(
    root: Path, names: list[str], ages: list[str], create: list[str] | None = None
) -> tuple[Path, Path, Path]:
    """A tiny MegaAge-like layout: images/, list/name.txt, list/age.txt."""
    images = root / "images"
    images.mkdir(parents=True)
    for name in create if create is not None else names:
        (images / name).write_bytes(b"\xff\xd8\xff")
    lists = root / "list"
    lists.mkdir()
    (lists / "name.txt").write_text("\n".join(names) + "\n\n")
    (lists / "age.txt").write_text("\n".join(ages) + "\n")
    return images, lists / "name.txt", lists / "age.txt"


def test_megaage_to_sheet_writes_a_readable_pool_sheet(tmp_path):
    """The CLI writes image/age/sex rows that read_sheet accepts as a pool, images resolved."""
    images, names, ages = make_megaage(tmp_path / "megaage", ["1.jpg", "2.jpg", "3.jpg"], ["23", "5", "61"])
    out = tmp_path / "sheets" / "pool.csv"
    code = megaage_to_sheet.main(
        ["--images", str(images), "--names", str(names), "--ages", str(ages), "--out", str(out)]
    )
    assert code == 0
    sheet = read_sheet(out, "pool", check_files=True)
    assert sheet["age"].tolist() == [23, 5, 61]
    assert sheet["sex"].tolist() == ["", "", ""]
    assert [Path(p).name for p in sheet["path"]] == ["1.jpg", "2.jpg", "3.jpg"]
    assert sheet["image"].iloc[0] == "../megaage/images/1.jpg"


def test_megaage_to_sheet_rejects_misaligned_lists(tmp_path):
    """Different numbers of names and ages is an error naming both files and counts."""
    images, names, ages = make_megaage(tmp_path, ["1.jpg", "2.jpg"], ["23"])
    with pytest.raises(PhenofaceError, match="2 image names but .* has 1 ages"):
        megaage_to_sheet.build_pool_sheet(images, names, ages, tmp_path)


def test_megaage_to_sheet_rejects_non_integer_age(tmp_path):
    """A non-integer age is an error naming the line."""
    images, names, ages = make_megaage(tmp_path, ["1.jpg", "2.jpg"], ["23", "4.5"])
    with pytest.raises(PhenofaceError, match="line 2: age '4.5'"):
        megaage_to_sheet.build_pool_sheet(images, names, ages, tmp_path)


def test_megaage_to_sheet_reports_missing_images(tmp_path):
    """Listed images missing from the folder are an error with the count and first lines; the CLI exits 2."""
    images, names, ages = make_megaage(
        tmp_path, ["1.jpg", "2.jpg", "3.jpg"], ["1", "2", "3"], create=["2.jpg"]
    )
    with pytest.raises(PhenofaceError, match=r"2 listed image\(s\) not found .*line 1: .*line 3:"):
        megaage_to_sheet.build_pool_sheet(images, names, ages, tmp_path)
    out = tmp_path / "pool.csv"
    code = megaage_to_sheet.main(
        ["--images", str(images), "--names", str(names), "--ages", str(ages), "--out", str(out)]
    )
    assert code == 2 and not out.exists()


def test_sample_matched_controls_run_writes_every_output(tmp_path):
    """The entry script's run() writes cohort, Table 1, balance, shortfall (header only) and both figures."""
    import sample_matched_controls

    (tmp_path / "cases.csv").write_text(
        "image,age,sex\n" + "".join(f"c{i}.jpg,{40 + i},F\n" for i in range(4))
    )
    (tmp_path / "pool.csv").write_text(
        "image,age,sex\n" + "".join(f"p{i}.jpg,{40 + i},F\n" for i in range(9))
    )
    cases = read_sheet(tmp_path / "cases.csv", "cases", check_files=False)
    pool = read_sheet(tmp_path / "pool.csv", "pool", check_files=False)
    make_qc(cases, pool).to_csv(tmp_path / "preprocess.tsv", sep="\t", index=False)
    suffixes = {
        "cohort": ".csv",
        "table1": ".csv",
        "table1_png": ".png",
        "balance": ".csv",
        "flow_png": ".png",
        "flow_svg": ".svg",
        "shortfall": ".csv",
    }
    outputs = {key: tmp_path / "out" / f"{key}{suffix}" for key, suffix in suffixes.items()}
    inputs = {
        "qc": tmp_path / "preprocess.tsv",
        "cases": tmp_path / "cases.csv",
        "pool": tmp_path / "pool.csv",
    }
    params = SimpleNamespace(age_bins=BINS, match_on=AGE_SEX, ratio=2, allow_shortfall=False, seed=1)
    cohort = sample_matched_controls.run(inputs, outputs, params)
    assert all(path.stat().st_size > 0 for path in outputs.values())
    written = pd.read_csv(outputs["cohort"], keep_default_na=False)
    assert written["group"].value_counts().to_dict() == {"control": 8, "case": 4}
    assert written["image_id"].tolist() == cohort["image_id"].tolist()
    assert outputs["shortfall"].read_text().strip() == ",".join(sampling.SHORTFALL_COLUMNS)
