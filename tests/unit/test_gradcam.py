"""Tests for phenoface.gradcam: guided Grad-CAM on the real frozen ResNet, regions and checks."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from phenoface import backbone, gradcam
from phenoface.errors import PhenofaceError
from phenoface.model import FC1_LAYER, FC2_LAYER, HeadConfig, build_head, compose_model

LAYER = "level2_block3"
N_CHIPS = 6


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
    probability = np.asarray(composed.predict_on_batch(chips))[:, 0]
    logit = np.asarray(gradcam.logit_model(composed).predict_on_batch(chips))[:, 0]
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


def test_explain_chips_names_a_missing_layer(composed, real_faces):
    """An unknown explain.layer is a user error naming the layer."""
    with pytest.raises(PhenofaceError, match="not_a_block"):
        gradcam.explain_chips(gradcam.logit_model(composed), real_faces[0][:1], ["case"], "not_a_block")


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
    with pytest.raises(PhenofaceError, match="68 finite"):
        gradcam.region_labels(np.zeros((5, 2)))
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
    with pytest.raises(PhenofaceError, match="no test images"):
        gradcam.select_images(table.assign(split="train"), 5, seed=1)


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
