"""The paper's classifier head on the frozen dlib ResNet, and its training.

Liang et al. (2020) put two fully connected layers on the frozen face
recognition ResNet: FC1 (128 units, ReLU, L2 0.001) with dropout 0.25, then
FC2 (1 unit, sigmoid, L2 0.001), trained with Adam (learning rate 0.001) on
minibatches of 10 for 5 epochs with binary cross-entropy.

Because the backbone is frozen, the head trains on the cached pooled
features (fast) and is then composed with the backbone into one model that
takes face chips, for inference and Grad-CAM.

On raw pooled features this head is fragile (most ReLU units end dead, and
an occasional seed collapses to a near-constant output), so by default the
features are standardised with the training half's mean and variance, kept
inside the saved model as a fixed :class:`keras.layers.Normalization`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd

from .errors import PhenofaceError
from .io import atomic_path
from .runtime import make_rng

log = logging.getLogger(__name__)

HEAD_INPUT = "pooled"
STANDARDIZE_LAYER = "standardize"
FC1_LAYER = "fc1"
DROPOUT_LAYER = "dropout"
FC2_LAYER = "fc2"
HISTORY_COLUMNS = (
    "epoch",
    "batch",
    "step",
    "loss",
    "accuracy",
    "total_loss",
    "loss_running",
    "accuracy_running",
)
# Predictions whose spread on the training set is below this are a collapsed run.
COLLAPSE_STD = 1e-2


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of the classifier head (defaults: the paper's).

    Attributes
    ----------
    units : int
        FC1 width.
    dropout : float
        Dropout rate after FC1.
    l2 : float
        L2 penalty on the FC1 and FC2 kernels.
    learning_rate : float
        Adam learning rate.
    batch_size : int
        Minibatch size.
    epochs : int
        Passes over the training half.
    standardize : bool
        Standardise the pooled features with the training half's mean and
        variance (inside the model). ``False`` feeds raw features, as the paper.
    """

    units: int = 128
    dropout: float = 0.25
    l2: float = 0.001
    learning_rate: float = 0.001
    batch_size: int = 10
    epochs: int = 5
    standardize: bool = True

    @classmethod
    def from_params(cls, params: Any) -> HeadConfig:
        """Build from an object with one attribute per field (a rule's ``snakemake.params``)."""
        return cls(**{field.name: getattr(params, field.name) for field in dataclasses.fields(cls)})


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance (float32), computed in float64."""
    values = np.asarray(features, dtype=np.float64)
    return values.mean(axis=0).astype(np.float32), values.var(axis=0).astype(np.float32)


def build_head(
    n_features: int,
    config: HeadConfig = HeadConfig(),
    mean: np.ndarray | None = None,
    variance: np.ndarray | None = None,
) -> keras.Model:
    """Build and compile the classifier head.

    Parameters
    ----------
    n_features : int
        Width of the pooled features (256 for the dlib ResNet).
    config : HeadConfig
        Hyper-parameters.
    mean, variance : ndarray of shape (n_features,), optional
        Standardisation statistics; required when ``config.standardize``.

    Returns
    -------
    keras.Model
        ``pooled (N, n_features) -> probability of case (N, 1)``, compiled
        with Adam, binary cross-entropy, and ``accuracy``/``bce`` metrics.
    """
    inputs = keras.Input(shape=(n_features,), name=HEAD_INPUT)
    x = inputs
    if config.standardize:
        if mean is None or variance is None:
            raise ValueError("standardize=True needs the training features' mean and variance")
        x = keras.layers.Normalization(
            mean=np.asarray(mean, dtype=np.float32),
            variance=np.asarray(variance, dtype=np.float32),
            name=STANDARDIZE_LAYER,
        )(x)
    x = keras.layers.Dense(
        config.units,
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(config.l2),
        name=FC1_LAYER,
    )(x)
    x = keras.layers.Dropout(config.dropout, name=DROPOUT_LAYER)(x)
    outputs = keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_regularizer=keras.regularizers.L2(config.l2),
        name=FC2_LAYER,
    )(x)
    model = keras.Model(inputs, outputs, name="phenoface_head")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.BinaryCrossentropy(name="bce"),
        ],
    )
    return model


class BatchHistory(keras.callbacks.Callback):
    """Record the metrics Keras reports after every training batch.

    Keras reports running means over the epoch so far; the per-batch values
    are recovered from them in :func:`history_frame`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, float]] = []
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.records.append(
            {
                "epoch": self._epoch + 1,
                "batch": batch + 1,
                "loss_running": float(logs.get("bce", np.nan)),
                "accuracy_running": float(logs.get("accuracy", np.nan)),
                "total_loss_running": float(logs.get("loss", np.nan)),
            }
        )


