"""Rule sample_matched_controls: draw age/sex-matched controls; write the cohort, Table 1, balance and flow.

With sex inferred from the face (inputs ``sex_model``, ``sex_report``,
``pool_features`` non-empty), pool rows without sex get one first.
"""

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from phenoface import cohort_tables, io, plots, sampling, sex_inference
from phenoface.qc import read_qc
from phenoface.sheets import read_sheet

LOGGER = logging.getLogger("sample_matched_controls")


def run(inputs: Mapping[str, Any], outputs: Mapping[str, Any], params: Any) -> pd.DataFrame:
    """Draw the controls and write every output; return the cohort."""
    age_bins, match_on = params.age_bins, params.match_on
    qc = read_qc(inputs["qc"])
    cases = read_sheet(inputs["cases"], "cases", check_files=False)
    pool = read_sheet(inputs["pool"], "pool", check_files=False)
    infer = bool(inputs.get("sex_model"))
    report = sex_inference.read_report(inputs["sex_report"]) if infer else None
    age_only = sex_inference.age_only_bins(report) if infer else []
    ranked = sampling.rank_pool(pool, age_bins, match_on, params.seed, age_only)
    if infer:
        case_bins = sampling.label_ages(cases["age"], age_bins)
        sex_inference.warn_age_only(report, list(case_bins), float(params.sex_min_accuracy))
        predictions = sex_inference.predict_pool(inputs["sex_model"], list(inputs["pool_features"]))
        ranked = sex_inference.infer_pool(
            ranked, age_bins, params.seed, predictions, float(params.sex_confidence)
        )
    cohort, shortfall = sampling.draw_controls(
        cases,
        ranked,
        qc,
        age_bins,
        match_on,
        ratio=params.ratio,
        allow_shortfall=params.allow_shortfall,
        age_only_bins=age_only,
    )
    if infer:
        cohort = sex_inference.annotate_cohort(cohort, ranked)
    table = cohort_tables.table1(cohort, age_bins)
    if infer:
        counts = sex_inference.counts_by_bin(cohort, ranked, qc, age_bins)
        table = table.merge(counts, on="age_bin", how="left").fillna({name: 0 for name in counts.columns[1:]})
        table[counts.columns[1:]] = table[counts.columns[1:]].astype(int)
    balance = cohort_tables.balance(cohort)
    flow = cohort_tables.flow_counts(cases, ranked, qc, cohort)
    cohort_tables.check_flow(flow, {"cases": len(cases), "pool": len(pool)})

    io.write_table(outputs["cohort"], cohort)
    io.write_table(outputs["table1"], table)
    io.write_table(outputs["balance"], balance)
    io.write_table(outputs["shortfall"], shortfall)
    plots.plot_table1(table, outputs["table1_png"])
    plots.plot_flow(flow, outputs["flow_png"], outputs["flow_svg"])
    for row in balance.itertuples(index=False):
        LOGGER.info("balance %s = %.4g (p = %.4g) %s", row.measure, row.value, row.p_value, row.note)
    return cohort


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
