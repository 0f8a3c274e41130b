"""Age x sex matching against a pool without sex (as with MegaAge), on UTKFace.

One study serves both tests (the machine is small): 300 adult cases and 40
children with sex; the pool is every other UTKFace image with its sex column
emptied. The adult strata test the inferred sex, the children the fallback
to age alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import Workflow, write_sheet

pytestmark = pytest.mark.integration

N_ADULTS, N_CHILDREN = 300, 40


@pytest.fixture(scope="module")
def study(utkface_dir: Path, tmp_path_factory, mediapipe_cache: Path) -> tuple[Workflow, pd.DataFrame]:
    """The finished study and UTKFace's metadata (true sex, by image id stem)."""
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    adults = meta.loc[meta["age"] >= 20].sample(n=N_ADULTS, random_state=10)
    children = meta.loc[meta["age"] < 10].sample(n=N_CHILDREN, random_state=10)
    cases = pd.concat([adults, children])
    pool = meta.drop(index=cases.index)
    folder = tmp_path_factory.mktemp("sex_inference")

    def rows(table: pd.DataFrame, with_sex: bool) -> list[dict]:
        return [
            {"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex if with_sex else ""}
            for r in table.itertuples()
        ]

    config = {
        "cases": str(write_sheet(folder / "cases.csv", rows(cases, True))),
        "reference_pool": str(write_sheet(folder / "pool.csv", rows(pool, False))),
    }
    flow = Workflow(folder / "study", config, mediapipe_cache)
    flow.run("results/cohort/cohort.csv")
    return flow, meta.assign(stem=meta["image"].str.removesuffix(".jpg")).set_index("stem")


def read_cohort(flow: Workflow, meta: pd.DataFrame) -> pd.DataFrame:
    """The cohort with each row's true sex from metadata.csv."""
    cohort = pd.read_csv(flow.path("results/cohort/cohort.csv"), keep_default_na=False)
    stems = cohort["image_id"].str.rsplit("-", n=1).str[0]
    return cohort.assign(true_sex=stems.map(meta["sex"]).to_numpy())


def test_adult_strata_matched_on_inferred_sex(study) -> None:
    """Equal strata; inferred sex right for >= 95% of the controls; true female shares within 3 points."""
    flow, meta = study
    cohort = read_cohort(flow, meta)
    adult = cohort.loc[cohort["age"] >= 20]
    counts = adult.groupby(["stratum", "group"]).size().unstack(fill_value=0)
    assert (counts["case"] == counts["control"]).all() and counts["case"].sum() >= N_ADULTS - 5
    assert all("|" in stratum for stratum in counts.index)  # every adult bin matched on sex
    cases, controls = adult.loc[adult["group"] == "case"], adult.loc[adult["group"] == "control"]
    assert set(controls["sex_source"]) == {"inferred"}
    assert (controls["sex_probability"].astype(float) >= 0.95).all()
    agreement = (controls["sex"] == controls["true_sex"]).mean()
    assert agreement >= 0.95, agreement
    assert abs((cases["true_sex"] == "F").mean() - (controls["true_sex"] == "F").mean()) <= 0.03

    report = pd.read_csv(flow.path("results/cohort/sex_inference.csv"), keep_default_na=False)
    assert list(report["age_bin"]) == [
        "0-9",
        "10-19",
        "20-29",
        "30-39",
        "40-49",
        "50-59",
        "60-69",
        "70+",
        "all",
    ]
    qc = pd.read_csv(flow.path("results/qc/preprocess.tsv"), sep="\t", keep_default_na=False)
    pool_qc = qc.loc[qc["sheet"] == "pool"]
    preprocessed = int((pool_qc["status"] != "not_needed").sum())
    assert preprocessed < 3 * len(cohort.loc[cohort["group"] == "control"])  # lazy: far from the 8,197 rows
    table1 = pd.read_csv(flow.path("results/cohort/table1.csv")).set_index("age_bin")
    assert table1.loc["Total", "control sex inferred"] == len(controls)
    print(f"pool rows preprocessed: {preprocessed} of {len(pool_qc)}; inferred-sex agreement {agreement:.3f}")
    print(report.to_string(index=False))


def test_children_matched_on_age_alone_with_warning(study) -> None:
    """The 0-9 bin (low accuracy among confident predictions) is matched on age alone, and the log says so."""
    flow, meta = study
    report = pd.read_csv(flow.path("results/cohort/sex_inference.csv")).set_index("age_bin")
    assert report.loc["0-9", "matched_on"] == "age"
    assert report.loc["0-9", "accuracy_confident"] < 0.9 or report.loc["0-9", "n_confident"] < 10
    cohort = read_cohort(flow, meta)
    children = cohort.loc[cohort["age"] < 10]
    assert set(children["stratum"]) == {"0-9"}
    counts = children["group"].value_counts()
    assert counts["case"] == counts["control"] >= N_CHILDREN - 3
    assert set(children.loc[children["group"] == "control", "sex_source"]) == {""}
    log = flow.path("logs/sample_matched_controls.log").read_text(encoding="utf-8")
    warnings = [line for line in log.splitlines() if "WARNING" in line and "age bin 0-9" in line]
    assert warnings and "matched on age alone" in warnings[0]


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [({}, "cases"), ({"sex_reference": "REFERENCE"}, "sexref"), ({"infer_sex": False}, None)],
)
def test_sex_classifier_is_planned_from_the_right_sheet(
    make_workflow, faces_dir: Path, tmp_path: Path, sampling: dict, expected: str | None
) -> None:
    """Dry runs: the classifier learns from the cases or sampling.sex_reference; infer_sex false plans none."""
    meta = pd.read_csv(faces_dir / "metadata.csv", keep_default_na=False)

    def rows(table: pd.DataFrame, with_sex: bool = True) -> list[dict]:
        return [
            {"image": str(faces_dir / r.image), "age": r.age, "sex": r.sex if with_sex else ""}
            for r in table.itertuples()
        ]

    cases = write_sheet(tmp_path / "cases.csv", rows(meta.iloc[:10]))
    pool = write_sheet(tmp_path / "pool.csv", rows(meta.iloc[10:40], with_sex=False))
    reference = write_sheet(tmp_path / "sex_reference.csv", rows(meta.iloc[40:70]))
    sampling = {key: str(reference) if value == "REFERENCE" else value for key, value in sampling.items()}
    flow = make_workflow("dry", {"cases": str(cases), "reference_pool": str(pool), "sampling": sampling})
    output = flow.run("-n", "results/cohort/cohort.csv").stdout
    if expected is None:
        assert "rule train_sex_classifier:" not in output and "results/preprocess/sexref/" not in output
        return
    assert output.count("rule train_sex_classifier:") == 1
    assert ("results/preprocess/sexref/" in output) == (expected == "sexref")
    assert f"results/features/{expected}/" in output