def history_frame(records: list[dict[str, float]], n_samples: int, batch_size: int) -> pd.DataFrame:
    """Per-batch history from Keras' running epoch means.

    Parameters
    ----------
    records : list of dict
        From :class:`BatchHistory`.
    n_samples, batch_size : int
        Training set size and minibatch size (the last batch may be short).

    Returns
    -------
    DataFrame
        Columns ``epoch, batch, step`` (1-based), ``loss`` (binary
        cross-entropy of that batch), ``accuracy`` (of that batch),
        ``total_loss`` (BCE plus the L2 penalty, that batch) and the running
        epoch means Keras reports (``loss_running``, ``accuracy_running``;
        the curves of the paper's Figure 4A).
    """
    table = pd.DataFrame.from_records(records)
    if table.empty:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    seen = np.minimum(table["batch"].to_numpy() * batch_size, n_samples).astype(np.float64)
    seen_before = np.where(table["batch"].to_numpy() > 1, np.roll(seen, 1), 0.0)
    in_batch = seen - seen_before

    def per_batch(running: pd.Series) -> np.ndarray:
        total = running.to_numpy(dtype=np.float64) * seen
        previous = np.where(table["batch"].to_numpy() > 1, np.roll(total, 1), 0.0)
        return (total - previous) / in_batch

    table["step"] = np.arange(1, len(table) + 1)
    table["loss"] = per_batch(table["loss_running"])
    # Accuracy of one batch is a count over its size: round away float32 noise.
    table["accuracy"] = np.round(per_batch(table["accuracy_running"]) * in_batch) / in_batch
    table["total_loss"] = per_batch(table["total_loss_running"])
    return table[list(HISTORY_COLUMNS)]


def train_head(
    features: np.ndarray,
    labels: np.ndarray,
    config: HeadConfig = HeadConfig(),
    seed: int = 42,
) -> tuple[keras.Model, pd.DataFrame]:
    """Train the head on cached pooled features of the training half.

    Standardisation statistics (when ``config.standardize``) are computed
    from ``features`` here, so pass only the training rows.

    Parameters
    ----------
    features : ndarray of shape (n, n_features)
        Pooled backbone features of the training images.
    labels : ndarray of shape (n,)
        1 for case, 0 for control.
    config : HeadConfig
        Hyper-parameters.
    seed : int
        Seeds weight initialisation, dropout and batch shuffling.

    Returns
    -------
    model : keras.Model
        The trained head.
    history : DataFrame
        Per-batch loss and accuracy, see :func:`history_frame`.
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features {x.shape} and labels {y.shape} do not match")
    classes = set(np.unique(y).tolist())
    if classes != {0.0, 1.0}:
        raise PhenofaceError(
            f"the training half holds only class(es) {sorted(classes)}; it needs cases and "
            "controls (check the cohort and split)"
        )
    make_rng(seed)
    mean, variance = feature_stats(x) if config.standardize else (None, None)
    model = build_head(x.shape[1], config, mean=mean, variance=variance)
    recorder = BatchHistory()
    log.info(
        "training head on %d rows (%d cases), %d epochs of batches of %d, standardize=%s",
        x.shape[0],
        int(y.sum()),
        config.epochs,
        config.batch_size,
        config.standardize,
    )
    model.fit(
        x,
        y,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        callbacks=[recorder],
        verbose=0,
    )
    history = history_frame(recorder.records, x.shape[0], config.batch_size)
    for epoch, rows in history.groupby("epoch"):
        log.info(
            "epoch %d: BCE %.4f, accuracy %.3f",
            epoch,
            rows["loss_running"].iloc[-1],
            rows["accuracy_running"].iloc[-1],
        )
    return model, history


def predict_head(model: keras.Model, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probability of case for each row of pooled features, shape (n,)."""
    x = np.asarray(features, dtype=np.float32)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).reshape(-1)


