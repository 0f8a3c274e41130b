"""Tests of phenoface.sex_inference: sex from the face for pool rows without sex."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from sheet_factory import make_sheet

from phenoface import cohort_tables, sampling, sex_inference
from phenoface.errors import PhenofaceError
from phenoface.summary import sex_inference_warnings

BINS = [0, 10, 20, 30, 40, 50, 60, 70]
AGE_SEX = ["age", "sex"]


def report_for(rows: dict[str, tuple[int, float, float]], pool: pd.DataFrame, min_accuracy: float = 0.9):
    """A sex-inference report from {bin: (n_confident, share_confident, accuracy_confident)}."""
    table = sex_inference.accuracy_by_bin([], [], np.zeros(0), BINS, 0.95)
    for label, (n_confident, share, accuracy) in rows.items():
        table.loc[
            table["age_bin"] == label, ["n", "n_confident", "share_confident", "accuracy_confident"]
        ] = [
            n_confident,
            n_confident,
            share,
            accuracy,
        ]
    table.loc[table["age_bin"] == "all", "share_confident"] = 0.8
    return sex_inference.decide_matching(table, pool, BINS, min_accuracy)


@pytest.fixture()
def cases() -> pd.DataFrame:
    """Eight adult cases (4 F, 4 M aged 40-49) and two children (0-9)."""
    return make_sheet("cases", [(45, "F")] * 4 + [(44, "M")] * 4 + [(5, "F"), (6, "M")], "case")


@pytest.fixture()
def pool() -> pd.DataFrame:
    """Forty pool rows without sex aged 40-49, ten children without sex, four labelled women aged 40-49."""
    return make_sheet("pool", [(42, "")] * 40 + [(4, "")] * 10 + [(47, "F")] * 4, "pool")


def predictions_for(pool: pd.DataFrame, p_female: list[float]) -> pd.DataFrame:
    """Predictions for the first rows of the pool without sex, in sheet order."""
    unknown = pool.loc[pool["sex"] == ""].head(len(p_female))
    return pd.DataFrame({"image_id": unknown["image_id"], "p_female": p_female})


def test_confidence_threshold_is_inclusive_on_both_sexes():
    """P(female) 0.95 and 0.05 are confident at 0.95; 0.949 and 0.051 are not."""
    confident = sex_inference.is_confident(np.array([0.95, 0.05, 0.949, 0.051, 0.5]), 0.95)
    assert confident.tolist() == [True, True, False, False, False]
    assert sex_inference.predicted_sex(np.array([0.95, 0.05, 0.5])).tolist() == ["F", "M", "F"]


def test_infer_pool_uses_only_confident_predictions(pool):
    """Confident rows get sex, stratum and a rank after the labelled rows; uncertain ones stay undrawable."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3)
    predictions = predictions_for(pool, [0.99, 0.02, 0.90, 0.3])
    inferred = sex_inference.infer_pool(ranked, BINS, 3, predictions, 0.95).set_index("image_id")
    first, second, third, fourth = predictions["image_id"]
    assert (inferred.loc[first, "sex"], inferred.loc[first, "stratum"]) == ("F", "F|40-49")
    assert (inferred.loc[second, "sex"], inferred.loc[second, "stratum"]) == ("M", "M|40-49")
    assert inferred.loc[first, "sex_source"] == "inferred"
    assert inferred.loc[first, "sex_probability"] == pytest.approx(0.99)
    assert inferred.loc[second, "sex_probability"] == pytest.approx(0.98)
    for uncertain in (third, fourth):
        assert inferred.loc[uncertain, "sex_uncertain"]
        assert inferred.loc[uncertain, "stratum"] == "" and inferred.loc[uncertain, "sex"] == ""
    # The four labelled women hold ranks 1-4 of F|40-49; the inferred woman comes after them.
    assert inferred.loc[first, "rank"] > 4
    assert inferred.loc[pool["image_id"].iloc[-1], "sex_source"] == "sheet"
    assert int(inferred["sex_uncertain"].sum()) == 2


