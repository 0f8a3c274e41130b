"""Draw age/sex-matched controls and write the cohort, Table 1, balance and flow.

Snakemake entry script of rule ``sample_matched_controls``. Inputs: ``qc``
(results/qc/preprocess.tsv), ``cases`` and ``pool`` (the sample sheets).
Params: ``age_bins``, ``match_on``, ``ratio``, ``allow_shortfall``,
``seed``. Outputs: ``cohort``, ``table1``, ``table1_png``, ``balance``,
``flow_png``, ``flow_svg``, ``shortfall``. Log: ``log[0]``.
"""


import logging
from pathlib import Path

import pandas as pd

from phenoface import io, plots, sampling
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
) -> pd.DataFrame:
    """Draw the controls and write every output; return the cohort."""
    qc = read_qc(qc_path)
    cases = read_sheet(cases_path, "cases", check_files=False)
    pool = read_sheet(pool_path, "pool", check_files=False)
    ranked = sampling.rank_pool(pool, age_bins, match_on, seed)
    cohort, shortfall = sampling.draw_controls(
        cases, ranked, qc, age_bins, match_on, ratio=ratio, allow_shortfall=allow_shortfall
    )
    table = sampling.table1(cohort, age_bins)
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
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
