"""Train the sex-from-face classifier and estimate its accuracy per age bin.

Snakemake entry script of rule ``train_sex_classifier``. Inputs: ``sheet``
(the labelled sheet: the cases, or ``sampling.sex_reference``), ``pool``
(the reference pool), ``qc`` and ``features`` (that sheet's shard tables and
feature files). Params: ``from_sex_reference`` (bool), ``age_bins``,
``confidence``, ``min_accuracy``, ``seed``, ``identity_threshold``,
``linkage``. Outputs: ``model`` (npz), ``report``
(results/cohort/sex_inference.csv). Log: ``log[0]``.
"""

import logging

import pandas as pd

from phenoface import sex_inference
from phenoface.features import read_feature_shards
from phenoface.io import write_table
from phenoface.runtime import setup_logging
from phenoface.sheets import read_sheet
from phenoface.split import align_features, identity_clusters, identity_groups

LOGGER = logging.getLogger("train_sex_classifier")


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    setup_logging(snakemake.log[0])
    params = snakemake.params
    kind = "sex_reference" if params.from_sex_reference else "cases"
    sheet = read_sheet(snakemake.input.sheet, kind, check_files=False)
    pool = read_sheet(snakemake.input.pool, "pool", check_files=False)
    qc = pd.concat(
        [pd.read_csv(p, sep="\t", usecols=["image_id", "status"], dtype=str) for p in snakemake.input.qc],
        ignore_index=True,
    )
    features = read_feature_shards(snakemake.input.features)
    ok = set(qc.loc[qc["status"] == "ok", "image_id"])
    labelled = sheet.loc[sheet["image_id"].isin(ok) & sheet["sex"].isin(["M", "F"])].reset_index(drop=True)
    descriptors = features["descriptor"][align_features(labelled["image_id"], features["image_id"])]
    groups = identity_groups(
        labelled["subject_id"],
        identity_clusters(descriptors, float(params.identity_threshold), str(params.linkage)),
    )
    source = f"{kind} sheet {snakemake.input.sheet}"
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
    sex_inference.fit_sex_classifier(descriptors, labelled["sex"], seed).save(snakemake.output.model)
    write_table(snakemake.output.report, report.round(4))


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
