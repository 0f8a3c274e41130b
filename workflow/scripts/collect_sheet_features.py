"""Rules collect_external_sheet / collect_reference_sheet: a validation sheet's QC rows, features and labels."""

import logging

from phenoface.features import read_feature_shards
from phenoface.io import write_npz, write_table
from phenoface.qc import ok_ids, read_qc
from phenoface.sheets import read_sheet


def run(inputs: dict, outputs: dict, params) -> None:
    kind = params.kind
    sheet = read_sheet(inputs["sheet"], kind, check_files=False)
    qc = read_qc(inputs["qc"])
    merged = read_feature_shards(inputs["shards"])
    ok = ok_ids(qc)
    if "group" not in sheet.columns:
        sheet = sheet.assign(group=kind)
    labels = sheet.loc[sheet["image_id"].isin(ok), ["image_id", "group", "age", "sex"]]
    labels = labels.set_index("image_id").loc[merged["image_id"]].reset_index()
    logging.info(
        "%s sheet: %d rows, %d ok (%s)", kind, len(sheet), len(ok), qc["status"].value_counts().to_dict()
    )
    write_table(outputs["qc"], qc)
    write_table(outputs["labels"], labels)
    write_npz(outputs["features"], **merged)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
