"""The whole workflow on a small UTKFace proxy study: features, split, training, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import write_sheet

pytestmark = pytest.mark.integration


@pytest.fixture()
def proxy_sheets(utkface_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Cases: 60 adult women; pool: 150 adult men (sex is the 'phenotype'; matched on age).

    Plus an external labelled sheet (12 other women as cases, 12 other men as
    controls) and a reference sheet (12 other men).
    """
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    adults = meta[(meta["age"] >= 20) & (meta["age"] < 60) & (meta["in_dev_set"] == "")]

    def rows(table: pd.DataFrame) -> list[dict]:
        return [{"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex} for r in table.itertuples()]

    women = adults[adults["sex"] == "F"]
    men = adults[adults["sex"] == "M"]
    external = [dict(r, group="case") for r in rows(women.iloc[60:72])]
    external += [dict(r, group="control") for r in rows(men.iloc[150:162])]
    return (
        write_sheet(tmp_path / "cases.csv", rows(women.head(60))),
        write_sheet(tmp_path / "pool.csv", rows(men.head(150))),
        write_sheet(tmp_path / "external.csv", external),
        write_sheet(tmp_path / "reference.csv", rows(men.iloc[162:174])),
    )


def test_end_to_end_is_complete_and_reproducible(make_workflow, proxy_sheets) -> None:
    """All targets build; features cover every ok chip; metrics are sane and identical on a rerun."""
    cases, pool, external, reference = proxy_sheets
    flow = make_workflow(
        "full",
        {
            "cases": str(cases),
            "reference_pool": str(pool),
            "sampling": {"match_on": ["age"], "allow_shortfall": True},
            "evaluation": {"repeats": 2, "n_bootstrap": 200, "external": [str(external)]},
            "audit": {"reference_sheet": str(reference)},
        },
    )
    flow.run("all")
    qc = pd.read_csv(flow.path("results/qc/preprocess.tsv"), sep="\t", keep_default_na=False)
    features = np.load(flow.path("results/features/features.npz"))
    ok_ids = sorted(qc.loc[qc["status"] == "ok", "image_id"])
    assert list(features["image_id"]) == ok_ids
    assert features["pooled"].shape == (len(ok_ids), 256) and features["pooled"].dtype == np.float32
    assert features["descriptor"].shape == (len(ok_ids), 128)
    assert np.all(features["pooled"] >= 0)  # average of ReLU outputs

    split = pd.read_csv(flow.path("results/split/cohort_split.csv"), keep_default_na=False)
    assert set(split["split"]) == {"train", "test"}
    sides = split.groupby("identity_group")["split"].nunique()
    assert (sides == 1).all()

    metrics_path = flow.path("results/evaluation/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    for key in ("auc", "auc_ci_low", "auc_ci_high", "accuracy", "n_test", "baselines", "warnings"):
        assert key in metrics
    assert metrics["auc_ci_low"] <= metrics["auc"] <= metrics["auc_ci_high"]
    assert metrics["n_test"] == int((split["split"] == "test").sum())
    assert metrics["auc"] > 0.8  # sex from a face is easy even for 60 cases
    assert set(metrics["baselines"]) >= {"descriptor", "age_sex", "image_statistics"}
    assert isinstance(metrics["warnings"], list)
    assert metrics["repeats"]["n"] == 2
    external_qc = pd.read_csv(flow.path("results/external/external/qc.tsv"), sep="\t", keep_default_na=False)
    assert len(external_qc) == 24
    scored = metrics["external"]["external"]
    assert scored["n"] == int((external_qc["status"] == "ok").sum()) and scored["auc"] > 0.8
    assert metrics["baselines"]["reference_sheet"]["status"] == "ok"
    assert metrics["baselines"]["reference_sheet"]["auc"] < 0.9  # men vs men: not separable by sex
    predictions = pd.read_csv(flow.path("results/evaluation/predictions.csv"))
    assert predictions["prob"].between(0, 1).all()

    # Grad-CAM explains the very model that was evaluated, on held-out images.
    maps = np.load(flow.path("results/explain/gradcam.npz"))
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    assert set(maps["image_id"]) == test_ids  # fewer than explain.max_images per group
    assert maps["cam"].shape == (len(test_ids), 150, 150)
    assert float(maps["cam"].max()) == pytest.approx(1.0, abs=1e-3) and float(maps["cam"].min()) >= 0
    evaluated = predictions.set_index("image_id").loc[list(maps["image_id"]), "prob"].to_numpy()
    np.testing.assert_allclose(maps["probability"], evaluated, atol=1e-4)
    sanity = json.loads(flow.path("results/explain/sanity.json").read_text())
    assert sanity["n_explained"] == len(test_ids)
    assert sanity["randomized_head_spearman_abs"]["median"] < 0.9
    region_tests = pd.read_csv(flow.path("results/explain/region_tests.csv"))
    assert len(region_tests) == 3 * 7
    assert set(region_tests["comparison"]) == {"own class", "case evidence, both groups"}
    for _, table in region_tests.groupby("map"):
        assert table["share_case"].sum() == pytest.approx(1.0)
        assert table["area_share"].sum() == pytest.approx(1.0)

    # Morphometry covers exactly the cohort (cases are women, controls men: sex subsets are one-sided).
    cohort = pd.read_csv(flow.path("results/cohort/cohort.csv"), keep_default_na=False)
    morphometry = json.loads(flow.path("results/faces/morphometry.json").read_text())
    n_case = int((cohort["group"] == "case").sum())
    assert morphometry["n"]["case"]["all"] == n_case
    assert morphometry["n"]["control"]["all"] == len(cohort) - n_case
    landmark_tests = pd.read_csv(flow.path("results/faces/landmark_tests.csv"), keep_default_na=False)
    assert (landmark_tests["subset"] == "all").sum() == 68
    averages = np.load(flow.path("results/faces/average_faces.npz"))
    assert int(averages["n"].sum()) == len(cohort)
    assert averages["mean_chip"].shape == (len(averages["n"]), 150, 150, 3)

    seeded = ["results/explain/region_tests.csv", "results/explain/sanity.json", "results/faces/morphometry.json"]
    before = {path: flow.path(path).read_bytes() for path in [str(metrics_path), *seeded]}
    flow.run("all", "--forcerun", "split_cohort", "compare_landmarks")
    assert {path: flow.path(path).read_bytes() for path in before} == before


def test_unknown_gradcam_layer_fails_before_any_job(make_workflow, proxy_sheets) -> None:
    """A misspelt explain.layer stops the dry run with a message listing the valid block names."""
    cases, pool, _, _ = proxy_sheets
    flow = make_workflow(
        "badlayer", {"cases": str(cases), "reference_pool": str(pool), "explain": {"layer": "level2_blok3"}}
    )
    process = flow.run("-n", "all", check=False)
    output = process.stdout + process.stderr
    assert process.returncode != 0
    assert "explain.layer is 'level2_blok3'" in output
    assert "level2_block3" in output and "preprocess_images" not in output
