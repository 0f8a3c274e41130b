"""The study summary: the first page of the report.

Gathers, from files earlier rules wrote, what a reader needs before any
figure: the study in one line, the headline metrics with their intervals,
repeats, external sets, every baseline beside the model, every warning of
every stage with what to do about it, Table 1, the balance table and the QC
counts. Warnings are collected generically: any ``warnings`` list anywhere in
a stage's JSON record is shown, so a new stage's warnings appear without
changes here. No individual face enters this page.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from phenoface.methods import age_bins_text
from phenoface.report_html import bullet_list, escape, html_table, key_value_table, page
from phenoface.report_tables import qc_counts
from phenoface.sex_inference import MIN_CONFIDENT, age_only_bins

#: Display name of a stage, by its folder under ``results/``.
STAGE_NAMES = {
    "qc": "quality control",
    "cohort": "sampling",
    "sampling": "sampling",
    "evaluation": "evaluation",
    "explain": "explanation (Grad-CAM)",
    "faces": "morphometry",
    "sex": "sex inference",
}

#: What to do about a warning, by a pattern of its sentence (first match wins).
ADVICE: tuple[tuple[str, str], ...] = (
    (
        r"image-statistics baseline",
        "Check how each group was photographed (source, camera, resolution, compression, background). "
        "Draw cases and controls from comparable sources, or treat the model's AUC as a difference between "
        "photo sources, not faces.",
    ),
    (
        r"reference sheet",
        "The model recognises where the photos come from. Use controls from the cases' source, or show the "
        "result on an external set from another source before reading it as a phenotype.",
    ),
    (
        r"age\+sex baseline|age/sex imbalance|imbalanced",
        "Read the balance table and Table 1; match on sex, narrow sampling.age_bins or enlarge the pool so "
        "the strata fill, and report age/sex-adjusted results.",
    ),
    (
        r"test set holds only",
        "Quote the interval, not the point estimate; add cases, and look at the repeats' spread.",
    ),
    (
        r"overfits",
        "Reduce training.epochs, raise training.l2 or add training data; trust the held-out AUC, not the "
        "training one.",
    ),
    (
        r"descriptor .* does better",
        "The trained head adds nothing over a linear model on the descriptor: report the simpler model, or "
        "revisit the training settings.",
    ),
    (
        r"repeated splits",
        "Report the repeats' mean, SD and range instead of one split's AUC; more data narrows them.",
    ),
    (
        r"^subgroup ",
        "Do not interpret AUCs of subgroups this small.",
    ),
    (
        r"outside the face",
        "Look at the masks (contact sheet with report.show_faces: true) and the image-statistics baseline; "
        "a mask that leaves hair or background in gives the model a shortcut.",
    ),
    (
        r"random one|shuffled labels",
        "Do not read the Grad-CAM maps as what separates the groups; report the sanity checks with them.",
    ),
    (
        r"no evidence for their own group",
        "The mean maps and region shares cover the remaining images only; say so when quoting them.",
    ),
    (
        r"complementary pattern",
        "Report the 'case evidence, both groups' comparison; the own-class pattern alone is not evidence "
        "that the faces differ.",
    ),
    (
        r"usable explained images",
        "Explain more held-out images (explain.max_images) or treat the region tests as descriptive.",
    ),
    (
        r"min_group_size",
        "Those averages are blanked and imprecise; add faces to the group before comparing its average.",
    ),
    (
        r"no landmark shift survives",
        "No landmark differs after multiple-testing correction: a shift seen in the figure is compatible "
        "with chance.",
    ),
    (
        r"not tested",
        "This subset was not tested; it needs faces of both groups.",
    ),
    (
        r"matched on age alone",
        "Sex inferred from faces of this age was not accurate enough: the controls' sex there is unknown. "
        "Name a labelled sheet with faces of this age in sampling.sex_reference, or read the bin as age-matched only.",
    ),
    (
        r"\bshortfall\b|could not fill",
        "Fewer controls than requested in these strata: enlarge the reference pool for them, widen "
        "sampling.age_bins, or lower sampling.ratio.",
    ),
)

#: Fallback advice per stage when no pattern matches.
STAGE_ADVICE = {
    "evaluation": "See results/evaluation/metrics.json and the README's Evaluation section.",
    "explanation (Grad-CAM)": "See results/explain/sanity.json and the README's Explanation section.",
    "morphometry": "See results/faces/morphometry.json and the README's morphometry section.",
    "sampling": "See results/cohort/balance.csv and shortfall.csv and the README's Control sampling section.",
}

#: A baseline's meaning, shown beside its AUC.
BASELINE_NOTES = {
    "descriptor": "logistic regression on the 128-d dlib descriptor",
    "age_sex": "matched variables only: near 0.5 when matching worked",
    "image_statistics": "image statistics only: high means the photos differ, not the faces",
    "reference_sheet": "second healthy sheet vs pool controls: high means the model sees the source",
}


NO_WARNINGS = "No warnings: no stage of this run raised one."


@dataclass(frozen=True)
class StageWarning:
    """One warning sentence, the stage it comes from, its file and what to do."""

    stage: str
    source: str
    message: str
    action: str


def stage_of(path: str | Path) -> str:
    """Display name of the stage that wrote ``path`` (its folder under ``results/``)."""
    parts = Path(path).parts
    folder = parts[parts.index("results") + 1] if "results" in parts[:-1] else Path(path).parent.name
    return STAGE_NAMES.get(folder, folder.replace("_", " "))


def iter_warnings(record: Any) -> Iterator[str]:
    """Every sentence in any ``warnings`` list at any depth of a JSON record.

    A list item may be a string or an object with a ``message`` (or ``warning``)
    field; anything else is shown as its text.
    """
    if isinstance(record, Mapping):
        for key, value in record.items():
            if key == "warnings" and isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping):
                        yield str(item.get("message", item.get("warning", item)))
                    else:
                        yield str(item)
            else:
                yield from iter_warnings(value)
    elif isinstance(record, list):
        for item in record:
            yield from iter_warnings(item)


def advice_for(stage: str, message: str) -> str:
    """What to do about ``message`` (a pattern match, else the stage's pointer)."""
    for pattern, action in ADVICE:
        if re.search(pattern, message, flags=re.IGNORECASE):
            return action
    return STAGE_ADVICE.get(stage, "See the stage's JSON record in results/ and its README section.")


def collect_warnings(records: Mapping[str, Any]) -> list[StageWarning]:
    """Warnings of every JSON record, ``{path: parsed JSON}``, in the order given."""
    found = []
    for path, record in records.items():
        stage = stage_of(path)
        for message in iter_warnings(record):
            found.append(StageWarning(stage, str(path), message, advice_for(stage, message)))
    return found


def sampling_warnings(
    balance: pd.DataFrame, shortfall: pd.DataFrame, source: str = "results/cohort"
) -> list[StageWarning]:
    """Warnings the sampling stage's tables carry: imbalanced measures and short strata.

    ``balance`` is ``balance.csv`` (``measure``, ``value``, ``p_value``, ``note``);
    a note starting with "imbalanced" or a chi-square p below 0.05 is a warning.
    ``shortfall`` is ``shortfall.csv``: every stratum with ``short > 0``.
    """
    found = []
    for row in balance.to_dict("records"):
        note = str(row.get("note") or "")
        p_value = _number(row.get("p_value"))
        if note.startswith("imbalanced"):
            message = (
                f"Residual imbalance after matching: {row['measure']} = {_number(row['value']):.2f} ({note})."
            )
        elif math.isfinite(p_value) and p_value < 0.05:
            message = f"Residual imbalance after matching: {row['measure']} p = {p_value:.3g}."
        else:
            continue
        found.append(
            StageWarning("sampling", f"{source}/balance.csv", message, advice_for("sampling", message))
        )
    if len(shortfall) and "short" in shortfall.columns:
        short = shortfall[pd.to_numeric(shortfall["short"], errors="coerce").fillna(0) > 0]
        if len(short):
            strata = ", ".join(
                f"{row['stratum']} ({int(row['drawn'])} of {int(row['needed'])})"
                for row in short.to_dict("records")
            )
            message = (
                f"The pool could not fill {len(short)} stratum/strata; controls drawn of needed: {strata} "
                "(shortfall)."
            )
            found.append(
                StageWarning("sampling", f"{source}/shortfall.csv", message, advice_for("sampling", message))
            )
    return found


def sex_inference_warnings(
    report: pd.DataFrame, table1: pd.DataFrame, source: str = "results/cohort"
) -> list[StageWarning]:
    """One warning per age bin with cases that was matched on age alone (sex_inference.csv).

    ``report`` is ``sex_inference.csv``; ``table1`` is ``table1.csv``, whose
    ``case <sex> n`` columns say which bins hold cases.
    """
    case_columns = [
        column for column in table1.columns if column.startswith("case ") and column.endswith(" n")
    ]
    cases = table1.set_index("age_bin")[case_columns].sum(axis=1)
    indexed = report.set_index("age_bin")
    found = []
    for label in age_only_bins(report):
        if cases.get(label, 0) <= 0:
            continue
        accuracy = _number(indexed.loc[label, "accuracy_confident"])
        estimate = "no estimate" if math.isnan(accuracy) else f"accuracy {accuracy:.2f}"
        message = (
            f"Age bin {label} was matched on age alone, not sex: sex inferred from the face reached {estimate} "
            f"on {int(indexed.loc[label, 'n_confident'])} confident prediction(s) of "
            f"{int(indexed.loc[label, 'n'])} labelled face(s) there (needs sampling.sex_min_accuracy on at least "
            f"{MIN_CONFIDENT})."
        )
        found.append(
            StageWarning("sampling", f"{source}/sex_inference.csv", message, advice_for("sampling", message))
        )
    return found


def _number(value: Any) -> float:
    """``value`` as a float, NaN when missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def interval(value: Any, low: Any, high: Any, confidence: float = 0.95, digits: int = 2) -> str:
    """``0.81 (95% CI 0.72–0.90)``; "not estimable" when the value is missing."""
    value, low, high = _number(value), _number(low), _number(high)
    if not math.isfinite(value):
        return "not estimable"
    text = f"{value:.{digits}f}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" ({confidence:.0%} CI {low:.{digits}f}–{high:.{digits}f})"
    return text


def headline_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label/value pairs of the held-out results (escaped HTML)."""
    confidence = float(metrics.get("confidence", 0.95))
    rows = [
        (
            "AUC (DeLong)",
            interval(metrics.get("auc"), metrics.get("auc_ci_low"), metrics.get("auc_ci_high"), confidence),
        )
    ]
    threshold = metrics.get("threshold", 0.5)
    for key, label in (
        ("accuracy", "Accuracy"),
        ("sensitivity", "Sensitivity"),
        ("specificity", "Specificity"),
    ):
        rows.append(
            (
                f"{label} at {threshold} (Wilson)",
                interval(
                    metrics.get(key), metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high"), confidence
                ),
            )
        )
    rows.append(
        (
            "Test set",
            f"{metrics.get('n_test', '?')} images ({metrics.get('n_test_case', '?')} cases, "
            f"{metrics.get('n_test_control', '?')} controls); training set {metrics.get('n_train', '?')}",
        )
    )
    repeats = metrics.get("repeats")
    if repeats and repeats.get("n"):
        sd = _number(repeats.get("auc_sd"))
        rows.append(
            (
                "Repeated splits",
                f"{repeats['n']} repeats: AUC mean {_number(repeats.get('auc_mean')):.2f}"
                + (f", SD {sd:.3f}" if math.isfinite(sd) else "")
                + f", range {_number(repeats.get('auc_min')):.2f}–{_number(repeats.get('auc_max')):.2f}",
            )
        )
    else:
        rows.append(("Repeated splits", "not run (evaluation.repeats: 0)"))
    for name, scored in (metrics.get("external") or {}).items():
        rows.append(
            (
                f"External set {name}",
                f"{scored.get('n', '?')} images: AUC "
                + interval(
                    scored.get("auc"), scored.get("auc_ci_low"), scored.get("auc_ci_high"), confidence
                ),
            )
        )
    return [(escape(label), escape(value)) for label, value in rows]


def baselines_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The model and every baseline on the same test split: AUC, CI, n, status, meaning."""
    rows = [
        {
            "model": "trained classifier",
            "AUC": _number(metrics.get("auc")),
            "CI low": _number(metrics.get("auc_ci_low")),
            "CI high": _number(metrics.get("auc_ci_high")),
            "n test": metrics.get("n_test"),
            "status": "ok",
            "what it shows": "the model itself",
        }
    ]
    for name, baseline in (metrics.get("baselines") or {}).items():
        rows.append(
            {
                "model": name.replace("_", " "),
                "AUC": _number(baseline.get("auc")),
                "CI low": _number(baseline.get("auc_ci_low")),
                "CI high": _number(baseline.get("auc_ci_high")),
                "n test": baseline.get("n_test"),
                "status": baseline.get("status", ""),
                "what it shows": BASELINE_NOTES.get(name, ""),
            }
        )
    return pd.DataFrame(rows)


def study_line(config: Mapping[str, Any], balance: pd.DataFrame, qc: pd.DataFrame) -> str:
    """The study in one sentence: cases, controls, matching, pool."""
    measures = dict(zip(balance["measure"], balance["value"])) if len(balance) else {}
    n_cases, n_controls = _number(measures.get("n_cases")), _number(measures.get("n_controls"))
    sampling = config.get("sampling", {})
    match_on = " and ".join(sampling.get("match_on", ["age", "sex"]))
    bins = sampling.get("age_bins", [])
    pool_rows = int((qc["sheet"] == "pool").sum()) if "sheet" in qc.columns else 0
    case_rows = int((qc["sheet"] == "cases").sum()) if "sheet" in qc.columns else 0
    cases = f"{n_cases:.0f}" if math.isfinite(n_cases) else "?"
    controls = f"{n_controls:.0f}" if math.isfinite(n_controls) else "?"
    return (
        f"{cases} cases (of {case_rows} rows in {config.get('cases', '?')}) against {controls} controls drawn "
        f"{sampling.get('ratio', 1)}:1 from the reference pool {config.get('reference_pool', '?')} "
        f"({pool_rows} rows), matched on {match_on} (age bins {age_bins_text(bins)}; seed {config.get('seed', '?')})."
    )


def headline_sentence(metrics: Mapping[str, Any], n_warnings: int) -> str:
    """The result in one sentence: AUC with CI, test size and the warning count."""
    confidence = float(metrics.get("confidence", 0.95))
    auc = interval(metrics.get("auc"), metrics.get("auc_ci_low"), metrics.get("auc_ci_high"), confidence)
    warned = f"{n_warnings} warning(s)" if n_warnings else "no warnings"
    return f"Held-out AUC {auc} on {metrics.get('n_test', '?')} test images; {warned}."


def warnings_html(warnings: Sequence[StageWarning]) -> str:
    """The warning list, or an explicit statement that there is none."""
    if not warnings:
        return f'<div class="ok"><p>{NO_WARNINGS}</p></div>'
    items = [
        f'<span class="stage">{escape(w.stage)}</span> <span class="source">({escape(w.source)})</span><br>'
        f"{escape(w.message[:1].upper() + w.message[1:])}<br>"
        f'<span class="todo"><b>What to do:</b> {escape(w.action)}</span>'
        for w in warnings
    ]
    return f'<div class="warnings"><p><b>{len(warnings)} warning(s).</b></p>{bullet_list(items)}</div>'


def render_landing(metrics: Mapping[str, Any], warnings: Sequence[StageWarning], study: str) -> str:
    """The summary's core as an HTML fragment for the report's landing page (``study``: :func:`study_line`).

    The report's own styles apply (no ``<style>``, no document shell). It
    stays short, because the report centres its landing column and clips
    what overflows: the headline, the study line, each baseline's AUC and the
    warnings counted by stage; the warnings themselves are on the summary page.
    """
    confidence = float(metrics.get("confidence", 0.95))
    baselines = "; ".join(
        f"{name.replace('_', ' ')} "
        + interval(row.get("auc"), row.get("auc_ci_low"), row.get("auc_ci_high"), confidence)
        for name, row in (metrics.get("baselines") or {}).items()
    )
    parts = [
        f"<p><b>{escape(headline_sentence(metrics, len(warnings)))}</b></p>",
        f"<p>{escape(study)}</p>",
        f"<p>Baselines on the same test split: {escape(baselines) or 'none'}.</p>",
    ]
    if warnings:
        by_stage = Counter(w.stage for w in warnings)
        stages = ", ".join(f"{n} from {stage}" for stage, n in by_stage.items())
        parts.append(
            f"<p><b>{len(warnings)} warning(s)</b> ({escape(stages)}): read them, each with what to do, on the "
            "summary page before the AUC.</p>"
        )
    else:
        parts.append(f"<p>{NO_WARNINGS}</p>")
    return "\n".join(parts) + "\n"


def render_summary(
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    warnings: Sequence[StageWarning],
    table1: pd.DataFrame,
    balance: pd.DataFrame,
    qc: pd.DataFrame,
) -> str:
    """The summary page as one self-contained HTML document (no face images)."""
    sections = [
        f'<p class="lead">{escape(study_line(config, balance, qc))}</p>',
        f'<p class="metric">{escape(headline_sentence(metrics, len(warnings)))}</p>',
        '<p class="caption">A research result, not a diagnostic test: read the warnings and the baselines '
        "before the AUC. Methods text and the model card are further down the report's menu.</p>",
        f"<h2>Warnings</h2>{warnings_html(warnings)}",
        f"<h2>Held-out results</h2>{key_value_table(headline_rows(metrics))}",
        "<h2>Model and baselines on the same test split</h2>"
        '<p class="caption">An AUC of the model means little without these: the matched variables should '
        "give about 0.5 and the image statistics should not separate the groups.</p>"
        f"{html_table(baselines_table(metrics), decimals=2)}",
        f"<h2>Table 1: age by sex, cases and matched controls</h2>{html_table(table1)}",
        "<h2>Balance after matching</h2>"
        '<p class="caption">Standardized mean differences (|SMD| &lt; 0.1 is conventionally balanced) and a '
        "chi-square test of group against stratum.</p>"
        f"{html_table(balance)}",
        f"<h2>Quality control: images by sheet and status</h2>{html_table(qc_counts(qc))}",
    ]
    return page("Study summary", "\n".join(sections))