def head_diagnostics(model: keras.Model, features: np.ndarray, batch_size: int = 256) -> dict[str, Any]:
    """Health of a trained head on its training features.

    Returns
    -------
    dict
        ``n_units``, ``n_dead_units`` and ``dead_unit_fraction`` (FC1 ReLU
        units never active on any row), ``prediction_mean``/``_std``/
        ``_min``/``_max`` and ``collapsed`` (prediction std below 0.01).
    """
    x = np.asarray(features, dtype=np.float32)
    fc1 = keras.Model(model.inputs, model.get_layer(FC1_LAYER).output)
    activations = np.asarray(fc1.predict(x, batch_size=batch_size, verbose=0))
    dead = ~np.any(activations > 0, axis=0)
    predictions = predict_head(model, x, batch_size=batch_size)
    return {
        "n_units": int(dead.size),
        "n_dead_units": int(dead.sum()),
        "dead_unit_fraction": float(dead.mean()),
        "prediction_mean": float(predictions.mean()),
        "prediction_std": float(predictions.std()),
        "prediction_min": float(predictions.min()),
        "prediction_max": float(predictions.max()),
        "collapsed": bool(predictions.std() < COLLAPSE_STD),
    }


def compose_model(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """One model from face chips to the probability of case.

    The head's layers are applied to the backbone's pooled output inside the
    backbone's own graph, so the result is flat: every backbone layer (the
    last convolution for Grad-CAM) is reachable with ``get_layer``.

    Parameters
    ----------
    backbone : keras.Model
        Frozen; outputs ``[pooled, descriptor]``.
    head : keras.Model
        From :func:`build_head` / :func:`train_head`.

    Returns
    -------
    keras.Model
        ``chips (N, 150, 150, 3) -> probability (N, 1)``, named ``phenoface``.
    """
    outputs = backbone.outputs
    if not outputs:
        raise ValueError("the backbone has no outputs")
    backbone.trainable = False
    backbone_names = {layer.name for layer in backbone.layers}
    x = outputs[0]
    for layer in head.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name in backbone_names:
            raise ValueError(f"head layer name {layer.name!r} clashes with a backbone layer")
        x = layer(x)
    return keras.Model(backbone.inputs, x, name="phenoface")


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Save a Keras model to ``path`` (``.keras``) atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a head or composed model written by :func:`save_model` (uncompiled)."""
    if not os.path.exists(path):
        raise PhenofaceError(f"model file {path} does not exist; run train_classifier first")
    # The composed model holds the backbone's custom layers; importing the module registers them.
    from . import backbone  # noqa: F401

    return keras.saving.load_model(path, compile=False)


def plot_training_curves(history: pd.DataFrame, title: str = "Training"):
    """Replica of the paper's Figure 4A: normalised BCE and accuracy per batch.

    Faint lines are the per-batch values; solid lines the running means over
    each epoch that Keras reports (which restart, and so fluctuate, at each
    epoch's beginning). BCE is divided by its largest running value.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4), constrained_layout=True)
    if history.empty:
        axis.text(0.5, 0.5, "no training history", ha="center", va="center")
        return figure
    scale = float(np.nanmax(history["loss_running"])) or 1.0
    step = history["step"]
    axis.plot(step, history["loss"] / scale, color="tab:red", alpha=0.15, linewidth=0.6)
    axis.plot(step, history["accuracy"], color="tab:blue", alpha=0.15, linewidth=0.6)
    axis.plot(step, history["loss_running"] / scale, color="tab:red", label="BCE (normalised)")
    axis.plot(step, history["accuracy_running"], color="tab:blue", label="accuracy")
    for boundary in history.loc[history["batch"] == 1, "step"].iloc[1:]:
        axis.axvline(boundary - 0.5, color="grey", linestyle=":", linewidth=0.8)
    axis.set_xlabel("batch (all epochs)")
    axis.set_ylabel("value")
    axis.set_ylim(0, 1.05)
    axis.set_title(title)
    axis.legend(loc="center right")
    return figure
