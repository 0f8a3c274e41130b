"""Snakemake entry: one QC row per sheet row, and a contact sheet to look at."""

import logging

import pandas as pd

from phenoface.io import write_png, write_table
from phenoface.preprocess import contact_sheet, summarize_qc
from phenoface.runtime import make_rng, setup_logging
from phenoface.sheets import read_all_sheets


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    sheets = read_all_sheets(snakemake.input.cases, snakemake.input.pool)
    shards = [pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]) for path in snakemake.input.qc]
    table = summarize_qc(sheets, shards)
    counts = table.groupby(["sheet", "status"]).size()
    logging.info("QC statuses:\n%s", counts.to_string())
    write_table(snakemake.output.qc, table)
    ok = table.loc[table["status"] == "ok", "masked_chip"].tolist()
    rng = make_rng(snakemake.params.seed)
    sample = sorted(rng.choice(len(ok), size=min(len(ok), snakemake.params.size), replace=False)) if ok else []
    write_png(snakemake.output.contact_sheet, contact_sheet([ok[i] for i in sample]))


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
