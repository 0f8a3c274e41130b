"""Rule render_report_tables: every result table as an HTML page for the report."""

import logging

from phenoface.io import write_text
from phenoface.report_tables import read_result_table, render_table_page


def run(inputs: dict, outputs: dict, params) -> None:
    for name, source in inputs.items():
        table = read_result_table(source)
        write_text(outputs[name], render_table_page(name, table, source))
        logging.info("%s: %d rows from %s", name, len(table), source)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
