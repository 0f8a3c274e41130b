"""Tests for phenoface.gradcam: guided Grad-CAM on the real frozen ResNet, regions and checks."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from phenoface import backbone, gradcam
from phenoface.errors import PhenofaceError
from phenoface.model import FC1_LAYER, FC2_LAYER, HeadConfig, build_head, compose_model
from phenoface.stats import bh_qvalues

LAYER = "level2_block3"
N_CHIPS = 6


def _run(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    """The model's output, computed eagerly.

    Not ``predict``: a compiled TensorFlow function waits forever on the thread pool
    of the process it was forked from, and mutation testing forks one child per mutant.
    """
    with warnings.catch_warnings():
        # A model built on a list of one input (the logit model) warns about a bare array.
        warnings.filterwarnings("ignore", "The structure of `inputs` doesn't match")
        return keras.ops.convert_to_numpy(model(inputs.astype(np.float32)))


@pytest.fixture(scope="module")
def real_faces(faces_dir):
    """Aligned chips and their chip landmarks for a few real developer faces."""
    from phenoface.faces import FacePreprocessor
    from phenoface.models import dlib_model_path

    preprocessor = FacePreprocessor(dlib_model_path("landmarks"))
    chips, landmarks = [], []
    for path in sorted(faces_dir.glob("*.jpg")):
        result = preprocessor.process_file(path)
        if result.status == "ok":
            chips.append(result.chip)
            landmarks.append(result.chip_landmarks)
        if len(chips) == N_CHIPS:
            break
    return np.stack(chips), np.stack(landmarks)


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """The real backbone with an untrained (seeded) head: chips -> probability."""
    from phenoface.models import dlib_model_path

    weights = tmp_path_factory.mktemp("gradcam") / "dlib_resnet.weights.h5"
    backbone.convert_dlib_resnet(dlib_model_path("resnet"), weights)
    keras.utils.set_random_seed(3)
    head = build_head(256, HeadConfig(standardize=False))
    return compose_model(backbone.load_backbone(weights), head)


def test_logit_model_returns_the_logit_of_the_probability(composed, real_faces):
    """sigmoid(logit model) equals the composed model's probability on real chips."""
    chips = real_faces[0]
    probability = _run(composed, chips)[:, 0]
    logit = _run(gradcam.logit_model(composed), chips)[:, 0]
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), probability, rtol=1e-5, atol=1e-6)
    assert np.ptp(logit) > 0