def test_uncertain_rows_are_never_drawn(cases, pool):
    """With every prediction below the threshold, the women come from the labelled rows only."""
    adults = cases.loc[cases["age"] >= 40]
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3)
    unknown = pool.loc[(pool["sex"] == "") & (pool["age"] >= 40)]
    predictions = pd.DataFrame({"image_id": unknown["image_id"], "p_female": 0.9})
    inferred = sex_inference.infer_pool(ranked, BINS, 3, predictions, 0.95)
    qc = pd.concat([adults[["image_id", "sheet"]], pool[["image_id", "sheet"]]]).assign(status="ok")
    cohort, shortfall = sampling.draw_controls(adults, inferred, qc, BINS, AGE_SEX, allow_shortfall=True)
    controls = cohort.loc[cohort["group"] == "control"]
    assert set(controls["image_id"]) == set(pool.loc[pool["sex"] == "F", "image_id"])
    assert shortfall.set_index("stratum").loc["M|40-49", "short"] == 4


def test_decide_matching_falls_back_to_age_per_bin(pool):
    """Low accuracy or too few confident predictions -> age alone, only where the pool lacks sex."""
    report = report_for({"0-9": (50, 0.5, 0.7), "40-49": (50, 0.8, 0.98), "60-69": (5, 0.8, 1.0)}, pool)
    matched = report.set_index("age_bin")["matched_on"]
    assert matched["0-9"] == "age"  # accuracy 0.7 < 0.9
    assert matched["40-49"] == "age, sex"
    assert matched["20-29"] == "age, sex"  # no estimate, but no pool row without sex there either
    assert report.set_index("age_bin").loc["40-49", "pool_without_sex"] == 40
    assert sex_inference.age_only_bins(report) == ["0-9"]
    few = report_for({"40-49": (sex_inference.MIN_CONFIDENT - 1, 0.8, 1.0)}, pool)
    assert "40-49" in sex_inference.age_only_bins(few)


def test_age_only_bin_is_matched_on_age_with_a_warning(cases, pool, caplog):
    """Children (0-9, low accuracy) are drawn by age alone; the warning names the bin."""
    report = report_for({"0-9": (50, 0.5, 0.7), "40-49": (50, 0.8, 0.98)}, pool)
    age_only = sex_inference.age_only_bins(report)
    with caplog.at_level(logging.WARNING):
        warned = sex_inference.warn_age_only(report, ["0-9", "40-49"], 0.9)
    assert warned == ["0-9"]
    assert any(
        "0-9" in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records
    )
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3, age_only_bins=age_only)
    children = ranked["age"] < 10
    assert ranked.loc[children, "eligible"].all() and set(ranked.loc[children, "stratum"]) == {"0-9"}
    unknown = pool.loc[(pool["sex"] == "") & (pool["age"] >= 40)]
    predictions = pd.DataFrame({"image_id": unknown["image_id"], "p_female": [0.99, 0.01] * 20})
    inferred = sex_inference.infer_pool(ranked, BINS, 3, predictions, 0.95)
    qc = pd.concat([cases[["image_id", "sheet"]], pool[["image_id", "sheet"]]]).assign(status="ok")
    cohort, _ = sampling.draw_controls(cases, inferred, qc, BINS, AGE_SEX, age_only_bins=age_only)
    counts = cohort.groupby(["stratum", "group"]).size().unstack()
    assert counts.to_dict("index") == {
        "0-9": {"case": 2, "control": 2},
        "F|40-49": {"case": 4, "control": 4},
        "M|40-49": {"case": 4, "control": 4},
    }
    annotated = sex_inference.annotate_cohort(cohort, inferred)
    controls = annotated.loc[annotated["group"] == "control"].set_index("stratum")
    assert set(controls.loc["0-9", "sex_source"]) == {""}
    assert set(controls.loc["M|40-49", "sex_source"]) == {"inferred"}
    # Labelled women come first in F|40-49, so all four drawn women are from the sheet.
    assert set(controls.loc["F|40-49", "sex_source"]) == {"sheet"}
    assert annotated.loc[annotated["group"] == "case", "sex_source"].eq("sheet").all()


