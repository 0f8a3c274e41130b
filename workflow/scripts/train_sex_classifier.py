"""Rule train_sex_classifier: the sex-from-face classifier and its accuracy per age bin."""

import logging

from phenoface import sex_inference
from phenoface.features import read_feature_shards
from phenoface.io import write_table
from phenoface.qc import ok_ids, read_qc
from phenoface.sheets import read_sheet
from phenoface.split import align_features, identity_clusters, identity_groups

LOGGER = logging.getLogger("train_sex_classifier")


def run(inputs: dict, outputs: dict, params) -> None:
    kind = "sex_reference" if params.from_sex_reference else "cases"
    sheet = read_sheet(inputs["sheet"], kind, check_files=False)
    pool = read_sheet(inputs["pool"], "pool", check_files=False)
    features = read_feature_shards(inputs["features"])
    ok = ok_ids(read_qc(inputs["qc"]))
    labelled = sheet.loc[sheet["image_id"].isin(ok) & sheet["sex"].isin(["M", "F"])].reset_index(drop=True)
    descriptors = features["descriptor"][align_features(labelled["image_id"], features["image_id"])]
    groups = identity_groups(
        labelled["subject_id"],
        identity_clusters(descriptors, float(params.identity_threshold), str(params.linkage)),
    )
    source = f"{kind} sheet {inputs['sheet']}"
    sex_inference.check_training_set(labelled["sex"], groups, source)
    LOGGER.info(
        "training on %d labelled faces of the %s (%d F, %d M; %d persons)",
        len(labelled),
        source,
        int(labelled["sex"].eq("F").sum()),
        int(labelled["sex"].eq("M").sum()),
        len(set(groups)),
    )
    seed = int(params.seed)
    p_female = sex_inference.cross_validated_p_female(descriptors, labelled["sex"], groups, seed)
    report = sex_inference.accuracy_by_bin(
        labelled["age"], labelled["sex"], p_female, params.age_bins, float(params.confidence)
    )
    report = sex_inference.decide_matching(report, pool, params.age_bins, float(params.min_accuracy))
    for row in report.itertuples(index=False):
        LOGGER.info(
            "age bin %s: n %d, accuracy %.3f, confident %.3f, accuracy among confident %.3f, "
            "pool rows without sex %d -> matched on %s",
            row.age_bin,
            row.n,
            row.accuracy,
            row.share_confident,
            row.accuracy_confident,
            row.pool_without_sex,
            row.matched_on,
        )
    sex_inference.fit_sex_classifier(descriptors, labelled["sex"], seed).save(outputs["model"])
    write_table(outputs["report"], report.round(4))


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