def test_logit_model_rejects_a_model_without_a_dense_output():
    """A model that does not end in one Dense unit gets a clear error."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.ReLU()(inputs))
    with pytest.raises(PhenofaceError, match="one-unit Dense"):
        gradcam.logit_model(model)


def test_class_cams_weighs_channels_by_mean_gradient():
    """The signed map is sum_c mean(grad_c) * A_c, checked by hand on 2x2x2 arrays."""
    activations = np.array([[[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 1.0]]]], np.float32)
    grads = np.zeros_like(activations)
    grads[..., 0] = 0.5  # channel 0 weight 0.5
    grads[0, 0, 0, 1] = -4.0  # channel 1 weight -1
    expected = 0.5 * activations[..., 0] - 1.0 * activations[..., 1]
    np.testing.assert_allclose(gradcam.class_cams(activations, grads), expected)
    as_float64 = gradcam.class_cams(activations.astype(np.float64), grads.astype(np.float64))
    assert as_float64.dtype == np.float32


def test_guided_relu_passes_only_positive_gradient_into_positive_input():
    """Guided ReLU: forward is ReLU; backward keeps upstream only where input > 0 and upstream > 0."""
    x = np.array([-1.0, 2.0, 3.0, 0.5], np.float32)
    upstream = np.array([1.0, 1.0, -1.0, 2.0], np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(backbone.guided_relu(x)), [0, 2, 3, 0.5])

    def score(args):
        value = keras.ops.sum(backbone.guided_relu(args["x"]) * upstream)
        return value, {}

    grads, _ = backbone._grad_with_aux(score, {"x": x})
    np.testing.assert_array_equal(grads["x"], [0.0, 1.0, 0.0, 2.0])


def test_case_and_control_maps_of_one_chip_do_not_overlap(composed, real_faces):
    """Grad-CAM for "control" is the positive part of minus the case sum: disjoint supports."""
    chips = real_faces[0][:3]
    logit = gradcam.logit_model(composed)
    as_case = gradcam.explain_chips(logit, chips, ["case"] * 3, LAYER, batch_size=3, keep_guided=True)
    as_control = gradcam.explain_chips(logit, chips, ["control"] * 3, LAYER, batch_size=3, keep_guided=True)
    np.testing.assert_allclose(as_case["cam_signed"], as_control["cam_signed"])
    assert as_case["cam_signed"].shape == (3, 8, 8)
    signed_up = gradcam.upsample_maps(as_case["cam_signed"])
    for case_map, control_map, signed in zip(as_case["cam"], as_control["cam"], signed_up):
        assert case_map.shape == (150, 150)
        assert case_map.max() == pytest.approx(1.0) and control_map.max() == pytest.approx(1.0)
        # Each class's strongest evidence sits where the signed sum has its sign.
        assert signed.flat[case_map.argmax()] > 0
        assert signed.flat[control_map.argmax()] < 0
    # The case-evidence map does not depend on the group explained; for cases it is the own map.
    np.testing.assert_allclose(as_case["cam_case"], as_control["cam_case"])
    np.testing.assert_allclose(as_case["cam_case"], as_case["cam"])
    # Guided backpropagation depends on the explained class.
    assert not np.allclose(as_case["guided"], as_control["guided"])


def test_explain_chips_does_not_depend_on_batch_size(composed, real_faces):
    """Batches of 2 and of 4 give the same maps; colour gradients are kept only on request."""
    chips = real_faces[0][:4]
    logit = gradcam.logit_model(composed)
    groups = ["case", "control", "control", "case"]
    small = gradcam.explain_chips(logit, chips, groups, LAYER, batch_size=2)
    large = gradcam.explain_chips(logit, chips, groups, LAYER, batch_size=4)
    assert "guided" not in small
    for key in ("logit", "cam", "cam_case", "guided_gradcam"):
        np.testing.assert_allclose(small[key], large[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert small["guided_gradcam"].shape == (4, 150, 150)


def test_randomize_head_changes_only_the_head(composed):
    """Head kernels are redrawn (seeded, reproducible); backbone weights are untouched."""
    first = gradcam.randomize_head(composed, [FC1_LAYER, FC2_LAYER], seed=5)
    again = gradcam.randomize_head(composed, [FC1_LAYER, FC2_LAYER], seed=5)
    np.testing.assert_array_equal(
        first.get_layer(FC1_LAYER).get_weights()[0], again.get_layer(FC1_LAYER).get_weights()[0]
    )
    assert not np.allclose(
        first.get_layer(FC1_LAYER).get_weights()[0], composed.get_layer(FC1_LAYER).get_weights()[0]
    )
    np.testing.assert_array_equal(
        first.get_layer("level2_block3_conv1").get_weights()[0],
        composed.get_layer("level2_block3_conv1").get_weights()[0],
    )


def test_randomization_similarity_separates_same_from_random_head(composed, real_faces):
    """The same head gives correlation 1; a random head gives clearly lower correlations."""
    chips = real_faces[0]
    logit = gradcam.logit_model(composed)
    same = gradcam.randomization_similarity(logit, logit, chips, LAYER)
    np.testing.assert_allclose(same, 1.0, atol=1e-6)
    random_logit = gradcam.logit_model(gradcam.randomize_head(composed, [FC1_LAYER, FC2_LAYER], seed=11))
    different = gradcam.randomization_similarity(logit, random_logit, chips, LAYER)
    assert different.shape == (len(chips),)
    assert np.nanmedian(np.abs(different)) < 0.9


def test_region_labels_cover_the_face_parts(real_faces):
    """On real landmarks every region is present and a mouth-only map puts its mass on the mouth."""
    landmarks = real_faces[1][0]
    labels = gradcam.region_labels(landmarks)
    assert labels.shape == (150, 150)
    counts = np.bincount(labels.ravel(), minlength=len(gradcam.REGIONS))
    assert (counts > 0).all()
    mouth_centre = np.round(landmarks[48:60].mean(axis=0)).astype(int)
    assert gradcam.REGIONS[labels[mouth_centre[1], mouth_centre[0]]] == "mouth"
    mouth_map = (labels == gradcam.REGIONS.index("mouth")).astype(np.float32)[None]
    shares = gradcam.region_shares(mouth_map, labels[None])
    assert shares[0, gradcam.REGIONS.index("mouth")] == pytest.approx(1.0)
    corner = gradcam.REGIONS[labels[0, 0]]
    assert corner == "other"


def test_region_labels_reject_bad_landmarks():
    """Landmarks of the wrong shape or with NaN are refused with a clear error."""
    with pytest.raises(PhenofaceError) as wrong_shape:
        gradcam.region_labels(np.zeros((5, 2)))
    assert str(wrong_shape.value) == "landmarks must be 68 finite (x, y) points, got shape (5, 2)"
    bad = np.full((68, 2), 75.0)
    bad[3] = np.nan
    with pytest.raises(PhenofaceError, match="68 finite"):
        gradcam.region_labels(bad)


def test_region_shares_by_hand():
    """Shares are mass per label over total mass; an all-zero map gives NaN."""
    labels = np.zeros((2, 2, 2), np.uint8)
    labels[:, 0, 0] = 1
    labels[:, 1, 1] = 6
    maps = np.array([[[1.0, 1.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shares = gradcam.region_shares(maps, labels)
    np.testing.assert_allclose(shares[0, [0, 1, 6]], [0.25, 0.25, 0.5])
    assert shares[0].sum() == pytest.approx(1.0)
    assert np.isnan(shares[1]).all()


def _share_frame(skin_case: float, n: int, seed: int) -> pd.DataFrame:
    """Synthetic share rows: cases put ``skin_case`` of their mass on skin, controls 0.3."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, skin in (("case", skin_case), ("control", 0.3)):
        for index in range(n):
            skin_share = np.clip(skin + rng.normal(0, 0.03), 0, 1)
            values = np.full(len(gradcam.REGIONS), (1 - skin_share) / (len(gradcam.REGIONS) - 1))
            values[gradcam.REGIONS.index("skin")] = skin_share
            row = {"image_id": f"{group}{index}", "group": group, "map": "cam"}
            row.update(dict(zip(gradcam.REGIONS, values)))
            row.update({f"area_{r}": 1 / len(gradcam.REGIONS) for r in gradcam.REGIONS})
            rows.append(row)
    return pd.DataFrame(rows)


def test_region_tests_find_a_real_shift_and_not_a_null():
    """A skin-share shift is found (q < 0.01, right sign); equal groups give large p."""
    shifted = gradcam.region_tests(_share_frame(0.5, 30, seed=1)).set_index("region")
    assert shifted.loc["skin", "difference"] == pytest.approx(0.2, abs=0.03)
    assert shifted.loc["skin", "q_value"] < 0.01
    assert shifted.loc["skin", "enrichment_case"] == pytest.approx(0.5 * 7, rel=0.1)
    assert (shifted["n_case"] == 30).all() and (shifted["n_control"] == 30).all()
    assert (shifted["comparison"] == "own class").all()
    null = gradcam.region_tests(_share_frame(0.3, 30, seed=2)).set_index("region")
    assert null.loc["skin", "p_value"] > 0.01


