"""Tests of phenoface.audit and the evaluation entry scripts on synthetic data."""

from __future__ import annotations

import dataclasses
import io as bytes_io
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from phenoface import audit, evaluation, stats
from phenoface.cohort import case_labels

CHIP = 48
#: Columns of the repeat table, in order.
REPEAT_TABLE_COLUMNS = ["repeat", "seed", "n_train", "n_test", "auc", "auc_ci_low", "auc_ci_high", "accuracy"]


def write_synthetic_images(folder: Path, n: int, shortcut: bool, seed: int) -> pd.DataFrame:
    """Originals, chips and masks of ``n`` images (half cases) with random face texture.

    Every image has the same kind of face texture and a noisy grey-blue
    background outside a central disc. With ``shortcut`` the controls'
    pictures are brighter and their background bluer, as when controls come
    from another photo source.

    Returns
    -------
    pandas.DataFrame
        A QC-like table (image_id, path, chip, mask, status) joined with the
        split-table columns (group, age, sex, split).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:CHIP, :CHIP]
    face = (yy - CHIP / 2) ** 2 + (xx - CHIP / 2) ** 2 < (CHIP * 0.35) ** 2
    mask = np.where(face, 255, 0).astype(np.uint8)
    rows = []
    for index in range(n):
        group = "case" if index % 2 == 0 else "control"
        chip = rng.normal(140, 25, (CHIP, CHIP, 3))
        background = np.array([110.0, 120.0, 130.0]) + rng.normal(0, 12, 3)
        if shortcut and group == "control":
            chip += 25
            background += np.array([-20.0, 0.0, 40.0])
        chip[~face] = background + rng.normal(0, 6, (int((~face).sum()), 3))
        chip = np.clip(chip, 0, 255).astype(np.uint8)
        image_id = f"img{index:03d}"
        paths = {name: folder / f"{image_id}_{name}" for name in ("original.jpg", "chip.png", "mask.png")}
        Image.fromarray(chip).resize((96, 96)).save(paths["original.jpg"], quality=90)
        Image.fromarray(chip).save(paths["chip.png"])
        Image.fromarray(mask).save(paths["mask.png"])
        rows.append(
            {
                "image_id": image_id,
                "path": str(paths["original.jpg"]),
                "chip": str(paths["chip.png"]),
                "mask": str(paths["mask.png"]),
                "status": "ok",
                "group": group,
                "age": int(rng.integers(20, 70)),
                "sex": "F" if rng.uniform() < 0.5 else "M",
                "split": "test" if (index // 2) % 2 else "train",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shortcut_images(tmp_path_factory) -> pd.DataFrame:
    """120 synthetic images whose controls were photographed differently."""
    return write_synthetic_images(tmp_path_factory.mktemp("shortcut"), 120, shortcut=True, seed=1)


@pytest.fixture(scope="module")
def fair_images(tmp_path_factory) -> pd.DataFrame:
    """120 synthetic images, cases and controls identically distributed."""
    return write_synthetic_images(tmp_path_factory.mktemp("fair"), 120, shortcut=False, seed=2)


def random_descriptors(labels: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """128-d descriptors whose first five dimensions shift with the label by ``signal``."""
    rng = np.random.default_rng(seed)
    descriptors = rng.normal(0, 1, (labels.size, 128))
    descriptors[:, :5] += signal * labels[:, None]
    return descriptors


@pytest.mark.parametrize("quality", [20, 55, 75, 95])
def test_jpeg_quality_recovers_encoder_setting(quality):
    """The quality estimate from the quantisation table is the quality Pillow encoded with."""
    buffer = bytes_io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=quality
    )
    buffer.seek(0)
    with Image.open(buffer) as image:
        assert audit.jpeg_quality(image) == quality


def test_jpeg_quality_nan_for_png():
    """A PNG has no quantisation table: quality is NaN."""
    buffer = bytes_io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    buffer.seek(0)
    with Image.open(buffer) as image:
        assert math.isnan(audit.jpeg_quality(image))


def test_image_statistics_known_values(tmp_path):
    """Flat grey face on a pure red background: brightness, contrast, sharpness, background colour."""
    chip = np.full((20, 20, 3), 100, dtype=np.uint8)
    chip[:, :5] = (255, 0, 0)
    mask = np.full((20, 20), 255, dtype=np.uint8)
    mask[:, :5] = 0
    Image.fromarray(chip).save(tmp_path / "chip.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(chip).resize((40, 30)).save(tmp_path / "original.png")
    result = audit.image_statistics(tmp_path / "original.png", tmp_path / "chip.png", tmp_path / "mask.png")
    assert (result["width"], result["height"]) == (40.0, 30.0)
    assert math.isnan(result["jpeg_quality"])
    assert (result["background_r_mean"], result["background_g_mean"], result["background_b_mean"]) == (
        255,
        0,
        0,
    )
    assert result["background_r_std"] == 0.0
    assert result["contrast"] > 0 and result["sharpness"] > 0


def test_image_statistics_without_mask_leave_background_nan(tmp_path):
    """Without a mask the background statistics are NaN (imputed later), the rest is measured."""
    Image.fromarray(np.full((10, 10, 3), 80, np.uint8)).save(tmp_path / "chip.png")
    result = audit.image_statistics(tmp_path / "chip.png", tmp_path / "chip.png", None)
    assert math.isnan(result["background_b_mean"])
    assert result["brightness"] == pytest.approx(80.0)
    assert result["sharpness"] == 0.0


def test_image_statistics_baseline_detects_acquisition_shortcut(shortcut_images):
    """Controls brighter with a bluer background: the image-statistics baseline reaches AUC > 0.9."""
    stats_table = audit.collect_image_statistics(shortcut_images)
    labels = case_labels(shortcut_images["group"])
    baselines, _ = audit.run_baselines(
        shortcut_images, random_descriptors(labels, 0.0, 3), stats_table, seed=0
    )
    row = baselines.set_index("baseline").loc["image_statistics"]
    assert row["auc"] > 0.9
    assert row["n_test"] == 60 and row["n_train"] == 60


def test_image_statistics_baseline_near_chance_on_identical_images(fair_images):
    """Identically distributed images: the image-statistics baseline stays near 0.5."""
    stats_table = audit.collect_image_statistics(fair_images)
    labels = case_labels(fair_images["group"])
    baselines, _ = audit.run_baselines(fair_images, random_descriptors(labels, 0.0, 4), stats_table, seed=0)
    row = baselines.set_index("baseline").loc["image_statistics"]
    assert abs(row["auc"] - 0.5) < 0.2
    assert row["auc_ci_low"] < 0.5 < row["auc_ci_high"]


def test_descriptor_baseline_finds_face_signal(fair_images):
    """A descriptor that carries the label gives the descriptor baseline a high AUC."""
    stats_table = audit.collect_image_statistics(fair_images)
    labels = case_labels(fair_images["group"])
    baselines, predictions = audit.run_baselines(
        fair_images, random_descriptors(labels, 2.0, 5), stats_table, seed=0
    )
    assert baselines.set_index("baseline").loc["descriptor", "auc"] > 0.9
    assert list(predictions.columns) == ["image_id", "y_true", "descriptor", "age_sex", "image_statistics"]


def test_age_sex_baseline_detects_age_imbalance():
    """Cases older than controls: the age+sex baseline AUC is far above 0.5."""
    rng = np.random.default_rng(0)
    n = 200
    groups = np.where(np.arange(n) % 2 == 0, "case", "control")
    table = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "group": groups,
            "age": np.where(groups == "case", 60, 30) + rng.integers(-10, 10, n),
            "sex": rng.choice(["M", "F"], n),
            "split": np.where((np.arange(n) // 2) % 2 == 0, "train", "test"),
        }
    )
    image_stats = pd.DataFrame(
        {"image_id": table["image_id"], **{c: rng.normal(size=n) for c in audit.IMAGE_STAT_FEATURES}}
    )
    baselines, _ = audit.run_baselines(table, rng.normal(size=(n, 128)), image_stats, seed=0)
    assert baselines.set_index("baseline").loc["age_sex", "auc"] > 0.9


def baselines_table(image_auc: float, age_sex_auc: float, reference_auc: float | None = None) -> pd.DataFrame:
    """A baselines table with chosen AUCs (CI +/- 0.05)."""
    rows = [
        audit._baseline_row("descriptor", None, 10, 10, 128, "ok")
        | {"auc": 0.8, "auc_ci_low": 0.75, "auc_ci_high": 0.85},
        audit._baseline_row("age_sex", None, 10, 10, 2, "ok")
        | {"auc": age_sex_auc, "auc_ci_low": age_sex_auc - 0.05, "auc_ci_high": age_sex_auc + 0.05},
        audit._baseline_row("image_statistics", None, 10, 10, 13, "ok")
        | {"auc": image_auc, "auc_ci_low": image_auc - 0.05, "auc_ci_high": image_auc + 0.05},
    ]
    if reference_auc is None:
        rows.append(audit.reference_row(None, 0, 0))
    else:
        rows.append(
            audit._baseline_row("reference_sheet", None, 0, 20, 0, "ok")
            | {"auc": reference_auc, "auc_ci_low": reference_auc - 0.05, "auc_ci_high": reference_auc + 0.05}
        )
    return pd.DataFrame(rows)


def test_no_warnings_when_audits_pass():
    """Image-statistics AUC under the threshold and age+sex near 0.5: no warning."""
    assert audit.baseline_warnings(baselines_table(0.55, 0.52), warn_auc=0.7) == []


def test_warning_for_acquisition_shortcut():
    """Image-statistics AUC above warn_auc: one warning naming acquisition."""
    warnings = audit.baseline_warnings(baselines_table(0.85, 0.5), warn_auc=0.7)
    assert len(warnings) == 1
    assert "Image-statistics baseline" in warnings[0] and "acquisition" in warnings[0]


def test_warning_for_residual_age_sex_imbalance():
    """Age+sex AUC outside 0.40-0.60 (either side): residual age/sex imbalance warning."""
    for value in (0.35, 0.66):
        warnings = audit.baseline_warnings(baselines_table(0.5, value), warn_auc=0.7)
        assert len(warnings) == 1 and "residual age/sex imbalance" in warnings[0]


def test_warning_for_reference_sheet_separation_either_direction():
    """A reference sheet the model separates (AUC 0.2 or 0.8) warns; AUC 0.55 does not."""
    assert len(audit.baseline_warnings(baselines_table(0.5, 0.5, 0.2), warn_auc=0.7)) == 1
    assert len(audit.baseline_warnings(baselines_table(0.5, 0.5, 0.8), warn_auc=0.7)) == 1
    assert audit.baseline_warnings(baselines_table(0.5, 0.5, 0.55), warn_auc=0.7) == []


def test_reference_separation():
    """Reference scores like the controls give AUC near 0.5; higher scores give a high AUC."""
    rng = np.random.default_rng(0)
    controls = rng.uniform(0, 0.5, 200)
    assert abs(audit.reference_separation(controls, rng.uniform(0, 0.5, 200)).auc - 0.5) < 0.1
    assert audit.reference_separation(controls, rng.uniform(0.4, 0.9, 200)).auc > 0.9


def test_reference_row_skipped_when_not_configured():
    """Without a reference sheet the row says skipped and carries NaN."""
    row = audit.reference_row(None, 0, 0)
    assert row["status"].startswith("skipped") and math.isnan(row["auc"])


def test_score_external_uses_the_model():
    """score_external returns the metrics of the model's probabilities."""
    features = np.array([[0.1], [0.2], [0.8], [0.9]])
    result = audit.score_external("model", features, [0, 0, 1, 1], predict=lambda model, x: x[:, 0])
    assert result["auc"] == 1.0 and result["n"] == 4 and result["accuracy"] == 1.0


