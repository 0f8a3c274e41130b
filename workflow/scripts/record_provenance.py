"""Snakemake entry: record the config, inputs, models, code and packages of a run."""

from phenoface.io import write_json
from phenoface.provenance import provenance
from phenoface.runtime import setup_logging


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    files = {name: path for name, path in snakemake.input.items()}
    write_json(snakemake.output.record, provenance(snakemake.params.config, files, snakemake.params.repo))


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
