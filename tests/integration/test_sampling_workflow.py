"""Matched control sampling through Snakemake on UTKFace (cases chosen by a column)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import write_sheet

pytestmark = pytest.mark.integration

#: Cases drawn from UTKFace's Asian faces aged 10 and over (the machine is small).
N_CASES = 250


@pytest.fixture()
def utk_sheets(utkface_dir: Path, tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Cases: 250 of the 535 Asian faces aged 10+; pool: every other UTKFace image (8,487)."""
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    asian_10_plus = meta.loc[(meta["ethnicity"] == "asian") & (meta["age"] >= 10)]
    is_case = meta.index.isin(asian_10_plus.sample(n=N_CASES, random_state=3).index)

    def rows(table: pd.DataFrame) -> list[dict]:
        return [{"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex} for r in table.itertuples()]

    cases = write_sheet(tmp_path / "cases.csv", rows(meta[is_case]))
    pool = write_sheet(tmp_path / "pool.csv", rows(meta[~is_case]))
    return cases, pool, meta


def test_matched_cohort_on_utkface(make_workflow, utk_sheets) -> None:
    """Age SMD < 0.1, equal sex proportions, 1:1 per stratum, every row accounted for, pool not fully preprocessed."""
    cases, pool, meta = utk_sheets
    n_cases, n_pool = len(pd.read_csv(cases)), len(pd.read_csv(pool))
    assert n_cases == N_CASES
    flow = make_workflow("utk", {"cases": str(cases), "reference_pool": str(pool)})
    flow.run("results/cohort/cohort.csv")

    cohort = pd.read_csv(flow.path("results/cohort/cohort.csv"), keep_default_na=False)
    case_rows, controls = cohort[cohort["group"] == "case"], cohort[cohort["group"] == "control"]
    counts = cohort.groupby(["stratum", "group"]).size().unstack(fill_value=0)
    assert (counts["case"] == counts["control"]).all()
    assert (case_rows["sex"] == "F").mean() == (controls["sex"] == "F").mean()
    balance = pd.read_csv(flow.path("results/cohort/balance.csv")).set_index("measure")
    assert abs(float(balance.loc["smd_age", "value"])) < 0.1
    assert float(balance.loc["smd_sex_female", "value"]) == 0.0

    qc = pd.read_csv(flow.path("results/qc/preprocess.tsv"), sep="\t", keep_default_na=False)
    assert len(qc) == n_cases + n_pool and qc["image_id"].is_unique
    ok_cases = int(((qc["sheet"] == "cases") & (qc["status"] == "ok")).sum())
    assert len(case_rows) == ok_cases
    pool_qc = qc[qc["sheet"] == "pool"]
    preprocessed = int((pool_qc["status"] != "not_needed").sum())
    assert len(controls) <= preprocessed < 2 * len(controls)  # oversample 1.5, not the whole pool
    assert set(controls["image_id"]) <= set(pool_qc.loc[pool_qc["status"] == "ok", "image_id"])

    table1 = pd.read_csv(flow.path("results/cohort/table1.csv"))
    total = table1[table1["age_bin"] == "Total"].iloc[0]
    assert total["case F n"] + total["case M n"] == len(case_rows)
    assert total["control F n"] + total["control M n"] == len(controls)