def test_run_repeats_uses_each_seed_and_summarises():
    """run_repeats splits and trains once per seed and summarises the test AUCs."""
    n = 40
    cohort = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "group": ["case", "control"] * (n // 2)})
    features = np.where(cohort["group"] == "case", 1.0, 0.0)[:, None]
    seen = []

    def split(table, seed):
        seen.append(seed)
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        return table.assign(split=np.where(order % 2 == 0, "train", "test"))

    table, summary = audit.run_repeats(
        cohort, features, [5, 6, 7], split, lambda x, y, seed: None, lambda model, x: x[:, 0]
    )
    assert seen == [5, 6, 7]
    assert list(table["seed"]) == [5, 6, 7]
    assert (table["n_train"] + table["n_test"] == n).all()
    assert summary == {"n": 3, "auc_mean": 1.0, "auc_sd": 0.0, "auc_min": 1.0, "auc_max": 1.0}


def write_pipeline_inputs(folder: Path, images: pd.DataFrame) -> dict[str, str]:
    """The split table, features npz, QC table of a synthetic run."""
    labels = case_labels(images["group"])
    rng = np.random.default_rng(0)
    pooled = rng.normal(0, 1, (len(images), 256)).astype(np.float32)
    pooled[:, :8] += 1.5 * labels[:, None]
    paths = {
        "split": folder / "cohort_split.csv",
        "features": folder / "features.npz",
        "qc": folder / "preprocess.tsv",
    }
    images[["image_id", "group", "age", "sex", "split"]].to_csv(paths["split"], index=False)
    np.savez(
        paths["features"],
        image_id=images["image_id"].to_numpy(str),
        pooled=pooled,
        descriptor=random_descriptors(labels, 1.0, 7).astype(np.float32),
    )
    images[["image_id", "path", "chip", "mask", "status"]].assign(sheet="cases").to_csv(
        paths["qc"], sep="\t", index=False
    )
    return {key: str(value) for key, value in paths.items()}


def test_audit_script_writes_baselines_and_warns_on_shortcut(shortcut_images, tmp_path):
    """audit_baselines.run writes four baselines (reference skipped) and image stats per cohort image."""
    import audit_baselines

    inputs = write_pipeline_inputs(tmp_path, shortcut_images)
    outputs = {
        "baselines": str(tmp_path / "baselines.csv"),
        "image_stats": str(tmp_path / "image_stats.csv"),
        "roc_png": str(tmp_path / "roc.png"),
    }
    audit_baselines.run(inputs, outputs, SimpleNamespace(seed=1, confidence=0.95, match_on=["age", "sex"]))
    baselines = pd.read_csv(outputs["baselines"]).set_index("baseline")
    assert list(baselines.index) == ["descriptor", "age_sex", "image_statistics", "reference_sheet"]
    assert baselines.loc["image_statistics", "auc"] > 0.9
    assert baselines.loc["reference_sheet", "status"].startswith("skipped")
    assert len(pd.read_csv(outputs["image_stats"])) == len(shortcut_images)
    assert Path(outputs["roc_png"]).stat().st_size > 1000


def test_metrics_json_identical_for_same_seed(shortcut_images, tmp_path):
    """evaluate_classifier.run twice with the same seed writes byte-identical metrics.json with the headline keys."""
    import json

    import audit_baselines
    import evaluate_classifier

    from phenoface.model import HEAD_INPUT, HeadConfig, save_model, train_head

    inputs = write_pipeline_inputs(tmp_path, shortcut_images)
    split = pd.read_csv(inputs["split"])
    with np.load(inputs["features"]) as data:
        train = (split["split"] == "train").to_numpy()
        model, _ = train_head(
            data[HEAD_INPUT][train],
            case_labels(split["group"])[train],
            HeadConfig(epochs=2),
            seed=3,
        )
    save_model(model, tmp_path / "head.keras")
    inputs["head"] = str(tmp_path / "head.keras")
    inputs["baselines"] = str(tmp_path / "baselines.csv")
    audit_baselines.run(
        inputs,
        {
            "baselines": inputs["baselines"],
            "image_stats": str(tmp_path / "s.csv"),
            "roc_png": str(tmp_path / "b.png"),
        },
        SimpleNamespace(seed=1, confidence=0.95, match_on=["age", "sex"]),
    )
    params = SimpleNamespace(
        seed=42,
        age_bins=[0, 10, 20, 30, 40, 50, 60, 70],
        threshold=0.5,
        confidence=0.95,
        n_bootstrap=200,
        calibration_bins=10,
        warn_auc=0.7,
        age_sex_range=[0.4, 0.6],
        external_names=[],
    )
    texts = []
    for run in ("first", "second"):
        out = tmp_path / run
        keys = (
            "metrics",
            "predictions",
            "subgroups",
            "calibration",
            "external",
            "roc_png",
            "calibration_png",
        )
        outputs = {key: str(out / f"{key}.out") for key in keys}
        outputs |= {
            "metrics": str(out / "metrics.json"),
            "roc_png": str(out / "roc.png"),
            "calibration_png": str(out / "cal.png"),
        }
        evaluate_classifier.run(inputs, outputs, params)
        texts.append(Path(outputs["metrics"]).read_text())
    assert texts[0] == texts[1]
    metrics = json.loads(texts[0])
    required = {"auc", "auc_ci_low", "auc_ci_high", "accuracy", "sensitivity", "specificity", "ppv", "npv",
                "brier", "n_test", "n_train", "baselines", "repeats", "warnings"}  # fmt: skip
    assert required <= set(metrics)
    assert list(metrics) == sorted(metrics)
    assert metrics["n_test"] == 60 and metrics["n_train"] == 60
    assert metrics["baselines"]["image_statistics"]["auc"] > 0.9
    assert any("Image-statistics baseline" in sentence for sentence in metrics["warnings"])
    predictions = pd.read_csv(tmp_path / "first" / "predictions.out")
    assert list(predictions.columns) == evaluation.PREDICTION_COLUMNS


def test_repeat_training_script_writes_repeats_and_summary(shortcut_images, tmp_path):
    """repeat_training.run writes one row per derived seed plus mean/sd/min/max rows that evaluate reads back."""
    import repeat_training

    from phenoface import stats
    from phenoface.model import HeadConfig

    inputs = write_pipeline_inputs(tmp_path, shortcut_images)
    params = SimpleNamespace(
        seed=42,
        repeats=2,
        age_bins=[0, 40],
        test_fraction=0.5,
        identity_threshold=0.6,
        linkage="complete",
        **{**dataclasses.asdict(HeadConfig()), "epochs": 1},
    )
    output = tmp_path / "repeats.csv"
    table = repeat_training.run(
        {"split": inputs["split"], "features": inputs["features"]}, {"repeats": output}, params
    )
    assert list(table["repeat"]) == ["1", "2", "mean", "sd", "min", "max"]
    assert list(table["seed"][:2]) == stats.derive_seeds(42, 2)
    summary = evaluation.repeats_summary(output)
    assert summary["n"] == 2 and summary["seeds"] == stats.derive_seeds(42, 2)
    aucs = table["auc"][:2].astype(float)
    assert summary["auc_mean"] == pytest.approx(aucs.mean())
    assert summary["auc_min"] <= summary["auc_mean"] <= summary["auc_max"]


@pytest.mark.parametrize(
    ("image_auc", "warn_auc", "warned"),
    [(0.71, 0.7, True), (0.70, 0.7, False), (0.69, 0.7, False), (0.75, 0.8, False), (0.81, 0.8, True)],
)
def test_image_statistics_warning_at_the_warn_auc_boundary(image_auc, warn_auc, warned):
    """The acquisition-shortcut warning fires strictly above the configured warn_auc, not a fixed 0.7."""
    found = audit.baseline_warnings(baselines_table(image_auc, 0.5), warn_auc=warn_auc)
    assert len(found) == int(warned)
    if warned:
        assert f"above {warn_auc:.2f}" in found[0]


@pytest.mark.parametrize(
    ("reference_auc", "warned"),
    [(0.71, True), (0.29, True), (0.70, False), (0.30, False), (0.69, False), (0.31, False)],
)
def test_reference_sheet_warning_at_the_warn_auc_boundary(reference_auc, warned):
    """The reference-sheet separation max(AUC, 1 - AUC) warns just above warn_auc = 0.7, on either side."""
    found = audit.baseline_warnings(baselines_table(0.5, 0.5, reference_auc), warn_auc=0.7)
    assert len(found) == int(warned)
    if warned:
        assert "separation 0.71 > 0.70" in found[0]


@pytest.mark.parametrize(
    ("age_sex_auc", "age_sex_range", "warned"),
    [(0.40, (0.40, 0.60), False), (0.39, (0.40, 0.60), True), (0.60, (0.40, 0.60), False),
     (0.61, (0.40, 0.60), True), (0.42, (0.45, 0.55), True), (0.58, (0.45, 0.55), True)],
)  # fmt: skip
def test_age_sex_warning_at_the_range_boundaries(age_sex_auc, age_sex_range, warned):
    """The age+sex baseline warns outside the closed range age_sex_range, whatever range is configured."""
    found = audit.baseline_warnings(
        baselines_table(0.5, age_sex_auc), warn_auc=0.7, age_sex_range=age_sex_range
    )
    assert len(found) == int(warned)
    if warned:
        low, high = age_sex_range
        assert f"outside {low:.2f}-{high:.2f}" in found[0]


def test_skipped_or_undefined_audits_do_not_warn():
    """A baseline that did not run (status not ok) or has a NaN AUC is never a warning."""
    table = baselines_table(0.95, 0.95, 0.95)
    table.loc[table["baseline"] == "image_statistics", "status"] = "skipped: no images"
    table.loc[table["baseline"] == "age_sex", "auc"] = math.nan
    table.loc[table["baseline"] == "reference_sheet", "auc"] = math.nan
    assert audit.baseline_warnings(table, warn_auc=0.7) == []


def test_age_sex_matrix_codes_unknown_sex_halfway() -> None:
    """An empty sex (control in an age-only bin) is 0.5, not missing: no indicator can flag those controls."""
    table = pd.DataFrame({"age": [30, 40, 5], "sex": ["M", "F", ""]})
    assert audit.age_sex_matrix(table).tolist() == [[30.0, 1.0], [40.0, 0.0], [5.0, 0.5]]


# --- Behaviours that mutation testing (bench/mutation.py) found unpinned -------------------------


def test_warning_defaults_are_warn_auc_07_and_age_sex_040_060():
    """Without arguments the thresholds are audit.warn_auc = 0.7 and audit.age_sex_range = 0.40-0.60."""
    assert len(audit.baseline_warnings(baselines_table(0.71, 0.5))) == 1
    assert audit.baseline_warnings(baselines_table(0.69, 0.41)) == []
    assert len(audit.baseline_warnings(baselines_table(0.5, 0.39))) == 1


def test_warning_sentences_in_full():
    """The three audit sentences, word for word (they are what a reader of metrics.json sees)."""
    image, reference, age_sex = audit.baseline_warnings(baselines_table(0.85, 0.3, 0.2), warn_auc=0.7)
    assert image == (
        "Image-statistics baseline reaches AUC 0.85 (95% CI 0.80-0.90), above 0.70: cases and controls differ in "
        "how the photos were taken (resolution, compression, lighting, background), so the classifier's AUC may "
        "reflect acquisition rather than faces."
    )
    assert reference == (
        "The model separates the second healthy reference sheet from the pool controls with AUC 0.20 "
        "(95% CI 0.15-0.25) (separation 0.80 > 0.70): it responds to the image source, not only to disease."
    )
    assert age_sex == (
        "Age+sex baseline gives AUC 0.30 (95% CI 0.25-0.35), outside 0.40-0.60: residual age/sex imbalance "
        "between cases and controls in the test split; the matching did not fully work."
    )


def test_skipped_reference_row_has_zero_counts():
    """The skipped reference-sheet row has 0 train/test images and 0 features, NaN AUC."""
    row = audit.reference_row(None, 0, 0)
    assert (row["n_train"], row["n_test"], row["n_features"]) == (0, 0, 0)
    assert row["status"] == "skipped: audit.reference_sheet not configured"
    assert list(row) == audit.BASELINE_COLUMNS
    assert all(math.isnan(row[key]) for key in ("auc", "auc_ci_low", "auc_ci_high", "auc_se"))


def test_reference_separation_uses_the_confidence_level():
    """The reference AUC interval is computed at the level asked for (reference = positives)."""
    controls, reference = [0.1, 0.4, 0.35, 0.8, 0.2], [0.3, 0.9, 0.7, 0.6]
    labels = [0] * 5 + [1] * 4
    for confidence in (0.9, 0.95):
        expected = stats.auc_delong(labels, controls + reference, confidence)
        assert audit.reference_separation(controls, reference, confidence) == expected


def test_score_external_passes_model_threshold_and_level():
    """score_external calls predict with the model and summarises at the given threshold and level."""
    features = np.array([[0.1], [0.6], [0.4], [0.8], [0.3], [0.7]])
    labels = [0, 0, 1, 1, 0, 1]

    def predict(model, x):
        return x[:, 0] * model["scale"]

    result = audit.score_external(
        {"scale": 1.0}, features, labels, predict=predict, threshold=0.65, confidence=0.9
    )
    assert result == stats.classification_summary(np.array(labels), features[:, 0], 0.65, 0.9)


def test_run_repeats_table_in_full(caplog):
    """Each repeat trains on its train rows only (cohort order restored), tests on its test rows, and is logged."""
    import logging

    n = 40
    rng = np.random.default_rng(3)
    cohort = pd.DataFrame(
        {"image_id": [f"i{k:02d}" for k in range(n)], "group": ["case", "control"] * (n // 2)}
    )
    labels = case_labels(cohort["group"])
    features = (labels + rng.normal(0, 0.8, n))[:, None]
    trained = []

    def split(table, seed):
        # 30 train / 10 test, returned in reverse order: run_repeats must realign it to the cohort.
        test = np.random.default_rng(seed).permutation(n) < 10
        return table.assign(split=np.where(test, "test", "train")).iloc[::-1]

    def train(x, y, seed):
        assert isinstance(seed, int)
        trained.append((x.shape, int(y.sum()), seed))
        return {"scale": 2.0}

    def predict(model, x):
        return 1 / (1 + np.exp(-model["scale"] * x[:, 0]))

    with caplog.at_level(logging.INFO, logger=audit.LOGGER.name):
        table, summary = audit.run_repeats(cohort, features, [5, 6, 7], split, train, predict, confidence=0.9)
    assert list(table.columns) == REPEAT_TABLE_COLUMNS
    assert table["repeat"].tolist() == [1, 2, 3] and table["seed"].tolist() == [5, 6, 7]
    assert (table["n_train"] == 30).all() and (table["n_test"] == 10).all()
    for row, seed in zip(table.itertuples(), [5, 6, 7]):
        test = np.random.default_rng(seed).permutation(n) < 10
        expected = stats.classification_summary(
            labels[test], predict({"scale": 2.0}, features[test]), confidence=0.9
        )
        assert (row.auc, row.auc_ci_low, row.auc_ci_high, row.accuracy) == (
            expected["auc"],
            expected["auc_ci_low"],
            expected["auc_ci_high"],
            expected["accuracy"],
        )
        assert trained[row.repeat - 1] == ((30, 1), int(labels[~test].sum()), seed)
    assert summary == stats.summarise_repeats(table["auc"].tolist())
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("repeat ")]
    assert len(messages) == 3
    assert messages[0].startswith(f"repeat 1/3 (seed 5): AUC {table['auc'][0]:.3f}, ")
    assert float(messages[0].split(", ")[1].rstrip(" s")) < 60


def test_reference_row_when_the_audit_ran():
    """The reference row carries the DeLong result, all reference + control images as test, status ok."""
    result = stats.AucResult(0.6, 0.05, 0.5, 0.7, 12, 30)
    row = audit.reference_row(result, 12, 30)
    assert row == {
        "baseline": "reference_sheet", "status": "ok", "auc": 0.6, "auc_ci_low": 0.5, "auc_ci_high": 0.7,
        "auc_se": 0.05, "n_train": 0, "n_test": 42, "n_features": 0,
        "description": audit.BASELINE_DESCRIPTIONS["reference_sheet"],
    }  # fmt: skip


def test_run_repeats_without_seeds_gives_an_empty_table():
    """evaluation.repeats: 0 gives an empty table that still has every column, and n = 0."""
    cohort = pd.DataFrame({"image_id": ["a", "b"], "group": ["case", "control"]})
    table, summary = audit.run_repeats(cohort, np.zeros((2, 1)), [], None, None, None)
    assert list(table.columns) == REPEAT_TABLE_COLUMNS
    assert table.empty and summary["n"] == 0


def qc_rows(tmp_path: Path, n: int, masks: list) -> pd.DataFrame:
    """A QC table of ``n`` rows pointing at one existing image file, with the given mask cells (cycled)."""
    image = tmp_path / "image.png"
    image.write_bytes(b"not read: image_statistics is replaced in these tests")
    return pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "path": str(image),
            "chip": str(image),
            "mask": [masks[k % len(masks)] for k in range(n)],
        }
    )