def test_select_images_takes_seeded_test_rows_per_group():
    """Only test rows, at most max_images per group, reproducible, 0 keeps all."""
    table = pd.DataFrame(
        {
            "image_id": [f"im{i:03d}" for i in range(40)],
            "group": ["case", "control"] * 20,
            "split": ["test"] * 30 + ["train"] * 10,
        }
    )
    chosen = gradcam.select_images(table, 5, seed=1)
    assert (chosen["split"] == "test").all()
    assert chosen["group"].value_counts().to_dict() == {"case": 5, "control": 5}
    pd.testing.assert_frame_equal(chosen, gradcam.select_images(table, 5, seed=1))
    assert len(gradcam.select_images(table, 0, seed=1)) == 30
    with pytest.raises(PhenofaceError) as empty:
        gradcam.select_images(table.assign(split="train"), 5, seed=1)
    assert str(empty.value) == (
        "the split has no test images to explain; check results/split/cohort_split.csv"
    )


def _tests_table(own_hits: list[str], same_hits: list[str], other_case: float = 0.2) -> pd.DataFrame:
    """A region_tests-like table with chosen significant regions."""
    rows = []
    for name in gradcam.MAP_COMPARISONS:
        hits = same_hits if name == "cam_case" else own_hits
        for region in gradcam.REGIONS:
            share = other_case if region == "other" else 0.1
            rows.append(
                {
                    "map": name,
                    "region": region,
                    "area_share": 0.3 if region == "other" else 0.1,
                    "share_case": share,
                    "share_control": 0.1,
                    "q_value": 0.01 if region in hits else 0.5,
                }
            )
    return pd.DataFrame(rows)


def _sanity(median: float) -> dict:
    return {"randomized_head_spearman_abs": {"median": median}}


def test_sanity_warnings_each_fire_on_their_condition():
    """Random-head similarity, off-face evidence, unbacked own-class pattern and small groups warn; a clean run does not."""
    counts = {"case": 50, "control": 50}
    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, _tests_table([], [])) == []
    assert "random one" in " ".join(gradcam.sanity_warnings(_sanity(0.7), counts, 0.0, _tests_table([], [])))
    relabelled = dict(_sanity(0.2), shuffled_labels_spearman_abs={"median": 0.8})
    shuffled = gradcam.sanity_warnings(relabelled, counts, 0.0, _tests_table([], []))
    assert len(shuffled) == 1 and "shuffled labels" in shuffled[0] and "0.80" in shuffled[0]
    off_face = gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, _tests_table([], [], other_case=0.6))
    assert len(off_face) == 1 and "outside the face" in off_face[0] and "60%" in off_face[0]
    unbacked = gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, _tests_table(["skin", "eyes"], []))
    assert len(unbacked) == 1 and "eyes, skin" in unbacked[0] and "signed map" in unbacked[0]
    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, _tests_table(["skin"], ["skin"])) == []
    degenerate = gradcam.sanity_warnings(_sanity(0.2), counts, 0.3, _tests_table([], []))
    assert len(degenerate) == 1 and "30%" in degenerate[0]
    small = gradcam.sanity_warnings(_sanity(0.2), {"case": 3, "control": 50}, 0.0, _tests_table([], []))
    assert len(small) == 1 and "in case" in small[0]


def test_example_indices_pick_confident_correct_images():
    """Examples are correctly classified, most confident first, n per group."""
    rows = pd.DataFrame({"group": ["case", "case", "case", "control", "control", "control"]})
    probability = np.array([0.9, 0.4, 0.7, 0.2, 0.05, 0.8])
    assert gradcam.example_indices(rows, probability, 0.5, 2) == [0, 2, 4, 3]
    assert gradcam.example_indices(rows, probability, 0.5, 0) == []


def test_mean_maps_average_only_usable_images_per_group():
    """Group means leave out unusable (all-zero) maps; an empty group gives zeros."""
    maps = {"cam": np.stack([np.full((2, 2), v, np.float32) for v in (1.0, 3.0, 0.0, 5.0)])}
    groups = np.array(["case", "case", "control", "case"])
    usable = np.array([True, True, False, False])
    means = gradcam.mean_maps(maps, groups, usable)
    np.testing.assert_allclose(means["cam"]["case"], 2.0)
    np.testing.assert_allclose(means["cam"]["control"], 0.0)


# --- A tiny classifier whose Grad-CAM and guided backpropagation follow in closed form ---------
#
# conv (10x10 kernel, stride 10: disjoint patches) -> ReLU block -> global average -> sigmoid.
# For it, d logit / d A_c = w_c / 225 everywhere, so the signed Grad-CAM sum is A @ w / 225, and
# guided backpropagation into the chip is the conv kernel weighted by the gradient that passes
# the guided ReLU (pre-activation > 0 and upstream > 0), patch by patch.

TINY_GRID = 15  # 150 / 10 patches per side
TINY_HEAD = np.array([1.0, -1.5, 0.5, -0.7, 2.0, -2.0], np.float32)
TINY_BIAS = 0.3


