"""Rule summarize_study: the study summary page, the first page of the report."""

import json
import logging

from phenoface.io import write_text
from phenoface.qc import read_qc
from phenoface.report_tables import read_result_table
from phenoface.summary import (
    collect_warnings,
    render_landing,
    render_summary,
    sampling_warnings,
    sex_inference_warnings,
    study_line,
)


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def run(inputs: dict, outputs: dict, params) -> None:
    config = read_json(inputs["provenance"])["config"]
    balance = read_result_table(inputs["balance"])
    table1 = read_result_table(inputs["table1"])
    warnings = sampling_warnings(balance, read_result_table(inputs["shortfall"]))
    if inputs["sex_report"]:
        warnings += sex_inference_warnings(read_result_table(inputs["sex_report"]), table1)
    warnings += collect_warnings({path: read_json(path) for path in inputs["records"]})
    for warning in warnings:
        logging.info("%s: %s", warning.stage, warning.message)
    qc = read_qc(inputs["qc"])
    metrics = read_json(inputs["metrics"])
    write_text(outputs["summary"], render_summary(config, metrics, warnings, table1, balance, qc))
    write_text(outputs["landing"], render_landing(metrics, warnings, study_line(config, balance, qc)))
    logging.info("summary written with %d warning(s)", len(warnings))


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