def test_collect_image_statistics_passes_masks_and_logs_progress(tmp_path, monkeypatch, caplog):
    """Each row's mask (None when empty or missing) reaches image_statistics; progress every 200 images and at the end."""
    import logging
    from types import SimpleNamespace

    seen = []

    def fake_statistics(path, chip, mask):
        seen.append(mask)
        return dict.fromkeys(audit.IMAGE_STAT_FEATURES, 1.0)

    # The clock reads 1000 s plus 1 ms per image already done, so rates and ETAs are exact.
    monkeypatch.setattr(audit, "image_statistics", fake_statistics)
    monkeypatch.setattr(audit, "time", SimpleNamespace(monotonic=lambda: 1000.0 + 0.001 * len(seen)))
    images = qc_rows(tmp_path, 400, [str(tmp_path / "mask.png"), "", math.nan])
    with caplog.at_level(logging.INFO, logger=audit.LOGGER.name):
        table = audit.collect_image_statistics(images)
    assert table["image_id"].tolist() == images["image_id"].tolist()
    assert list(table.columns) == ["image_id", *audit.IMAGE_STAT_FEATURES]
    assert seen[:3] == [str(tmp_path / "mask.png"), None, None]
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("image statistics")]
    assert messages == [
        "image statistics: 200/400 images (1000/s, ETA 0 s)",
        "image statistics: 400/400 images (1000/s, ETA 0 s)",
    ]


