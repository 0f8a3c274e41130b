"""Rule write_methods: methods text (Markdown and HTML) and the model card, from provenance.json.

The sex-inference report is an input only where sex was inferred; its presence says so.
"""

import json
import logging

from phenoface.io import write_text
from phenoface.methods import methods_html, methods_markdown
from phenoface.model_card import render_model_card


def run(inputs: dict, outputs: dict, params) -> None:
    with open(inputs["provenance"], encoding="utf-8") as handle:
        provenance = json.load(handle)
    config = provenance["config"]
    sex_inferred = bool(inputs["sex_report"])
    write_text(outputs["markdown"], methods_markdown(config, provenance, sex_inferred))
    write_text(outputs["html"], methods_html(config, provenance, sex_inferred))
    write_text(outputs["model_card"], render_model_card(config))
    logging.info("methods and model card written for commit %s", provenance.get("code", {}).get("commit"))


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
