"""Result tables as report pages: each CSV rendered as an HTML table with its caption.

Snakemake's HTML report offers a CSV only as a download; a reader should see
the table. Each page shows the table (long ones cut, with a note) and names
the CSV that holds it whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from phenoface.qc import STATUSES as QC_STATUSES
from phenoface.report_html import escape, html_table, page

#: Rows shown on a table page; the CSV holds the rest.
MAX_ROWS = 300

#: Title and one-line caption of each table, by the name the rule gives its output.
TABLES: dict[str, tuple[str, str]] = {
    "qc_status": (
        "Quality control: images by sheet and status",
        "Every sheet row ends in exactly one status (README, Statuses); per-image rows are in the TSV.",
    ),
    "table1": (
        "Table 1: age by sex",
        "Cases and matched controls per age bin and sex, n (%), as in the paper's Table 1.",
    ),
    "balance": (
        "Balance after matching",
        "Standardized mean differences of age and sex (|SMD| < 0.1 is conventionally balanced) and a "
        "chi-square test of group against stratum.",
    ),
    "baselines": (
        "Baselines on the test split",
        "AUC with DeLong CI of the descriptor, matched-variables, image-statistics and reference-sheet "
        "baselines; compare with the model's AUC on the summary page.",
    ),
    "subgroups": (
        "Metrics by subgroup",
        "AUC (DeLong) and threshold metrics (Wilson CIs) of the held-out set by sex and by age bin; small "
        "subgroups are noted, not estimated.",
    ),
    "region_tests": (
        "Grad-CAM region tests",
        "Share of map mass per facial region for cases and controls, enrichment over the region's area, "
        "Mann-Whitney p and Benjamini-Hochberg q, for both comparisons.",
    ),
    "landmark_tests": (
        "Landmark shift tests",
        "Per subset and landmark: Procrustes shift of the case mean from the control mean, within-stratum "
        "permutation p and Benjamini-Hochberg q.",
    ),
    "shape_tests": (
        "Facial adiposity index tests",
        "FWHR, CJWR and PAR (after Coetzee et al. 2009): group difference with CI, Cohen's d, permutation "
        "and age/sex-adjusted p-values.",
    ),
}


def qc_counts(qc: pd.DataFrame) -> pd.DataFrame:
    """Images per sheet and QC status (known statuses first), with totals."""
    counts = pd.crosstab(qc["sheet"], qc["status"])
    known = [status for status in QC_STATUSES if status in counts.columns]
    counts = counts[known + sorted(set(counts.columns) - set(known))]
    counts["total"] = counts.sum(axis=1)
    counts.loc["all"] = counts.sum(axis=0)
    return counts.reset_index().rename_axis(columns=None)


#: Tables shown as a summary of their source rather than row by row.
SUMMARISED = {"qc_status": qc_counts}


def render_table_page(name: str, table: pd.DataFrame, source: str | Path) -> str:
    """The page of table ``name`` (a key of ``TABLES``) read from ``source``."""
    title, caption = TABLES[name]
    if name in SUMMARISED:
        table = SUMMARISED[name](table)
    body = (
        f'<p class="caption">{escape(caption)} Source: <code>{escape(source)}</code> '
        f"({len(table)} rows).</p>{html_table(table, max_rows=MAX_ROWS)}"
    )
    return page(title, body)


def read_result_table(path: str | Path) -> pd.DataFrame:
    """A CSV or TSV result table, empty strings kept as empty (not NaN)."""
    sep = "\t" if str(path).endswith(".tsv") else ","
    return pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""])
