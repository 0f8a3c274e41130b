"""The cohort and QC table of one power strength (rule build_power_cohort).

Inputs: ``planted`` (per-shard tables of plant_power_effect: the drawn faces
with group, age, sex, stratum) and ``qc`` (per-shard QC tables of the planted
photos). Outputs: ``cohort`` (cohort.csv: the drawn faces whose planted photo
passed QC, in the columns every later stage reads) and ``qc`` (qc.tsv: the
shard QC tables together, one row per drawn face).
"""

import logging

import pandas as pd


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Concatenate the shard tables and keep the faces that passed QC."""
    from phenoface.io import write_table
    from phenoface.power import power_cohort
    from phenoface.runtime import setup_logging

    setup_logging(snakemake.log[0])
    text = {"image_id": str, "group": str, "sex": str, "subject_id": str, "stratum": str}
    sample = pd.concat(
        [pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False) for path in snakemake.input.planted],
        ignore_index=True,
    )
    qc = pd.concat(
        [
            pd.read_csv(path, sep="\t", dtype={"image_id": str}, keep_default_na=False)
            for path in snakemake.input.qc
        ],
        ignore_index=True,
    )
    cohort = power_cohort(sample, qc)
    logging.getLogger("build_power_cohort").info(
        "%d drawn, %d passed QC (%d cases, %d controls); statuses %s",
        len(sample),
        len(cohort),
        int((cohort["group"] == "case").sum()),
        int((cohort["group"] == "control").sum()),
        qc["status"].value_counts().to_dict(),
    )
    write_table(snakemake.output.cohort, cohort)
    write_table(snakemake.output.qc, qc)


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
