"""The `power` target on a tiny UTKFace draw: planted photos, one table row per strength, not in `all`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenoface.faces import load_rgb
from phenoface.power import POWER_COLUMNS

from .conftest import write_sheet

pytestmark = pytest.mark.integration


@pytest.fixture()
def power_flow(make_workflow, utkface_dir: Path, tmp_path: Path):
    """A study whose pool holds 40 adults; the power analysis draws 24 of them, one strength (0.24).

    One strength keeps the test to one planted study (the controls' photos at
    strength 0 are the null arm); the dose-response is in bench/power_study.py.
    """
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    adults = meta[(meta["age"] >= 20) & (meta["age"] < 70) & (meta["in_dev_set"] == "")]
    rows = [{"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex} for r in adults.itertuples()]
    return make_workflow(
        "power",
        {
            "cases": str(write_sheet(tmp_path / "cases.csv", rows[:6])),
            "reference_pool": str(write_sheet(tmp_path / "pool.csv", rows[6:46])),
            "evaluation": {"repeats": 0, "n_bootstrap": 200},
            "explain": {"max_images": 4, "n_examples": 1},
            "faces": {"n_permutations": 100},
            "power": {"n": 24, "strengths": [0.24]},
        },
    )


def test_power_is_not_part_of_all(power_flow) -> None:
    """`snakemake all` plans no power job; `snakemake power` plans the controls' photos once."""
    assert not [rule for rule in power_flow.planned_jobs("all") if "power" in rule]
    planned = power_flow.planned_jobs("power")
    assert planned["train_power_classifier"] == 1 and planned["summarize_power"] == 1
    # 12 controls and 12 cases: one shard each
    assert planned["plant_power_effect"] == 2


def test_power_runs_the_study_per_strength(power_flow) -> None:
    """power.csv has a row per strength; controls' photos (strength 0) are the originals bit for bit."""
    power_flow.run("power")
    table = pd.read_csv(power_flow.path("results/power/power.csv"))
    assert list(table.columns) == POWER_COLUMNS
    assert list(table["strength"]) == [0.24]
    assert (table["n_case_ok"] + table["n_control_ok"]).between(20, 24).all()
    assert (table["auc_ci_low"] <= table["auc"]).all() and (table["auc"] <= table["auc_ci_high"]).all()
    summary = json.loads(power_flow.path("results/power/power.json").read_text())
    assert summary["threshold"] in (None, 0.24)
    assert [row["strength"] for row in summary["by_strength"]] == [0.24]

    qc = pd.read_csv(power_flow.path("results/power/r0/s0.24/qc.tsv"), sep="\t")
    assert len(qc) == 24 and qc["image_id"].is_unique
    planted = {
        arm: pd.concat(
            pd.read_csv(path, sep="\t")
            for path in power_flow.path(f"results/power/r0/{arm}/planted").glob("*.tsv")
        )
        for arm in ("controls", "s0.24")
    }
    assert set(planted["controls"]["group"]) == {"control"} and (planted["controls"]["strength"] == 0).all()
    assert set(planted["s0.24"]["group"]) == {"case"} and (planted["s0.24"]["strength"] == 0.24).all()
    control, case = planted["controls"].iloc[0], planted["s0.24"].iloc[0]
    assert np.array_equal(load_rgb(power_flow.path(control["planted"]))[0], load_rgb(control["path"])[0])
    assert not np.array_equal(load_rgb(power_flow.path(case["planted"]))[0], load_rgb(case["path"])[0])
    regions = pd.read_csv(power_flow.path("results/power/power_regions.csv"))
    assert set(regions["map"]) >= {"cam", "cam_case"} and set(regions["strength"]) == {0.24}
    landmarks = pd.read_csv(power_flow.path("results/power/power_landmarks.csv"))
    assert set(landmarks["landmarks"]) == {"jaw", "brows", "nose", "eyes", "mouth"}
    averages = np.load(power_flow.path("results/power/r0/s0.24/faces/average_faces.npz"))
    assert averages["shape_normalised_chip"].shape == averages["mean_chip"].shape