def test_collect_image_statistics_names_missing_columns_and_files(tmp_path):
    """A QC table without the needed columns, or pointing at a deleted chip, stops with what to re-run."""
    with pytest.raises(audit.PhenofaceError) as caught:
        audit.collect_image_statistics(pd.DataFrame({"image_id": ["a"], "path": ["x"]}))
    assert str(caught.value) == (
        "QC table lacks column(s) ['chip', 'mask']; the image-statistics audit needs "
        "image_id, path, chip and mask (results/qc/preprocess.tsv)."
    )
    images = qc_rows(tmp_path, 1, [""]).assign(chip=str(tmp_path / "gone.png"))
    with pytest.raises(audit.PhenofaceError) as caught:
        audit.collect_image_statistics(images)
    assert str(caught.value) == (
        f"image i0: chip file {tmp_path / 'gone.png'} not found; "
        "re-run preprocessing (results/qc/preprocess.tsv is out of date)."
    )


def test_jpeg_quality_recovers_every_libjpeg_quality():
    """Every quality 1-100 that libjpeg (through Pillow) writes is read back, the clamped ends 1 and 100 included."""
    grey = Image.fromarray(np.full((8, 8), 128, dtype=np.uint8))
    estimates = {}
    for quality in range(1, 101):
        buffer = bytes_io.BytesIO()
        grey.save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as image:
            estimates[quality] = audit.jpeg_quality(image)
    assert {q: e for q, e in estimates.items() if e != q} == {}