def test_flow_puts_every_pool_row_in_one_box(cases, pool):
    """With inferred and uncertain rows, the flow's leaves count every pool row exactly once."""
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3)
    unknown = pool.loc[(pool["sex"] == "") & (pool["age"] >= 40)].head(20)
    p_female = [0.99, 0.01, 0.7, 0.02] * 5
    inferred = sex_inference.infer_pool(
        ranked, BINS, 3, pd.DataFrame({"image_id": unknown["image_id"], "p_female": p_female}), 0.95
    )
    adults = cases.loc[cases["age"] >= 40]
    failed = {unknown["image_id"].iloc[0]: "no_face"}
    qc = pd.concat([adults[["image_id", "sheet"]], unknown[["image_id", "sheet"]]]).assign(status="ok")
    qc["status"] = [failed.get(i, s) for i, s in zip(qc["image_id"], qc["status"])]
    cohort, _ = sampling.draw_controls(adults, inferred, qc, BINS, AGE_SEX, allow_shortfall=True)
    flow = cohort_tables.flow_counts(adults, inferred, qc, cohort)
    cohort_tables.check_flow(flow, {"cases": len(adults), "pool": len(pool)})
    part = flow.loc[flow["sheet"] == "pool"].set_index("node")
    leaves = part.loc[~part.index.isin(set(part["parent"]))]
    assert int(leaves["n"].sum()) == len(pool)
    assert part.loc["pool.sex_uncertain", "n"] == 5  # the five 0.7 rows, all ok
    assert part.loc["pool.excluded_no_face", "n"] == 1
    assert part.loc["pool.ineligible_no_sex", "n"] == 0  # rows without sex wait for inference instead
    assert part.loc["pool.not_needed", "n"] == 34  # 20 + 10 rows without sex, 4 labelled, never preprocessed
    assert part.loc["pool.matched", "n"] == 8
    assert "sex inferred: 8" in part.loc["pool.matched", "label"]


def test_same_seed_same_cohort(cases, pool):
    """The draw with inferred sex depends only on the seed; another seed draws other controls."""
    adults = cases.loc[cases["age"] >= 40]
    unknown = pool.loc[(pool["sex"] == "") & (pool["age"] >= 40)]
    predictions = pd.DataFrame({"image_id": unknown["image_id"], "p_female": [0.99, 0.01] * 20})
    qc = pd.concat([adults[["image_id", "sheet"]], pool[["image_id", "sheet"]]]).assign(status="ok")

    def cohort(seed: int, table: pd.DataFrame) -> list[str]:
        ranked = sampling.rank_pool(table, BINS, AGE_SEX, seed)
        inferred = sex_inference.infer_pool(ranked, BINS, seed, predictions, 0.95)
        drawn, _ = sampling.draw_controls(adults, inferred, qc, BINS, AGE_SEX)
        return drawn.loc[drawn["group"] == "control", "image_id"].tolist()

    first = cohort(11, pool)
    assert cohort(11, pool.sample(frac=1.0, random_state=0)) == first
    assert cohort(12, pool) != first


def test_plan_unknown_candidates_covers_the_shortfall_after_expected_shares(cases, pool):
    """Round 1 takes ceil(oversample x short / expected share) rows per bin; a covered bin takes none."""
    adults = cases.loc[cases["age"] >= 40]
    report = report_for({"40-49": (50, 0.8, 0.98)}, pool)
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3)
    inferred = sex_inference.infer_pool(ranked, BINS, 3, pd.DataFrame(columns=["image_id", "p_female"]), 0.95)
    needed = sampling.needed_per_stratum(adults, BINS, AGE_SEX)
    empty = pd.DataFrame(columns=["image_id", "status"])
    labelled = sampling.plan_candidates(inferred, needed, empty, 1.5)
    assert len(labelled) == 4  # the four labelled women: ceil(4 x 1.5) = 6 wanted, 4 exist
    picks = sex_inference.plan_unknown_candidates(inferred, needed, empty, labelled, report, 1.5)
    # Women short 4 - 4/1.5; men short 4; expected confident share per sex 0.8 / 2 -> 1.5 x 4 / 0.4 = 15.
    assert len(picks) == 15
    assert set(picks["stratum"]) == {"?|40-49"}
    assert picks["rank"].tolist() == list(range(1, 16))
    # Once 4 confident men and 4 ok labelled women are in, nothing more is needed.
    men = inferred.loc[inferred["sex_rank"].between(1, 4), "image_id"]
    predictions = pd.DataFrame({"image_id": men, "p_female": 0.01})
    after = sex_inference.infer_pool(ranked, BINS, 3, predictions, 0.95)
    tried = pd.DataFrame({"image_id": list(men) + list(labelled["image_id"]), "status": "ok"})
    assert sex_inference.plan_unknown_candidates(after, needed, tried, labelled.iloc[0:0], report, 1.5).empty