@pytest.fixture(scope="module")
def tiny():
    """The tiny classifier (its weights set by hand), its logit model and five chips."""
    rng = np.random.default_rng(4)
    chips_in = keras.Input((backbone.CHIP_SIZE, backbone.CHIP_SIZE, 3), name=backbone.INPUT_NAME)
    x = keras.layers.Conv2D(len(TINY_HEAD), 10, strides=10, name="conv")(chips_in)
    x = keras.layers.ReLU(name="block")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(chips_in, probability, name="tiny")
    model.get_layer("conv").set_weights(
        [rng.normal(0, 0.05, (10, 10, 3, len(TINY_HEAD))), rng.normal(0, 0.1, len(TINY_HEAD))]
    )
    model.get_layer("probability").set_weights([TINY_HEAD[:, None], np.array([TINY_BIAS])])
    chips = rng.normal(0, 1, (5, backbone.CHIP_SIZE, backbone.CHIP_SIZE, 3)).astype(np.float32)
    return model, gradcam.logit_model(model), chips


def _tiny_reference(model: keras.Model, chips: np.ndarray, signs: np.ndarray) -> dict:
    """The tiny model's logit, signed Grad-CAM sum and guided gradients, by hand in numpy."""
    kernel, conv_bias = (np.asarray(w, np.float64) for w in model.get_layer("conv").get_weights())
    head = np.asarray(model.layers[-1].get_weights()[0], np.float64)[:, 0]
    bias = float(model.layers[-1].get_weights()[1][0])
    patches = chips.astype(np.float64).reshape(len(chips), TINY_GRID, 10, TINY_GRID, 10, 3)
    pre = np.einsum("niajbk,abkc->nijc", patches, kernel) + conv_bias
    active = np.maximum(pre, 0.0)
    upstream = signs[:, None, None, None] * head / TINY_GRID**2
    passed = np.where((pre > 0) & (upstream > 0), upstream, 0.0)
    guided = np.einsum("nijc,abkc->niajbk", passed, kernel).reshape(chips.shape)
    return {
        "logit": active.mean(axis=(1, 2)) @ head + bias,
        "cam_signed": active @ head / TINY_GRID**2,
        "guided": guided,
    }


