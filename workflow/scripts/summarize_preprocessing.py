"""Rule summarize_preprocessing: one QC row per sheet row, from the shards' QC tables."""

import logging

from phenoface.io import write_table
from phenoface.preprocess import summarize_qc
from phenoface.qc import read_qc
from phenoface.sheets import read_all_sheets


def run(inputs: dict, outputs: dict, params) -> None:
    sheets = read_all_sheets(inputs["cases"], inputs["pool"])
    table = summarize_qc(sheets, [read_qc(path) for path in inputs["qc"]])
    logging.info("QC statuses:\n%s", table.groupby(["sheet", "status"]).size().to_string())
    write_table(outputs["qc"], table)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