def test_collect_image_statistics_of_no_images_keeps_the_columns():
    """An empty QC table gives an empty statistics table that still has image_id and every feature column."""
    table = audit.collect_image_statistics(pd.DataFrame(columns=["image_id", "path", "chip", "mask"]))
    assert table.empty and list(table.columns) == ["image_id", *audit.IMAGE_STAT_FEATURES]


def skewed_training_set() -> tuple[np.ndarray, np.ndarray]:
    """One feature whose training median (1.5) is far from its mean (8.7); the label follows it."""
    x = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 30.0, 40.0, 3.0, 9.0])[:, None]
    return x, np.array([0, 0, 0, 1, 0, 1, 1, 1, 0, 1])


def test_logistic_baseline_reads_a_missing_test_value_as_the_training_median():
    """A test row missing a value is scored as if it held the training median, not the mean."""
    train_x, train_y = skewed_training_set()
    probs = audit.fit_predict_logistic(
        train_x, train_y, np.array([[math.nan], [np.median(train_x)], [train_x.mean()]]), seed=0
    )
    assert probs[0] == pytest.approx(probs[1], rel=1e-12)
    assert abs(probs[0] - probs[2]) > 0.01


def test_logistic_baseline_learns_from_missingness():
    """Missing values are flagged by an indicator: when only cases lack a value, a missing value predicts a case."""
    spread = np.array([-2.0, -1.0, 1.0, 2.0] * 5)
    train_x = np.r_[spread, np.full(20, math.nan)][:, None]
    train_y = np.r_[np.zeros(20, int), np.ones(20, int)]
    probs = audit.fit_predict_logistic(train_x, train_y, np.array([[math.nan], [0.0]]), seed=0)
    assert probs[0] > 0.9 and probs[1] < 0.1


