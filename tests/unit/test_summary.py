"""The study summary: warnings of every stage with advice, headline with intervals, no faces."""

from __future__ import annotations

import pandas as pd
import pytest

from phenoface.report_tables import qc_counts
from phenoface.summary import (
    StageWarning,
    advice_for,
    baselines_table,
    collect_warnings,
    iter_warnings,
    render_landing,
    render_summary,
    sampling_warnings,
    stage_of,
    study_line,
)

METRICS = {
    "auc": 0.8123,
    "auc_ci_low": 0.7012,
    "auc_ci_high": 0.9234,
    "accuracy": 0.75,
    "accuracy_ci_low": 0.6,
    "accuracy_ci_high": 0.86,
    "sensitivity": 0.7,
    "sensitivity_ci_low": 0.5,
    "sensitivity_ci_high": 0.85,
    "specificity": 0.8,
    "specificity_ci_low": 0.6,
    "specificity_ci_high": 0.9,
    "n_test": 40,
    "n_test_case": 20,
    "n_test_control": 20,
    "n_train": 40,
    "threshold": 0.5,
    "confidence": 0.95,
    "baselines": {
        "age_sex": {"auc": 0.52, "auc_ci_low": 0.4, "auc_ci_high": 0.64, "n_test": 40, "status": "ok"},
        "image_statistics": {
            "auc": 0.97,
            "auc_ci_low": 0.93,
            "auc_ci_high": 1.0,
            "n_test": 40,
            "status": "ok",
        },
    },
    "repeats": {"n": 3, "auc_mean": 0.8, "auc_sd": 0.021, "auc_min": 0.78, "auc_max": 0.83},
    "external": {"clinic_b": {"n": 24, "auc": 0.66, "auc_ci_low": 0.44, "auc_ci_high": 0.88}},
    "warnings": ["Image-statistics baseline reaches AUC 0.97 (95% CI 0.93-1.00), above 0.70: photos differ."],
}
BALANCE = pd.DataFrame(
    {
        "measure": ["n_cases", "n_controls", "smd_age", "smd_sex_female", "chi2_group_by_stratum"],
        "value": [40.0, 40.0, 0.02, 0.0, 1.2],
        "p_value": [None, None, None, None, 0.9],
        "note": ["", "", "", "female: cases 0.5, controls 0.5", ""],
    }
)
SHORTFALL = pd.DataFrame(
    columns=["stratum", "cases", "needed", "pool_available", "pool_tried", "pool_ok", "drawn", "short"]
)
QC = pd.DataFrame(
    {
        "sheet": ["cases"] * 3 + ["pool"] * 4,
        "status": ["ok", "ok", "no_face", "ok", "ok", "not_needed", "unreadable"],
    }
)
TABLE1 = pd.DataFrame({"age_bin": ["40-49", "Total"], "case F n": [40, 40], "control F n": [40, 40]})
CONFIG = {
    "cases": "cases.csv",
    "reference_pool": "pool.csv",
    "seed": 7,
    "sampling": {"match_on": ["age", "sex"], "age_bins": [0, 10, 20], "ratio": 1},
}


def test_warnings_are_found_at_any_depth_as_strings_or_objects() -> None:
    """Top-level, nested and object-style warnings all come out, in order; other keys are ignored."""
    record = {
        "warnings": ["top"],
        "external": {"a": {"warnings": [{"message": "nested object"}]}},
        "notes": ["not a warning"],
        "subsets": [{"warnings": ["in a list"]}],
    }
    assert list(iter_warnings(record)) == ["top", "nested object", "in a list"]


def test_stage_comes_from_the_results_folder_and_unknown_stages_keep_their_name() -> None:
    """metrics.json is evaluation, sanity.json explanation, a new stage's folder is its name."""
    assert stage_of("results/evaluation/metrics.json") == "evaluation"
    assert stage_of("/x/results/explain/sanity.json") == "explanation (Grad-CAM)"
    assert stage_of("results/faces/morphometry.json") == "morphometry"
    assert stage_of("results/sex_inference/sex.json") == "sex inference"


def test_each_warning_gets_specific_advice_or_its_stage_pointer() -> None:
    """Known sentences get a specific action; an unknown one points at its stage's record."""
    shortcut = advice_for("evaluation", METRICS["warnings"][0])
    assert "photographed" in shortcut
    overfit = advice_for(
        "evaluation", "Training-half AUC 0.99 exceeds the test AUC 0.70 by more than 0.10: the head overfits."
    )
    assert "training.epochs" in overfit
    assert (
        advice_for("evaluation", "something new")
        == "See results/evaluation/metrics.json and the README's Evaluation section."
    )
    assert "results/" in advice_for("brand new stage", "something new")


def test_collect_warnings_keeps_stage_source_and_message() -> None:
    """Warnings of two records come back with their stage and file, in file order."""
    found = collect_warnings(
        {
            "results/evaluation/metrics.json": METRICS,
            "results/explain/sanity.json": {"warnings": ["maps odd"]},
        }
    )
    assert [(w.stage, w.source) for w in found] == [
        ("evaluation", "results/evaluation/metrics.json"),
        ("explanation (Grad-CAM)", "results/explain/sanity.json"),
    ]
    assert found[0].message == METRICS["warnings"][0]