def test_expected_shares_learn_from_earlier_rounds(pool):
    """After many rows of a bin came out mostly female, the female share estimate follows them."""
    report = report_for({"40-49": (50, 0.8, 0.98)}, pool)
    ranked = sampling.rank_pool(pool, BINS, AGE_SEX, seed=3)
    unknown = pool.loc[(pool["sex"] == "") & (pool["age"] >= 40)]
    predictions = pd.DataFrame({"image_id": unknown["image_id"], "p_female": [0.99] * 36 + [0.01] * 4})
    shares = sex_inference.expected_sex_shares(
        sex_inference.infer_pool(ranked, BINS, 3, predictions, 0.95), report, "40-49"
    )
    assert shares["F"] == pytest.approx((36 + 4 * 0.4) / 44)
    assert shares["M"] == pytest.approx((4 + 4 * 0.4) / 44)


def test_classifier_save_load_and_accuracy_by_bin(tmp_path):
    """The saved model reproduces scikit-learn's probabilities; CV accuracy is counted per bin."""
    rng = np.random.default_rng(0)
    sex = np.array(["F", "M"] * 60, dtype=object)
    descriptors = rng.normal(size=(120, 128)) + np.where(sex == "F", 1.0, -1.0)[:, None] * 0.3
    groups = np.arange(120) // 2  # two photos per person
    model = sex_inference.fit_sex_classifier(descriptors, sex, seed=0)
    model.save(tmp_path / "sex.npz")
    loaded = sex_inference.SexClassifier.load(tmp_path / "sex.npz")
    reference = sex_inference.sex_pipeline(0).fit(descriptors, (sex == "F").astype(int))
    assert np.allclose(loaded.p_female(descriptors), reference.predict_proba(descriptors)[:, 1])
    p_female = sex_inference.cross_validated_p_female(descriptors, sex, groups, seed=0)
    assert np.isfinite(p_female).all()
    ages = [25] * 100 + [5] * 20
    report = sex_inference.accuracy_by_bin(ages, sex, p_female, BINS, 0.95).set_index("age_bin")
    correct = sex_inference.predicted_sex(p_female) == sex
    assert report.loc["20-29", "n"] == 100 and report.loc["0-9", "n"] == 20
    assert report.loc["20-29", "accuracy"] == pytest.approx(correct[:100].mean())
    assert report.loc["all", "accuracy"] == pytest.approx(correct.mean())
    assert report.loc["30-39", "n"] == 0 and math.isnan(report.loc["30-39", "accuracy"])
    confident = sex_inference.is_confident(p_female, 0.95)
    assert report.loc["all", "n_confident"] == int(confident.sum())


def test_training_set_needs_two_persons_of_each_sex():
    """One woman (even photographed twice) is too few to train and check on."""
    with pytest.raises(PhenofaceError, match="female"):
        sex_inference.check_training_set(["F", "F", "M", "M"], np.array([0, 0, 1, 2]), "cases sheet")


def test_report_summary_warns_for_age_only_bins_with_cases(cases, pool):
    """The report's summary names an age-only bin holding cases, not one without cases."""
    report = report_for({"0-9": (50, 0.5, 0.7), "40-49": (50, 0.8, 0.5)}, pool)
    assert sex_inference.age_only_bins(report) == ["0-9", "40-49"]
    children = cases.loc[cases["age"] < 10].assign(group="case")
    found = sex_inference_warnings(report, cohort_tables.table1(children, BINS))
    assert [w.message.split(" was")[0] for w in found] == ["Age bin 0-9"]
    assert "accuracy 0.70" in found[0].message and "sex_reference" in found[0].action