def _scaled(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum."""
    return maps / maps.max(axis=(1, 2), keepdims=True)


def test_explain_chips_follows_grad_cam_and_guided_backprop_definitions(tiny):
    """Logit, signed sum, own-class and case maps and guided Grad-CAM match the closed form."""
    model, logit, chips = tiny
    groups = ["case", "control", "case", "control", "control"]
    signs = np.array([1.0, -1.0, 1.0, -1.0, -1.0])
    result = gradcam.explain_chips(logit, chips, groups, "block", batch_size=2, keep_guided=True)
    expected = _tiny_reference(model, chips, signs)
    assert sorted(result) == sorted(["logit", "cam_signed", "cam", "cam_case", "guided_gradcam", "guided"])
    np.testing.assert_allclose(result["logit"], expected["logit"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result["cam_signed"], expected["cam_signed"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result["guided"], expected["guided"], rtol=1e-4, atol=1e-7)
    own = _scaled(gradcam.upsample_maps(np.maximum(expected["cam_signed"] * signs[:, None, None], 0)))
    case = _scaled(gradcam.upsample_maps(np.maximum(expected["cam_signed"], 0)))
    np.testing.assert_allclose(result["cam"], own, atol=1e-4)
    np.testing.assert_allclose(result["cam_case"], case, atol=1e-4)
    np.testing.assert_allclose(
        result["guided_gradcam"], _scaled(np.linalg.norm(expected["guided"], axis=-1) * own), atol=1e-4
    )
    for key in ("cam", "cam_case", "guided_gradcam"):
        assert result[key].shape == (5, 150, 150) and result[key].dtype == np.float32
    # Both signs occur on every chip, so each class has evidence somewhere.
    assert (expected["cam_signed"].max(axis=(1, 2)) > 0).all()
    assert (expected["cam_signed"].min(axis=(1, 2)) < 0).all()


def test_explain_chips_logs_progress_per_batch(tiny, caplog):
    """One progress line per batch, counting chips done out of all."""
    _, logit, chips = tiny
    with caplog.at_level("INFO", logger="phenoface.gradcam"):
        gradcam.explain_chips(logit, chips, ["case"] * 5, "block", batch_size=2)
    assert [r.getMessage() for r in caplog.records] == [
        "explained 2/5 chips",
        "explained 4/5 chips",
        "explained 5/5 chips",
    ]


def test_explain_chips_of_no_chips_is_empty(tiny):
    """No chips give empty arrays of the documented kinds, not an error."""
    _, logit, chips = tiny
    result = gradcam.explain_chips(logit, chips[:0], [], "block", keep_guided=True)
    assert sorted(result) == sorted(["logit", "cam_signed", "cam", "cam_case", "guided_gradcam", "guided"])
    assert result["logit"].shape == (0,)
    assert result["cam_signed"].ndim == 3 and len(result["cam_signed"]) == 0
    for key in ("cam", "cam_case", "guided_gradcam"):
        assert result[key].shape == (0, 150, 150)
    assert result["guided"].shape == (0, 150, 150, 3)
    assert all(value.dtype == np.float32 for value in result.values())


def test_explain_chips_rejects_unknown_groups_and_layers(tiny):
    """A group other than case/control and a layer not in the model are user errors that say what to use."""
    _, logit, chips = tiny
    with pytest.raises(PhenofaceError) as unknown_group:
        gradcam.explain_chips(logit, chips[:2], ["case", "patient"], "block")
    assert str(unknown_group.value) == "cannot explain groups ['patient']; groups must be case or control"
    with pytest.raises(PhenofaceError) as unknown_layer:
        gradcam.explain_chips(logit, chips[:1], ["case"], "level9")
    assert str(unknown_layer.value) == (
        "explain.layer is 'level9', which is not a layer of the model; use a block name such as "
        "level2_block3 (see phenoface.backbone.BLOCK_NAMES)"
    )


def test_logit_model_keeps_the_bias_and_is_named_after_the_model(tiny):
    """The logit model's output is the log-odds (bias included) and is named after the model."""
    model, _, chips = tiny
    logit = gradcam.logit_model(model)  # built here, not in the shared fixture, for mutmut's call tracing
    probability = _run(model, chips[:2]).astype(np.float64)[:, 0]
    values = _run(logit, chips[:2])[:, 0]
    np.testing.assert_allclose(values, np.log(probability / (1 - probability)), rtol=1e-4)
    assert logit.name == "tiny_logit"
    assert logit.layers[-1].name == gradcam.LOGIT_LAYER


def test_logit_model_of_a_head_without_bias():
    """An output Dense without bias gives a logit model without bias."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", use_bias=False)(inputs))
    model.layers[-1].set_weights([np.array([[1.0], [-2.0], [0.5]])])
    logit = gradcam.logit_model(model)
    assert len(logit.layers[-1].get_weights()) == 1
    np.testing.assert_allclose(_run(logit, np.array([[1.0, 1.0, 2.0]])), [[0.0]], atol=1e-6)


def test_logit_model_error_says_which_model_is_needed():
    """A two-unit Dense output is refused with the name of the model file to use."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="two_units")
    with pytest.raises(PhenofaceError) as refused:
        gradcam.logit_model(model)
    assert str(refused.value) == (
        "model 'two_units' does not end in a one-unit Dense layer; "
        "explain_classifier needs the model.keras written by train_classifier"
    )


def test_randomize_head_draws_glorot_uniform_kernels_and_zero_biases():
    """Listed layers get U(+-sqrt(6 / (fan_in + fan_out))) kernels and zero biases; the model itself is untouched."""
    inputs = keras.Input((32,))
    hidden = keras.layers.Dense(64, name="fc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(hidden))
    model.get_layer("fc").set_weights([np.full((32, 64), 0.01), np.ones(64)])
    before = [w.copy() for w in model.get_weights()]
    fresh = gradcam.randomize_head(model, ["fc"], seed=3)
    kernel, bias = fresh.get_layer("fc").get_weights()
    limit = np.sqrt(6.0 / (32 + 64))
    assert kernel.shape == (32, 64) and kernel.dtype == np.float32
    assert np.abs(kernel).max() <= limit
    assert kernel.max() > 0.95 * limit and kernel.min() < -0.95 * limit
    np.testing.assert_array_equal(bias, np.zeros(64))
    for kept, original in zip(fresh.get_layer("out").get_weights(), model.get_layer("out").get_weights()):
        np.testing.assert_array_equal(kept, original)
    for now, then in zip(model.get_weights(), before):
        np.testing.assert_array_equal(now, then)
    other_seed = gradcam.randomize_head(model, ["fc"], seed=4).get_layer("fc").get_weights()[0]
    assert not np.allclose(other_seed, kernel)


def test_randomization_similarity_compares_absolute_maps_per_chip(tiny):
    """Per chip: Spearman of |signed sum| under two heads; a sign-flipped head counts as unchanged."""
    model, logit, chips = tiny
    flipped = gradcam.with_head_weights(logit, {gradcam.LOGIT_LAYER: [-TINY_HEAD[:, None], np.array([0.0])]})
    np.testing.assert_allclose(
        gradcam.randomization_similarity(logit, flipped, chips, "block"), 1.0, atol=1e-6
    )
    other_head = np.array([[0.2], [1.0], [-0.4], [0.3], [-1.0], [0.6]], np.float32)
    other = gradcam.with_head_weights(logit, {gradcam.LOGIT_LAYER: [other_head, np.array([0.0])]})
    similarity = gradcam.randomization_similarity(logit, other, chips, "block", batch_size=2)
    ones = np.ones(len(chips))
    first = np.abs(_tiny_reference(model, chips, ones)["cam_signed"])
    second = np.abs(
        _tiny_reference(
            gradcam.with_head_weights(model, {"probability": [other_head, np.array([0.0])]}), chips, ones
        )["cam_signed"]
    )
    expected = [scipy_stats.spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(first, second)]
    assert similarity.shape == (5,)
    np.testing.assert_allclose(similarity, expected, atol=1e-4)
    assert (similarity < 0.99).all()


def test_similarity_is_nan_without_a_warning_where_a_map_is_constant(tiny):
    """A head with zero weights gives flat maps: NaN, and no warning from scipy."""
    _, logit, chips = tiny
    flat = gradcam.with_head_weights(logit, {gradcam.LOGIT_LAYER: [np.zeros((6, 1)), np.array([0.0])]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy_stats.ConstantInputWarning)
        similarity = gradcam.randomization_similarity(logit, flat, chips[:2], "block")
    assert similarity.shape == (2,) and np.isnan(similarity).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy_stats.ConstantInputWarning)
        assert np.isnan(gradcam.randomization_similarity(flat, logit, chips[:2], "block")).all()


def test_guided_class_similarity_is_spearman_of_guided_magnitudes(tiny):
    """Per chip: Spearman between the colour norms of guided backpropagation for case and for control."""
    model, logit, chips = tiny
    similarity = gradcam.guided_class_similarity(logit, chips, batch_size=2)
    ones = np.ones(len(chips))
    case = np.linalg.norm(_tiny_reference(model, chips, ones)["guided"], axis=-1)
    control = np.linalg.norm(_tiny_reference(model, chips, -ones)["guided"], axis=-1)
    expected = [scipy_stats.spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(case, control)]
    assert similarity.shape == (5,)
    np.testing.assert_allclose(similarity, expected, atol=1e-4)
    assert (similarity < 0.9).all()


def test_upsample_maps_resizes_each_map_bilinearly():
    """Each map is resized on its own to (size, size) float32; a constant stays constant, a step is blended."""
    maps = np.stack([np.full((2, 2), 3.0), [[0.0, 1.0], [0.0, 1.0]]])
    resized = gradcam.upsample_maps(maps)
    assert resized.shape == (2, 150, 150) and resized.dtype == np.float32
    np.testing.assert_allclose(resized[0], 3.0)
    # Pixel centres aligned: the outer quarter of each side keeps its value, the middle half blends.
    np.testing.assert_allclose(resized[1][:, :37], 0.0)
    np.testing.assert_allclose(resized[1][:, 113:], 1.0)
    np.testing.assert_allclose(resized[1][:, 74] + resized[1][:, 75], 1.0, atol=1e-6)
    assert gradcam.upsample_maps(maps, size=6).shape == (2, 6, 6)


def test_normalise_scales_each_map_to_a_peak_of_one():
    """Every map's maximum becomes 1, an all-zero map stays zero (no NaN), no maps stay no maps."""
    maps = np.stack([np.full((2, 2), 4.0), np.zeros((2, 2)), [[0.0, 0.5], [0.25, 0.0]]])
    scaled = gradcam._normalise(maps)
    np.testing.assert_allclose(scaled, [np.ones((2, 2)), np.zeros((2, 2)), [[0.0, 1.0], [0.5, 0.0]]])
    assert scaled.dtype == np.float32
    assert gradcam._normalise(np.zeros((0, 3, 3))).shape == (0, 3, 3)


def _synthetic_landmarks() -> np.ndarray:
    """68 points of a drawn face on a 150 px chip: an arched right brow, a level left brow at y = 50,
    the nose from (75, 55) to its tip at (75, 95) (40 px long), eyes around y = 58-65."""
    points = np.zeros((68, 2))
    jaw = np.linspace(0, np.pi, 17)
    points[0:17] = np.stack([75 - 45 * np.cos(jaw), 60 + 70 * np.sin(jaw)], axis=1)
    points[17:22] = [(40, 50), (47, 46), (54, 44), (61, 46), (68, 50)]
    points[22:27] = [(82, 50), (89, 50), (96, 50), (103, 50), (110, 50)]
    points[27:31] = [(75, 55), (75, 63), (75, 71), (75, 80)]
    points[31:36] = [(65, 88), (70, 92), (75, 95), (80, 92), (85, 88)]
    points[36:42] = [(45, 62), (50, 58), (56, 58), (61, 62), (56, 65), (50, 65)]
    points[42:48] = [(89, 62), (94, 58), (100, 58), (105, 62), (100, 65), (94, 65)]
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([75 - 15 * np.cos(outer), 112 - 6 * np.sin(outer)], axis=1)
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    points[60:68] = np.stack([75 - 8 * np.cos(inner), 112 - 2 * np.sin(inner)], axis=1)
    return points


def test_region_labels_follow_the_documented_geometry():
    """Eyes dilated by 2 px, brows open lines, forehead 0.6 nose lengths above the brows, earlier regions win."""
    labels = gradcam.region_labels(_synthetic_landmarks())

    def region(x: int, y: int) -> str:
        return gradcam.REGIONS[labels[y, x]]

    # Eye outlines dilated by 2 px in every direction (corners at x = 45 and 61, lids at y = 58 and 65).
    assert [region(x, 62) for x in (42, 43, 63, 64)] == ["skin", "eyes", "eyes", "skin"]
    assert [region(50, y) for y in (55, 56, 67, 68)] == ["skin", "eyes", "eyes", "skin"]
    # Brows are lines, not closed outlines: below the arch's chord is skin, on the level brow a band.
    assert region(54, 50) == "skin" and region(54, 44) == "brows"
    column = [region(96, y) for y in range(20, 56)]
    assert column.index("forehead") + 20 == 50 - 24  # 0.6 x 40 px nose above the brow at y = 50
    assert set(column[column.index("brows") :]) <= {"brows", "skin"}
    brow_rows = [y for y in range(20, 56) if region(96, y) == "brows"]
    assert 3 <= len(brow_rows) <= 7 and 50 in brow_rows
    # The forehead band is continuous between the brows, from the brows up, and spans the brows'
    # width (x = 40 to 110) with its corners straight above the brow ends.
    assert region(75, 30) == "forehead" and region(75, 25) == "other"
    assert region(45, 35) == "forehead" and region(105, 35) == "forehead"
    assert [region(x, 27) for x in (39, 40, 110, 111)] == ["other", "forehead", "forehead", "other"]
    # Earlier regions win: the nose tip, the mouth centre, the chin.
    assert region(75, 90) == "nose" and region(75, 112) == "mouth" and region(75, 125) == "skin"
    assert labels.dtype == np.uint8 and gradcam.region_labels(_synthetic_landmarks(), size=100).shape == (
        100,
        100,
    )


def test_skin_is_the_hull_of_jaw_and_brows_only():
    """A mouth reaching below the chin is mouth, but the corners beside it stay outside the face."""
    landmarks = _synthetic_landmarks()
    landmarks[57] = (75, 145)  # lower lip below the chin (y = 130)
    labels = gradcam.region_labels(landmarks)
    assert gradcam.REGIONS[labels[140, 75]] == "mouth"
    assert [gradcam.REGIONS[labels[133, x]] for x in (65, 85)] == ["other", "other"]


def test_region_shares_of_a_faint_map_sum_to_one():
    """A map with little total mass (below 1) still gets shares, per image."""
    labels = np.zeros((2, 2, 3), np.uint8)
    labels[:, :, 1] = 2
    maps = np.array([[[0.1, 0.1, 0.0], [0.0, 0.0, 0.2]], [[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]]])
    shares = gradcam.region_shares(maps, labels)
    assert shares.shape == (2, len(gradcam.REGIONS))
    np.testing.assert_allclose(shares[0, [0, 2]], [0.75, 0.25])
    np.testing.assert_allclose(shares[1, [0, 2]], [1.0, 0.0])
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def _region_rows(map_name: str, group: str, skins: list[float], area_skin: float = 0.2) -> list[dict]:
    """Share rows of one map and group: the skin share as given, the rest spread over the other regions."""
    rows = []
    for index, skin in enumerate(skins):
        rest = (1 - skin) / (len(gradcam.REGIONS) - 1) if np.isfinite(skin) else np.nan
        row = {"image_id": f"{group}{index}", "group": group, "map": map_name}
        row.update({region: rest for region in gradcam.REGIONS}, skin=skin)
        row.update({f"area_{region}": 0.8 / (len(gradcam.REGIONS) - 1) for region in gradcam.REGIONS})
        row["area_skin"] = area_skin
        rows.append(row)
    return rows


def test_region_tests_boundaries_and_per_map_q_values():
    """Two images per group suffice for a test; NaN shares are left out; flat shares, empty groups and
    empty regions give NaN; q-values are adjusted within each map; maps keep their order."""
    rows = [
        *_region_rows("cam_case", "case", [0.6, 0.7, np.nan]),
        *_region_rows("cam_case", "control", [0.2, 0.3]),
        *_region_rows("cam", "case", [0.5, 0.5, 0.5], area_skin=0.0),
        *_region_rows("cam", "control", [0.5, 0.5], area_skin=0.0),
        *_region_rows("custom", "case", [0.4]),
        *_region_rows("custom", "control", [0.1, 0.2]),
    ]
    result = gradcam.region_tests(pd.DataFrame(rows))
    assert list(result.columns) == [
        "comparison", "map", "region", "n_case", "n_control", "area_share", "share_case", "share_control",
        "enrichment_case", "enrichment_control", "difference", "p_value", "q_value",
    ]  # fmt: skip
    assert list(result["map"].unique()) == ["cam_case", "cam", "custom"]
    assert list(result["comparison"].unique()) == ["case evidence, both groups", "own class", "custom"]
    skin = result[result["region"] == "skin"].set_index("map")
    assert skin.loc["cam_case", "n_case"] == 2 and skin.loc["cam_case", "n_control"] == 2
    assert skin.loc["cam_case", "share_case"] == pytest.approx(0.65)
    assert skin.loc["cam_case", "area_share"] == pytest.approx(0.2)
    assert skin.loc["cam_case", "share_control"] == pytest.approx(0.25)
    assert skin.loc["cam_case", "enrichment_case"] == pytest.approx(0.65 / 0.2)
    assert skin.loc["cam_case", "enrichment_control"] == pytest.approx(0.25 / 0.2)
    assert skin.loc["cam_case", "p_value"] == pytest.approx(1 / 3)  # exact: 1 of 6 orderings each way
    assert np.isnan(skin.loc["cam", "p_value"])  # all shares equal
    assert np.isnan(skin.loc["cam", "enrichment_case"]) and np.isnan(skin.loc["cam", "enrichment_control"])
    assert np.isnan(skin.loc["custom", "p_value"])  # one case only
    assert skin.loc["custom", "share_case"] == pytest.approx(0.4)
    for name, table in result.groupby("map"):
        np.testing.assert_allclose(table["q_value"], bh_qvalues(table["p_value"].to_numpy()), err_msg=name)
    assert result.loc[result["map"] == "cam_case", "q_value"].notna().all()


def test_region_tests_of_an_empty_group_give_nan_means():
    """Without controls (or cases) their means and the difference are NaN, without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gradcam.region_tests(pd.DataFrame(_region_rows("cam", "case", [0.6, 0.7, 0.8])))
    assert result["p_value"].dtype == np.float64 and result["p_value"].isna().all()
    skin = result.set_index("region").loc["skin"]
    assert skin["n_control"] == 0 and np.isnan(skin["share_control"]) and np.isnan(skin["difference"])
    assert skin["share_case"] == pytest.approx(0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        no_cases = gradcam.region_tests(pd.DataFrame(_region_rows("cam", "control", [0.2, 0.3])))
    assert no_cases["n_case"].eq(0).all() and no_cases["share_case"].isna().all()


def test_share_table_has_one_row_per_image_and_map():
    """Rows: image_id, group, map, the share of each region and each region's share of the chip."""
    labels = np.zeros((2, 2, 2), np.uint8)
    labels[0, 0, :] = 1
    labels[1] = 6
    rows = pd.DataFrame({"image_id": ["a", "b"], "group": ["case", "control"]})
    maps = {
        "cam": np.array([[[1.0, 0.0], [3.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]]),
        "cam_case": np.ones((2, 2, 2)),
    }
    table = gradcam.share_table(rows, maps, labels)
    regions = list(gradcam.REGIONS)
    assert list(table.columns) == ["image_id", "group", "map", *regions, *[f"area_{r}" for r in regions]]
    assert list(table.index) == [0, 1, 2, 3]
    assert list(table["map"]) == ["cam", "cam", "cam_case", "cam_case"]
    assert list(table["image_id"]) == ["a", "b", "a", "b"] and list(table["group"]) == ["case", "control"] * 2
    np.testing.assert_allclose(table.loc[0, ["eyes", "brows"]], [0.75, 0.25])
    np.testing.assert_allclose(table.loc[1, "other"], 1.0)
    np.testing.assert_allclose(table.loc[2, ["area_eyes", "area_brows", "area_other"]], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(table.loc[3, ["area_eyes", "area_other"]], [0.0, 1.0])


def test_select_images_orders_cases_then_controls_without_repeats():
    """Distinct rows, cases first then controls, each by image id, a fresh index; short groups are kept whole."""
    table = pd.DataFrame(
        {
            "image_id": [f"im{i:03d}" for i in range(39, -1, -1)],
            "group": ["control", "case"] * 20,
            "split": ["test"] * 34 + ["train"] * 6,
        }
    )
    chosen = gradcam.select_images(table, 12, seed=3)
    assert list(chosen["group"]) == ["case"] * 12 + ["control"] * 12
    assert chosen["image_id"].is_unique
    for group in ("case", "control"):
        ids = list(chosen.loc[chosen["group"] == group, "image_id"])
        assert ids == sorted(ids)
    assert list(chosen.index) == list(range(24))
    assert not chosen["image_id"].equals(gradcam.select_images(table, 12, seed=4)["image_id"])
    everything = gradcam.select_images(table, 17, seed=3)
    assert len(everything) == 34 and everything["image_id"].is_unique


def test_example_indices_count_the_threshold_as_case_and_keep_ties_in_order():
    """A probability equal to the threshold is a (correct) case; equally confident images keep table order."""
    rows = pd.DataFrame({"group": ["case"] * 10 + ["control"] * 2})
    probability = np.full(12, 0.8)
    probability[[2, 7]] = 0.95
    probability[10:] = [0.5, 0.1]
    assert gradcam.example_indices(rows, probability, 0.5, 5) == [2, 7, 0, 1, 3, 11]
    assert gradcam.example_indices(rows, probability, 0.8, 3) == [2, 7, 0, 11, 10]


def test_mean_maps_are_pixelwise_with_an_empty_group_of_map_shape():
    """Means are per pixel; a group with no usable image gets zeros of one map's shape."""
    maps = {"cam": np.array([[[0.0, 2.0], [4.0, 6.0]], [[2.0, 2.0], [0.0, 0.0]]], np.float32)}
    means = gradcam.mean_maps(maps, np.array(["case", "case"]), np.array([True, True]))
    np.testing.assert_allclose(means["cam"]["case"], [[1.0, 2.0], [2.0, 3.0]])
    assert means["cam"]["control"].shape == (2, 2) and not means["cam"]["control"].any()


def test_sanity_warnings_thresholds_are_inclusive_or_strict_as_documented():
    """At each threshold: similarity warns at the threshold, degenerate share and off-face share only above,
    q-values count below 0.05, groups of MIN_PER_GROUP are enough; unknown medians do not warn."""
    counts = {"case": gradcam.MIN_PER_GROUP, "control": 50}
    quiet = _tests_table([], [])
    assert gradcam.sanity_warnings(_sanity(None), counts, gradcam.DEGENERATE_WARN, quiet) == []
    at_limit = gradcam.sanity_warnings(_sanity(gradcam.RANDOMIZATION_WARN), counts, 0.0, quiet)
    assert at_limit == [
        "Grad-CAM maps change little when the trained head is replaced by a random one (median |Spearman| "
        "0.50): they show what the frozen backbone sees more than what separates the groups."
    ]
    relabelled = dict(_sanity(0.2), shuffled_labels_spearman_abs={"median": gradcam.RANDOMIZATION_WARN})
    assert len(gradcam.sanity_warnings(relabelled, counts, 0.0, quiet)) == 1
    nothing = dict(_sanity(0.2), shuffled_labels_spearman_abs={"median": None})
    assert gradcam.sanity_warnings(nothing, counts, 0.0, quiet) == []
    just_above = gradcam.sanity_warnings(_sanity(0.2), counts, 0.21, quiet)
    assert just_above == [
        "21% of the explained images show no evidence for their own group (mostly misclassified ones); "
        "they are left out of the region shares and mean maps."
    ]

    # "other" covers a quarter of the chip: 1.5 x 25% = 37.5% of the evidence there is the limit.
    def off_face_table(share: float) -> pd.DataFrame:
        table = _tests_table([], [], other_case=share)
        table.loc[table["region"] == "other", "area_share"] = 0.25
        return table

    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, off_face_table(0.375)) == []
    off_face = gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, off_face_table(0.4))
    assert off_face == [
        "Grad-CAM puts 40% of the case evidence outside the face (hair, background, mask edge), which "
        "covers 25% of the chip: the model may use cues other than the face."
    ]
    nan_share = _tests_table([], [], other_case=np.nan)
    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, nan_share) == []
    borderline = _tests_table(["skin"], [])
    borderline.loc[borderline["q_value"] < 0.05, "q_value"] = 0.05
    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, borderline) == []
    # Own-class hits in the Grad-CAM map only, case evidence at q = 0.05 (not significant): warned.
    own_only = _tests_table(["nose", "mouth"], ["nose"])
    own_only.loc[own_only["map"] == "guided_gradcam", "q_value"] = 0.5
    own_only.loc[own_only["map"] == "cam_case", "q_value"] = np.maximum(own_only["q_value"], 0.05)
    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, own_only) == [
        "case and control evidence fall on different regions (nose, mouth), but case evidence does not "
        "differ between cases and controls: the complementary pattern follows from Grad-CAM splitting one "
        "signed map into its two signs, not from a difference between the faces."
    ]
    guided_only = _tests_table(["nose"], [])
    guided_only.loc[guided_only["map"] == "cam", "q_value"] = 0.5
    assert gradcam.sanity_warnings(_sanity(0.2), counts, 0.0, guided_only) == []
    small = gradcam.sanity_warnings(_sanity(0.2), {"case": 9, "control": 9}, 0.0, quiet)
    assert small == [
        f"fewer than {gradcam.MIN_PER_GROUP} usable explained images in case, control: the region tests "
        "have little power and the mean maps are noisy."
    ]
