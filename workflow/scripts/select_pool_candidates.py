"""Rule select_pool_candidates (checkpoint): the pool rows to preprocess in one candidate round."""

import logging

import pandas as pd

from phenoface import sex_inference
from phenoface.io import write_table
from phenoface.qc import ok_ids, read_qc
from phenoface.sampling import needed_per_stratum, plan_candidates, rank_pool
from phenoface.sheets import assign_shards, read_sheet


def run(inputs: dict, outputs: dict, params) -> None:
    cases = read_sheet(inputs["cases"], "cases", check_files=False)
    pool = read_sheet(inputs["pool"], "pool", check_files=False)
    ok_cases = cases.loc[cases["image_id"].isin(ok_ids(read_qc(inputs["cases_qc"])))]
    infer = bool(inputs["sex_model"])
    report = sex_inference.read_report(inputs["sex_report"]) if infer else None
    age_only = sex_inference.age_only_bins(report) if infer else []
    ranked = rank_pool(pool, params.age_bins, params.match_on, params.seed, age_only)
    if infer:
        predictions = sex_inference.predict_pool(inputs["sex_model"], inputs["pool_features"])
        confidence = float(params.sex_confidence)
        ranked = sex_inference.infer_pool(ranked, params.age_bins, params.seed, predictions, confidence)
    needed = needed_per_stratum(ok_cases, params.age_bins, params.match_on, params.ratio, age_only)
    tried = read_qc(inputs["pool_qc"])
    candidates = plan_candidates(ranked, needed, tried, params.oversample)
    if infer:
        unknown = sex_inference.plan_unknown_candidates(
            ranked, needed, tried, candidates, report, params.oversample
        )
        candidates = pd.concat([candidates, unknown])
    candidates = candidates.assign(
        shard=[f"{s:04d}" for s in assign_shards(list(candidates["image_id"]), params.shard_size)]
    )
    logging.info(
        "%s: %d new candidates over %d strata (%d tried before)",
        outputs["candidates"],
        len(candidates),
        candidates["stratum"].nunique() if len(candidates) else 0,
        len(tried),
    )
    write_table(outputs["candidates"], candidates[["image_id", "stratum", "rank", "shard"]])


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