def test_sampling_warnings_flag_imbalance_and_short_strata_only() -> None:
    """An 'imbalanced' SMD, a significant chi-square and a short stratum each give a warning; balance gives none."""
    assert sampling_warnings(BALANCE, SHORTFALL) == []
    imbalanced = BALANCE.copy()
    imbalanced.loc[2, ["value", "note"]] = [0.8, "imbalanced (|SMD| >= 0.1)"]
    imbalanced.loc[4, "p_value"] = 0.001
    short = pd.DataFrame([{"stratum": "F|40-49", "cases": 5, "needed": 5, "pool_available": 3, "pool_tried": 3,
                           "pool_ok": 2, "drawn": 2, "short": 3}])  # fmt: skip
    found = sampling_warnings(imbalanced, short)
    assert len(found) == 3 and {w.stage for w in found} == {"sampling"}
    assert "smd_age = 0.80" in found[0].message
    assert "p = 0.001" in found[1].message
    assert "F|40-49 (2 of 5)" in found[2].message and "pool" in found[2].action


def test_qc_counts_tabulate_statuses_per_sheet_with_totals() -> None:
    """Counts per sheet and status add up per row and in the 'all' row."""
    counts = qc_counts(QC).set_index("sheet")
    assert counts.loc["cases", "ok"] == 2 and counts.loc["cases", "no_face"] == 1
    assert counts.loc["pool", "total"] == 4 and counts.loc["all", "total"] == 7
    assert list(counts.columns[:2]) == ["ok", "unreadable"]  # known statuses in their order


def test_baselines_sit_beside_the_model() -> None:
    """The model is the first row, then each baseline with its AUC and CI."""
    table = baselines_table(METRICS)
    assert list(table["model"]) == ["trained classifier", "age sex", "image statistics"]
    assert table.loc[2, "AUC"] == pytest.approx(0.97) and table.loc[2, "CI low"] == pytest.approx(0.93)


def test_summary_page_shows_headline_warnings_and_tables_without_images() -> None:
    """AUC with its CI, repeats, external set, each warning with advice, Table 1 and QC; no image at all."""
    warnings = collect_warnings({"results/evaluation/metrics.json": METRICS})
    html = render_summary(CONFIG, METRICS, warnings, TABLE1, BALANCE, QC)
    assert "Held-out AUC 0.81 (95% CI 0.70–0.92) on 40 test images; 1 warning(s)." in html
    assert "3 repeats: AUC mean 0.80, SD 0.021, range 0.78–0.83" in html
    assert "External set clinic_b" in html and "0.66 (95% CI 0.44–0.88)" in html
    assert "Image-statistics baseline reaches AUC 0.97" in html and "What to do:" in html
    assert "1 warning(s)" in html
    assert "40 cases (of 3 rows in cases.csv) against 40 controls drawn 1:1" in html
    assert "matched on age and sex (age bins 0-9, 10-19 and 20+; seed 7)" in html
    assert "<td>0.97</td><td>0.93</td><td>1.00</td>" in html  # baselines at two decimals
    assert "<img" not in html and "data:image" not in html and "url(" not in html


def test_a_run_without_warnings_says_so() -> None:
    """No warning anywhere: the page states it instead of leaving the section empty."""
    html = render_summary(CONFIG, {**METRICS, "warnings": []}, [], TABLE1, BALANCE, QC)
    assert "No warnings" in html and "warning(s)" not in html and "test images; no warnings." in html


def test_warning_text_is_escaped() -> None:
    """A warning with markup characters is shown as text, never as HTML."""
    warning = StageWarning("evaluation", "x.json", "P < 0.05 & <b>bold</b>", "act")
    html = render_summary(CONFIG, METRICS, [warning], TABLE1, BALANCE, QC)
    assert "P &lt; 0.05 &amp; &lt;b&gt;bold&lt;/b&gt;" in html


def test_landing_fragment_is_short_and_counts_warnings_by_stage() -> None:
    """The landing fragment has the headline, the baselines and the warnings counted by stage; no page shell."""
    warnings = collect_warnings(
        {"results/evaluation/metrics.json": METRICS, "results/explain/sanity.json": {"warnings": ["a", "b"]}}
    )
    html = render_landing(METRICS, warnings, study_line(CONFIG, BALANCE, QC))
    assert html.startswith(
        "<p><b>Held-out AUC 0.81 (95% CI 0.70–0.92) on 40 test images; 3 warning(s).</b></p>"
    )
    assert "image statistics 0.97 (95% CI 0.93–1.00)" in html
    assert "(1 from evaluation, 2 from explanation (Grad-CAM))" in html
    assert "<style" not in html and "<html" not in html and "<img" not in html
    assert "No warnings" in render_landing(METRICS, [], study_line(CONFIG, BALANCE, QC))
