"""Snakemake entry: gather a validation sheet's QC rows, features and labels."""

import logging

import pandas as pd

from phenoface.features import read_feature_shards
from phenoface.io import write_npz, write_table
from phenoface.runtime import setup_logging
from phenoface.sheets import read_sheet


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    kind = "external" if "name" in snakemake.wildcards.keys() else "reference"
    sheet = read_sheet(snakemake.input.sheet, kind, check_files=False)
    qc = pd.concat(
        [pd.read_csv(p, sep="\t", keep_default_na=False) for p in snakemake.input.qc], ignore_index=True
    )
    merged = read_feature_shards(snakemake.input.shards)
    ok = set(qc.loc[qc["status"] == "ok", "image_id"])
    if "group" not in sheet.columns:
        sheet = sheet.assign(group=kind)
    labels = sheet.loc[sheet["image_id"].isin(ok), ["image_id", "group", "age", "sex"]]
    labels = labels.set_index("image_id").loc[merged["image_id"]].reset_index()
    logging.info(
        "%s sheet: %d rows, %d ok (%s)", kind, len(sheet), len(ok), qc["status"].value_counts().to_dict()
    )
    write_table(snakemake.output.qc, qc)
    write_table(snakemake.output.labels, labels)
    write_npz(snakemake.output.features, **merged)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
