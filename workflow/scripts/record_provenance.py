"""Rule record_provenance: the config, inputs, models, code and packages of a run."""

import json

from phenoface.io import write_json
from phenoface.provenance import provenance


def run(inputs: dict, outputs: dict, params) -> None:
    write_json(outputs["record"], provenance(json.loads(params.config), inputs))


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