def test_logistic_baseline_keeps_an_all_missing_feature_quietly():
    """A feature missing in every training row (no masks: no background colour) is kept without a warning."""
    train_x, train_y = skewed_training_set()
    with_empty = np.c_[train_x, np.full(len(train_x), math.nan)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = audit.fit_predict_logistic(with_empty, train_y, with_empty[:3], seed=0)
    assert probs == pytest.approx(audit.fit_predict_logistic(train_x, train_y, train_x[:3], seed=0), rel=1e-9)


def test_logistic_baseline_does_not_depend_on_feature_units():
    """Features are standardised: a column in other units (pixels vs thousands of pixels) gives the same probabilities."""
    rng = np.random.default_rng(5)
    train_x = rng.normal(0, 1, (40, 3))
    train_y = (train_x[:, 0] + rng.normal(0, 1, 40) > 0).astype(int)
    rescaled = train_x * np.array([1000.0, 1.0, 0.001])
    np.testing.assert_allclose(
        audit.fit_predict_logistic(rescaled, train_y, rescaled, seed=0),
        audit.fit_predict_logistic(train_x, train_y, train_x, seed=0),
        rtol=1e-6,
    )


def test_logistic_baseline_fits_float32_descriptors_in_double_precision():
    """float32 descriptors (as the backbone writes them) give exactly the probabilities of their float64 values."""
    rng = np.random.default_rng(6)
    descriptors = rng.normal(0, 1, (40, 8)).astype(np.float32)
    labels = rng.integers(0, 2, 40)
    probs = audit.fit_predict_logistic(descriptors, labels, descriptors, seed=0)
    assert probs.dtype == np.float64
    np.testing.assert_array_equal(
        probs,
        audit.fit_predict_logistic(descriptors.astype(float), labels, descriptors.astype(float), seed=0),
    )


def test_score_external_rejects_a_label_other_than_0_or_1():
    """A label of 0.5 in an external set stops with the labels' rule instead of being truncated to 0."""
    features = np.array([[0.1], [0.2], [0.8], [0.9]])
    with pytest.raises(ValueError, match=r"labels must be 0 \(control\) or 1 \(case\)"):
        audit.score_external("model", features, [0, 0.5, 1, 1], predict=lambda model, x: x[:, 0])


def two_colour_chip(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 20x20 chip (grey and green face, striped red background in the 5 left columns) and its mask."""
    chip = np.full((20, 20, 3), 100, dtype=np.uint8)
    chip[10:, 5:] = (90, 140, 60)
    chip[:, 0:5:2] = (250, 0, 10)
    chip[:, 1:5:2] = (200, 20, 10)
    mask = np.full((20, 20), 255, dtype=np.uint8)
    mask[:, :5] = 0
    Image.fromarray(chip).save(tmp_path / "chip.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path / "chip.png", tmp_path / "mask.png", chip, mask


def test_image_statistics_equal_their_definitions(tmp_path):
    """Size and JPEG quality of the original; grey mean, SD, Laplacian variance, HSV saturation; background colour."""
    from scipy import ndimage

    chip_path, mask_path, chip, mask = two_colour_chip(tmp_path)
    Image.fromarray(chip).resize((40, 30)).save(tmp_path / "original.jpg", quality=80)
    result = audit.image_statistics(tmp_path / "original.jpg", chip_path, mask_path)

    rgb = chip.astype(float)
    grey = np.round(rgb @ [0.299, 0.587, 0.114])  # ITU-R BT.601 luma, 8-bit
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.round(np.where(high > 0, (high - low) / np.maximum(high, 1) * 255, 0))
    background = rgb[mask == 0]
    expected = {
        "width": 40.0, "height": 30.0, "jpeg_quality": 80.0,
        "brightness": grey.mean(), "contrast": grey.std(), "saturation": saturation.mean(),
        "sharpness": ndimage.laplace(grey, mode="mirror").var(),
        **{f"background_{c}_mean": background[:, k].mean() for k, c in enumerate("rgb")},
        **{f"background_{c}_std": background[:, k].std() for k, c in enumerate("rgb")},
    }  # fmt: skip
    assert list(result) == audit.IMAGE_STAT_FEATURES
    assert result == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mask_cell", ["", "nan", "missing.png", "all-face"])
def test_image_statistics_without_background_pixels_leave_background_nan(tmp_path, mask_cell):
    """No mask (empty cell, NaN, a file that is not there) or a mask with no background: background NaN, rest measured."""
    chip_path, _, _, _ = two_colour_chip(tmp_path)
    if mask_cell == "all-face":
        Image.fromarray(np.full((20, 20), 1, dtype=np.uint8)).save(tmp_path / "face.png")
        mask_cell = str(tmp_path / "face.png")
    elif mask_cell == "missing.png":
        mask_cell = str(tmp_path / mask_cell)
    result = audit.image_statistics(chip_path, chip_path, mask_cell)
    assert all(math.isnan(result[f"background_{c}_{s}"]) for c in "rgb" for s in ("mean", "std"))
    assert result["width"] == 20.0 and result["brightness"] > 0


def test_image_statistics_mask_of_another_size_names_both_files(tmp_path):
    """A mask whose size differs from the chip's stops with both sizes (width x height) and the fix."""
    Image.fromarray(np.full((16, 20, 3), 90, dtype=np.uint8)).save(tmp_path / "chip.png")
    Image.fromarray(np.zeros((10, 30), dtype=np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(audit.PhenofaceError) as caught:
        audit.image_statistics(tmp_path / "chip.png", tmp_path / "chip.png", tmp_path / "small.png")
    assert str(caught.value) == (
        f"mask {tmp_path / 'small.png'} is 30x10 but chip {tmp_path / 'chip.png'} is 20x16; "
        "re-run preprocessing for this image."
    )


@pytest.mark.parametrize("mode", ["RGB", "1"])
def test_image_statistics_read_a_colour_or_1_bit_mask_as_grey(tmp_path, mode):
    """A mask saved in colour or as 1-bit black and white marks the same background as the grey mask."""
    chip_path, mask_path, _, mask = two_colour_chip(tmp_path)
    Image.fromarray(mask).convert(mode).save(tmp_path / "other_mask.png")
    measured = audit.image_statistics(chip_path, chip_path, tmp_path / "other_mask.png")
    assert measured == pytest.approx(
        audit.image_statistics(chip_path, chip_path, mask_path), rel=1e-12, nan_ok=True
    )


def test_mask_cell_read_as_nan_is_no_mask_even_beside_a_file_called_nan(tmp_path, monkeypatch):
    """The text "nan" (an empty TSV cell read back) means no mask, not a file of that name in the working folder."""
    chip_path, _, _, _ = two_colour_chip(tmp_path)
    (tmp_path / "nan").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)
    result = audit.image_statistics(chip_path, chip_path, "nan")
    assert math.isnan(result["background_r_mean"])


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (("age",), [[30.0], [41.0], [math.nan], [7.0]]),
        (("sex",), [[1.0], [0.0], [0.5], [0.5]]),
        (("sex", "age"), [[1.0, 30.0], [0.0, 41.0], [0.5, math.nan], [0.5, 7.0]]),
    ],
)
def test_age_sex_matrix_has_the_matched_variables_in_order(variables, expected):
    """One column per matched variable, in the order given; sex in any case; a missing sex is 0.5, a bad age NaN."""
    table = pd.DataFrame({"age": ["30", 41, "unknown", 7], "sex": ["m", "f", None, ""]})
    np.testing.assert_array_equal(audit.age_sex_matrix(table, variables), expected)


@pytest.mark.parametrize("variables", [(), ("age", "height")])
def test_age_sex_matrix_rejects_other_variables(variables):
    """No variable, or one that is not age or sex, is a programming error naming what was given."""
    with pytest.raises(ValueError) as caught:
        audit.age_sex_matrix(pd.DataFrame({"age": [30], "sex": ["M"]}), variables)
    assert str(caught.value) == f"variables must be a non-empty subset of age, sex; got {variables}"


def small_split(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """A split table (alternating case/control, train/test in pairs), 128-d descriptors and image statistics."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "group": ["case", "control"] * (n // 2),
            "age": rng.integers(20, 70, n),
            "sex": rng.choice(["M", "F"], n),
            "split": np.where((np.arange(n) // 2) % 2 == 0, "train", "test"),
        }
    )
    image_stats = pd.DataFrame(
        {"image_id": table["image_id"][::-1], **{c: rng.normal(size=n) for c in audit.IMAGE_STAT_FEATURES}}
    )
    return table, rng.normal(size=(n, 128)), image_stats


def test_run_baselines_table_rows_and_predictions(caplog):
    """Three rows in order, each the DeLong AUC of its test predictions at the level asked; counts, features, logs."""
    import logging

    table, descriptors, image_stats = small_split()
    with caplog.at_level(logging.INFO, logger=audit.LOGGER.name):
        baselines, predictions = audit.run_baselines(
            table, descriptors, image_stats, seed=3, confidence=0.8, matched=("age",)
        )
    assert list(baselines.columns) == audit.BASELINE_COLUMNS
    assert baselines["baseline"].tolist() == ["descriptor", "age_sex", "image_statistics"]
    assert baselines["status"].tolist() == ["ok"] * 3
    assert baselines["n_train"].tolist() == [20] * 3 and baselines["n_test"].tolist() == [20] * 3
    assert baselines["n_features"].tolist() == [128, 1, 13]
    assert baselines["description"].tolist() == [
        audit.BASELINE_DESCRIPTIONS[b] for b in baselines["baseline"]
    ]
    test = table[table["split"] == "test"]
    assert predictions["image_id"].tolist() == test["image_id"].tolist()
    assert predictions["y_true"].tolist() == case_labels(test["group"]).tolist()
    for row in baselines.to_dict("records"):
        result = stats.auc_delong(predictions["y_true"], predictions[row["baseline"]], 0.8)
        assert {k: row[k] for k in result.as_dict()} == pytest.approx(result.as_dict(), rel=1e-12)
        assert f"baseline {row['baseline']}: {result.label(0.8)}" in caplog.messages
    # The image statistics (given in reverse row order) are looked up by image_id.
    train = (table["split"] == "train").to_numpy()
    matrix = image_stats.set_index("image_id").loc[table["image_id"], audit.IMAGE_STAT_FEATURES].to_numpy()
    expected = audit.fit_predict_logistic(
        matrix[train], case_labels(table["group"])[train], matrix[~train], 3
    )
    np.testing.assert_allclose(predictions["image_statistics"], expected, rtol=1e-12)


def test_run_baselines_age_sex_uses_only_the_matched_variables():
    """Matched on age and sex, the age_sex baseline has two features; its probabilities follow both."""
    table, descriptors, image_stats = small_split()
    baselines, predictions = audit.run_baselines(table, descriptors, image_stats, seed=0)
    assert baselines.set_index("baseline").loc["age_sex", "n_features"] == 2
    train = (table["split"] == "train").to_numpy()
    matrix = audit.age_sex_matrix(table)
    expected = audit.fit_predict_logistic(
        matrix[train], case_labels(table["group"])[train], matrix[~train], 0
    )
    np.testing.assert_allclose(predictions["age_sex"], expected, rtol=1e-12)


def test_run_baselines_stops_on_inputs_that_do_not_fit():
    """Misaligned descriptors, images without statistics, a missing split or a one-group split each stop the audit."""
    table, descriptors, image_stats = small_split()
    with pytest.raises(ValueError) as caught:
        audit.run_baselines(table, descriptors[:-1], image_stats, seed=0)
    assert str(caught.value) == "descriptors must be aligned with split_table rows"
    with pytest.raises(audit.PhenofaceError) as caught:
        audit.run_baselines(
            table, descriptors, image_stats[~image_stats["image_id"].isin(["i3", "i1"])], seed=0
        )
    assert str(caught.value) == (
        "2 cohort image(s) have no image statistics (first: i1); the QC table and the split table "
        "disagree: re-run preprocessing and the split."
    )
    for split in ("train", "test"):
        with pytest.raises(audit.PhenofaceError) as caught:
            audit.run_baselines(table.assign(split=split), descriptors, image_stats, seed=0)
        assert str(caught.value) == "the split table needs both train and test rows for the baselines."
    for part in ("train", "test"):
        one_group = table.assign(group=np.where(table["split"] == part, "case", table["group"]))
        with pytest.raises(audit.PhenofaceError) as caught:
            audit.run_baselines(one_group, descriptors, image_stats, seed=0)
        assert (
            str(caught.value) == f"the {part} split holds one group only; baselines need cases and controls."
        )


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_image_statistics_read_grey_or_alpha_chips_as_rgb(tmp_path, mode):
    """A chip saved as greyscale or with an alpha channel is measured like its RGB version."""
    chip_path, mask_path, chip, _ = two_colour_chip(tmp_path)
    Image.fromarray(chip).convert(mode).save(tmp_path / "other.png")
    Image.open(tmp_path / "other.png").convert("RGB").save(tmp_path / "as_rgb.png")
    measured = audit.image_statistics(chip_path, tmp_path / "other.png", mask_path)
    assert measured == pytest.approx(
        audit.image_statistics(chip_path, tmp_path / "as_rgb.png", mask_path), rel=1e-12, nan_ok=True
    )


def test_jpeg_quality_of_an_mpo_photo():
    """A multi-picture JPEG (Pillow's MPO: phone photos with a preview or depth picture) has its quality read."""
    picture = Image.fromarray(np.full((16, 16, 3), 120, dtype=np.uint8))
    buffer = bytes_io.BytesIO()
    picture.save(buffer, "MPO", quality=70, save_all=True, append_images=[picture])
    buffer.seek(0)
    with Image.open(buffer) as image:
        assert image.format == "MPO" and audit.jpeg_quality(image) == 70
