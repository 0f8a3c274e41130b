"""Snakemake entry (checkpoint): the pool rows to preprocess in one candidate round."""

import logging

import pandas as pd

from phenoface import sex_inference
from phenoface.io import write_table
from phenoface.runtime import setup_logging
from phenoface.sampling import needed_per_stratum, plan_candidates, rank_pool
from phenoface.sheets import assign_shards, read_sheet


def read_qc(paths: list[str]) -> pd.DataFrame:
    """Concatenate shard QC tables (image_id, status)."""
    tables = [pd.read_csv(p, sep="\t", usecols=["image_id", "status"], dtype=str) for p in paths]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["image_id", "status"])


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    params = snakemake.params
    cases = read_sheet(snakemake.input.cases, "cases", check_files=False)
    pool = read_sheet(snakemake.input.pool, "pool", check_files=False)
    case_qc = read_qc(snakemake.input.cases_qc)
    ok_cases = cases.loc[cases["image_id"].isin(case_qc.loc[case_qc["status"] == "ok", "image_id"])]
    infer = bool(snakemake.input.sex_model)
    report = sex_inference.read_report(snakemake.input.sex_report) if infer else None
    age_only = sex_inference.age_only_bins(report) if infer else []
    ranked = rank_pool(pool, params.age_bins, params.match_on, params.seed, age_only)
    if infer:
        predictions = sex_inference.predict_pool(snakemake.input.sex_model, snakemake.input.pool_features)
        confidence = float(params.sex_confidence)
        ranked = sex_inference.infer_pool(ranked, params.age_bins, params.seed, predictions, confidence)
    needed = needed_per_stratum(ok_cases, params.age_bins, params.match_on, params.ratio, age_only)
    tried = read_qc(snakemake.input.pool_qc)
    candidates = plan_candidates(ranked, needed, tried, params.oversample)
    if infer:
        unknown = sex_inference.plan_unknown_candidates(ranked, needed, tried, candidates, report, params.oversample)
        candidates = pd.concat([candidates, unknown])
    candidates = candidates.assign(
        shard=[f"{s:04d}" for s in assign_shards(list(candidates["image_id"]), params.shard_size)]
    )
    logging.info(
        "round %s: %d new candidates over %d strata (%d tried before)",
        snakemake.wildcards.round,
        len(candidates),
        candidates["stratum"].nunique() if len(candidates) else 0,
        len(tried),
    )
    write_table(snakemake.output.candidates, candidates[["image_id", "stratum", "rank", "shard"]])


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
