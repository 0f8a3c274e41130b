"""Tests for phenoface.model: the paper's classifier head, its training and composition."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from phenoface.cohort import case_labels
from phenoface.errors import PhenofaceError
from phenoface.model import (
    FC1_LAYER,
    STANDARDIZE_LAYER,
    HeadConfig,
    build_head,
    compose_model,
    head_diagnostics,
    history_frame,
    load_model,
    plot_training_curves,
    predict_head,
    save_model,
    train_head,
)

N_FEATURES = 256
FAST = HeadConfig(epochs=2)


def _separable(n_rows: int, seed: int, shift: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Pooled-like features (non-negative, offset) whose mean differs between classes."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n_rows) % 2).astype(np.float32)
    features = rng.normal(loc=2.0, scale=1.0, size=(n_rows, N_FEATURES)) + shift * labels[:, None]
    return np.abs(features).astype(np.float32), labels


def _stand_in_backbone() -> keras.Model:
    """A tiny model with the backbone's signature: chips -> [pooled (N,256), descriptor (N,128)]."""
    chips = keras.Input(shape=(150, 150, 3), name="chips")
    x = keras.layers.Rescaling(1.0 / 255.0, name="bb_rescale")(chips)
    x = keras.layers.Conv2D(8, 5, strides=5, activation="relu", name="bb_conv")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="bb_pool")(x)
    pooled = keras.layers.Dense(N_FEATURES, activation="relu", name="bb_pooled")(pooled)
    descriptor = keras.layers.Dense(128, name="bb_descriptor_fc")(pooled)
    descriptor = keras.layers.UnitNormalization(name="bb_descriptor")(descriptor)
    return keras.Model(chips, [pooled, descriptor], name="stand_in_backbone")


def _chips(n_chips: int, seed: int) -> np.ndarray:
    """Random uint8 RGB chips of the backbone's input size."""
    return np.random.default_rng(seed).integers(0, 256, size=(n_chips, 150, 150, 3), dtype=np.uint8)


def test_head_has_the_papers_architecture():
    """FC1 128 ReLU with L2 0.001, dropout 0.25, FC2 1 sigmoid with L2 0.001, Adam at 0.001."""
    model = build_head(N_FEATURES, HeadConfig(standardize=False))
    fc1, fc2 = model.get_layer("fc1"), model.get_layer("fc2")
    assert fc1.units == 128 and fc1.activation.__name__ == "relu"
    assert fc2.units == 1 and fc2.activation.__name__ == "sigmoid"
    assert float(fc1.kernel_regularizer.l2) == pytest.approx(0.001)
    assert float(fc2.kernel_regularizer.l2) == pytest.approx(0.001)
    assert model.get_layer("dropout").rate == 0.25
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert model.count_params() == N_FEATURES * 128 + 128 + 128 + 1


def test_raw_head_has_no_standardisation_layer():
    """standardize=False feeds the pooled features straight into FC1."""
    model = build_head(N_FEATURES, HeadConfig(standardize=False))
    assert STANDARDIZE_LAYER not in [layer.name for layer in model.layers]


def test_same_seed_gives_identical_predictions():
    """Training twice with one seed gives bit-identical predictions; another seed differs."""
    features, labels = _separable(120, seed=0)
    first, _ = train_head(features, labels, FAST, seed=11)
    again, _ = train_head(features, labels, FAST, seed=11)
    other, _ = train_head(features, labels, FAST, seed=12)
    p_first = predict_head(first, features)
    assert np.array_equal(p_first, predict_head(again, features))
    assert not np.allclose(p_first, predict_head(other, features))


def test_head_separates_separable_features():
    """On held-out separable synthetic features the trained head reaches AUC > 0.9."""
    features, labels = _separable(600, seed=1)
    model, _ = train_head(features[:300], labels[:300], HeadConfig(epochs=3), seed=3)
    auc = roc_auc_score(labels[300:], predict_head(model, features[300:]))
    assert auc > 0.9


