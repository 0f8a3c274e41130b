"""Snakemake entry: every result table as an HTML page for the report."""

import logging

from phenoface.io import write_text
from phenoface.report_tables import read_result_table, render_table_page
from phenoface.runtime import setup_logging


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    for name, source in snakemake.input.items():
        table = read_result_table(source)
        write_text(snakemake.output[name], render_table_page(name, table, source))
        logging.info("%s: %d rows from %s", name, len(table), source)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
