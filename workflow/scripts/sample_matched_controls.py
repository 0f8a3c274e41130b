"""Draw age/sex-matched controls and write the cohort, Table 1, balance and flow.

Snakemake entry script of rule ``sample_matched_controls``. Inputs: ``qc``
(results/qc/preprocess.tsv), ``cases`` and ``pool`` (the sample sheets);
with sex inferred from the face also ``sex_model``, ``sex_report`` and
``pool_features`` (empty otherwise). Params: ``age_bins``, ``match_on``,
``ratio``, ``allow_shortfall``, ``seed``, ``sex_confidence``,
``sex_min_accuracy``. Outputs: ``cohort``, ``table1``, ``table1_png``,
``balance``, ``flow_png``, ``flow_svg``, ``shortfall``. Log: ``log[0]``.
"""


import logging
from pathlib import Path

import pandas as pd

from phenoface import io, plots, sampling, sex_inference
from phenoface.runtime import setup_logging
from phenoface.sheets import read_sheet

LOGGER = logging.getLogger("sample_matched_controls")


def read_qc(path: str | Path) -> pd.DataFrame:
    """Read the QC table (TSV, all columns as text)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def run(
    qc_path: str | Path,
    cases_path: str | Path,
    pool_path: str | Path,
    outputs: dict[str, str | Path],
    age_bins: list[int],
    match_on: list[str],
    ratio: int,
    allow_shortfall: bool,
    seed: int,
    sex_inputs: dict[str, object] | None = None,
    sex_confidence: float | None = None,
    sex_min_accuracy: float | None = None,
) -> pd.DataFrame:
    """Draw the controls and write every output; return the cohort.

    ``sex_inputs`` (``model``, ``report``, ``pool_features``) switch on sex
    inferred from the face for pool rows without sex; ``sex_confidence`` and
    ``sex_min_accuracy`` are then required.
    """
    qc = read_qc(qc_path)
    cases = read_sheet(cases_path, "cases", check_files=False)
    pool = read_sheet(pool_path, "pool", check_files=False)
    report = sex_inference.read_report(sex_inputs["report"]) if sex_inputs else None
    age_only = sex_inference.age_only_bins(report) if sex_inputs else []
    ranked = sampling.rank_pool(pool, age_bins, match_on, seed, age_only)
    if sex_inputs:
        case_bins = sampling.label_ages(cases["age"], age_bins)
        sex_inference.warn_age_only(report, list(case_bins), float(sex_min_accuracy))
        predictions = sex_inference.predict_pool(sex_inputs["model"], sex_inputs["pool_features"])
        ranked = sex_inference.infer_pool(ranked, age_bins, seed, predictions, float(sex_confidence))
    cohort, shortfall = sampling.draw_controls(
        cases, ranked, qc, age_bins, match_on, ratio=ratio, allow_shortfall=allow_shortfall, age_only_bins=age_only
    )
    if sex_inputs:
        cohort = sex_inference.annotate_cohort(cohort, ranked)
    table = sampling.table1(cohort, age_bins)
    if sex_inputs:
        counts = sex_inference.counts_by_bin(cohort, ranked, qc, age_bins)
        table = table.merge(counts, on="age_bin", how="left").fillna({name: 0 for name in counts.columns[1:]})
        table[counts.columns[1:]] = table[counts.columns[1:]].astype(int)
    balance = sampling.balance(cohort)
    flow = sampling.flow_counts(cases, ranked, qc, cohort)
    sampling.check_flow(flow, {"cases": len(cases), "pool": len(pool)})

    io.write_table(outputs["cohort"], cohort)
    io.write_table(outputs["table1"], table)
    io.write_table(outputs["balance"], balance)
    io.write_table(outputs["shortfall"], shortfall)
    plots.plot_table1(table, outputs["table1_png"])
    plots.plot_flow(flow, outputs["flow_png"], outputs["flow_svg"])
    for row in balance.itertuples(index=False):
        LOGGER.info("balance %s = %.4g (p = %.4g) %s", row.measure, row.value, row.p_value, row.note)
    return cohort


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Entry point: the only place that touches ``snakemake``."""
    setup_logging(snakemake.log[0])
    params = snakemake.params
    run(
        qc_path=snakemake.input.qc,
        cases_path=snakemake.input.cases,
        pool_path=snakemake.input.pool,
        outputs={
            key: getattr(snakemake.output, key)
            for key in ("cohort", "table1", "table1_png", "balance", "flow_png", "flow_svg", "shortfall")
        },
        age_bins=[int(edge) for edge in params.age_bins],
        match_on=[str(name) for name in params.match_on],
        ratio=int(params.ratio),
        allow_shortfall=bool(params.allow_shortfall),
        seed=int(params.seed),
        sex_inputs=(
            {
                "model": snakemake.input.sex_model,
                "report": snakemake.input.sex_report,
                "pool_features": list(snakemake.input.pool_features),
            }
            if snakemake.input.sex_model
            else None
        ),
        sex_confidence=params.sex_confidence,
        sex_min_accuracy=params.sex_min_accuracy,
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
