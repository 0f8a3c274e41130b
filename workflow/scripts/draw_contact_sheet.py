"""Rule draw_contact_sheet: a seeded sample of masked chips tiled for a person to look at."""

from phenoface.io import write_png
from phenoface.preprocess import contact_sheet, contact_sheet_sample
from phenoface.qc import read_qc


def run(inputs: dict, outputs: dict, params) -> None:
    paths = contact_sheet_sample(read_qc(inputs["qc"]), params.size, params.seed)
    write_png(outputs["contact_sheet"], contact_sheet(paths))


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