def test_standardisation_uses_only_the_training_rows():
    """The Normalization layer holds the mean/variance of the rows trained on, not of all rows."""
    features, labels = _separable(200, seed=2)
    features[100:] += 5.0  # the "test half" is shifted, so its stats would show
    model, _ = train_head(features[:100], labels[:100], HeadConfig(epochs=1), seed=0)
    layer = model.get_layer(STANDARDIZE_LAYER)
    mean = np.asarray(layer.mean).reshape(-1)
    variance = np.asarray(layer.variance).reshape(-1)
    np.testing.assert_allclose(mean, features[:100].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(variance, features[:100].var(axis=0), rtol=1e-4)
    assert not np.allclose(mean, features.mean(axis=0), atol=1.0)
    assert not any(w.trainable for w in layer.weights)


def test_history_has_one_row_per_batch_with_batch_values():
    """History rows = epochs x batches; per-batch values average back to Keras' epoch means."""
    features, labels = _separable(95, seed=4)
    _, history = train_head(features, labels, HeadConfig(epochs=2, batch_size=10), seed=0)
    assert len(history) == 2 * 10
    assert history["step"].tolist() == list(range(1, 21))
    assert history.groupby("epoch")["batch"].max().tolist() == [10, 10]
    sizes = np.array([10] * 9 + [5], dtype=float)
    for _, rows in history.groupby("epoch"):
        np.testing.assert_allclose(
            np.sum(rows["loss"].to_numpy() * sizes) / sizes.sum(), rows["loss_running"].iloc[-1], rtol=1e-4
        )
        # a batch's accuracy is a count over its size
        counts = rows["accuracy"].to_numpy() * sizes
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    assert (history["total_loss"] > history["loss"]).all()  # the L2 penalty is positive


def test_history_frame_recovers_batch_values_from_running_means():
    """Running means 0.8, 0.6 over batches of 10 and 5 give batch values 0.8 and 0.2."""
    records = [
        {"epoch": 1, "batch": 1, "loss_running": 0.8, "accuracy_running": 0.5, "total_loss_running": 0.9},
        {"epoch": 1, "batch": 2, "loss_running": 0.6, "accuracy_running": 0.6, "total_loss_running": 0.7},
    ]
    history = history_frame(records, n_samples=15, batch_size=10)
    np.testing.assert_allclose(history["loss"], [0.8, 0.2])
    np.testing.assert_allclose(history["accuracy"], [0.5, 0.8])


def test_training_needs_both_classes():
    """A training half with only cases raises PhenofaceError."""
    features, _ = _separable(20, seed=0)
    with pytest.raises(PhenofaceError, match="cases and"):
        train_head(features, np.ones(20), FAST, seed=0)


def test_case_labels():
    """case -> 1, control -> 0; anything else is a user error."""
    assert case_labels(["case", "control", "case"]).tolist() == [1, 0, 1]
    with pytest.raises(PhenofaceError, match="patient"):
        case_labels(["case", "patient"])


def test_dead_unit_fraction_counts_never_active_units():
    """Units with a huge negative bias are dead on every row; the fraction counts them."""
    features, _ = _separable(50, seed=5)
    model = build_head(N_FEATURES, HeadConfig(standardize=False))
    fc1 = model.get_layer(FC1_LAYER)
    kernel, bias = fc1.get_weights()
    bias[:32] = -1e6
    bias[32:] = 1e6
    fc1.set_weights([kernel, bias])
    diagnostics = head_diagnostics(model, features)
    assert diagnostics["n_dead_units"] == 32
    assert diagnostics["dead_unit_fraction"] == pytest.approx(0.25)


def test_collapsed_head_is_flagged():
    """A head whose output does not depend on its input is flagged as collapsed."""
    features, _ = _separable(50, seed=6)
    model = build_head(N_FEATURES, HeadConfig(standardize=False))
    fc2 = model.get_layer("fc2")
    kernel, bias = fc2.get_weights()
    fc2.set_weights([np.zeros_like(kernel), bias])
    diagnostics = head_diagnostics(model, features)
    assert diagnostics["collapsed"] is True
    assert diagnostics["prediction_std"] < 1e-6


def test_composed_model_matches_head_on_cached_features(tmp_path):
    """Chips through backbone+head give the head's predictions on the chips' pooled features."""
    backbone = _stand_in_backbone()
    chips = _chips(6, seed=0)
    pooled = np.asarray(backbone.predict(chips, verbose=0)[0])
    labels = np.array([0, 1] * 3, dtype=np.float32)
    head, _ = train_head(pooled, labels, HeadConfig(epochs=1, batch_size=2), seed=0)
    composed = compose_model(backbone, head)
    from_chips = np.asarray(composed.predict(chips, verbose=0)).reshape(-1)
    np.testing.assert_allclose(from_chips, predict_head(head, pooled), rtol=1e-5, atol=1e-6)
    # flat graph: the backbone's convolution is reachable for Grad-CAM
    assert composed.get_layer("bb_conv") is backbone.get_layer("bb_conv")


def test_saved_models_reload_with_the_same_predictions(tmp_path):
    """head.keras and the composed model.keras reload and predict exactly as before."""
    backbone = _stand_in_backbone()
    features, labels = _separable(40, seed=7)
    head, _ = train_head(features, labels, HeadConfig(epochs=1), seed=0)
    composed = compose_model(backbone, head)
    save_model(head, tmp_path / "head.keras")
    save_model(composed, tmp_path / "model.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.keras", "model.keras"]
    chips = _chips(3, seed=1)
    np.testing.assert_array_equal(
        predict_head(load_model(tmp_path / "head.keras"), features), predict_head(head, features)
    )
    np.testing.assert_array_equal(
        load_model(tmp_path / "model.keras").predict(chips, verbose=0),
        composed.predict(chips, verbose=0),
    )


def test_load_model_names_missing_file(tmp_path):
    """Loading a model that was never written raises PhenofaceError naming the file."""
    with pytest.raises(PhenofaceError, match="nothing.keras"):
        load_model(tmp_path / "nothing.keras")


def test_training_curves_plot_has_both_series():
    """The Figure 4A replica plots normalised BCE (peak 1) and accuracy over all batches."""
    history = pd.DataFrame(
        {
            "epoch": [1, 1, 2, 2],
            "batch": [1, 2, 1, 2],
            "step": [1, 2, 3, 4],
            "loss": [0.8, 0.4, 0.3, 0.3],
            "accuracy": [0.5, 0.7, 0.8, 0.9],
            "total_loss": [0.9, 0.5, 0.4, 0.4],
            "loss_running": [0.8, 0.6, 0.3, 0.3],
            "accuracy_running": [0.5, 0.6, 0.8, 0.85],
        }
    )
    figure = plot_training_curves(history)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    np.testing.assert_allclose(lines["BCE (normalised)"].get_ydata(), [1.0, 0.75, 0.375, 0.375])
    np.testing.assert_allclose(lines["accuracy"].get_ydata(), [0.5, 0.6, 0.8, 0.85])


def test_composed_real_backbone_round_trips_through_keras_file(tmp_path):
    """With the real backbone architecture (random weights), the saved composed model
    reloads and predicts on chips what the head predicts on the backbone's pooled features."""
    from phenoface.backbone import BLOCK_NAMES, build_backbone, extract_features

    backbone = build_backbone()
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        weight.assign(rng.normal(scale=0.05, size=weight.shape).astype("float32"))
    chips = _chips(4, seed=2)
    pooled, _ = extract_features(backbone, chips)
    assert pooled.std() > 0  # random weights: the comparison below is not trivially zero == zero
    head, _ = train_head(
        pooled, np.array([0, 1, 0, 1], dtype=np.float32), HeadConfig(epochs=1, batch_size=2), seed=0
    )
    save_model(compose_model(backbone, head), tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")
    from_chips = np.asarray(reloaded.predict(chips, verbose=0)).reshape(-1)
    np.testing.assert_allclose(from_chips, predict_head(head, pooled), rtol=1e-5, atol=1e-6)
    assert reloaded.get_layer(BLOCK_NAMES[-1]).output.shape[-1] == 256
