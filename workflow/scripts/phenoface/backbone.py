"""The frozen dlib face-recognition ResNet as a Keras 3 model.

:func:`build_backbone` reproduces ``anet_type`` of dlib's
``dnn_face_recognition_ex.cpp`` layer for layer, so that with the weights read
by :func:`phenoface.dlib_format.read_dlib_resnet` its 128-d output equals
``dlib.face_recognition_model_v1.compute_face_descriptor`` on the same aligned
150x150 chip (to ~1e-6). It runs under the TensorFlow and the JAX backends.

Layer names (input side first), usable with ``model.get_layer(name)``:

* ``chip`` (input, RGB, uint8 or float in 0..255), ``normalize``
  (``(x - mean_rgb) / 256`` as dlib's input layer);
* stem: ``conv1_conv`` (32 7x7/2, unpadded), ``conv1_affine``, ``conv1``
  (ReLU, 72x72x32), ``pool1`` (3x3/2 max pool, 35x35x32);
* residual blocks ``level4_block1..3`` (35x35x32), ``level3_block1..4``
  (17x17x64), ``level2_block1..3`` (8x8x128), ``level1_block1..3`` (4x4x256),
  ``level0_block1`` (2x2x256); a block's name is its output (after the final
  ReLU) and its inner layers are ``<block>_conv1``, ``_affine1``, ``_relu1``,
  ``_conv2``, ``_affine2``, ``_shortcut`` (2x2/2 average pool, first block
  of levels 3..0 only) and ``_add``;
* ``pooled`` (global average, 256-d) and ``descriptor`` (256->128, no bias).

:data:`BLOCK_NAMES` lists ``conv1`` and the block names, the layers a Grad-CAM
can be attached to.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from .dlib_format import BLOCK_NAMES, RESNET_LAYERS, DlibResnet, read_dlib_resnet
from .errors import PhenofaceError
from .io import atomic_path, write_text

__all__ = [
    "BLOCK_NAMES",
    "CHIP_SIZE",
    "INPUT_NAME",
    "build_backbone",
    "convert_dlib_resnet",
    "extract_features",
    "gradients",
    "guided_relu",
    "load_backbone",
    "read_dlib_resnet",
    "set_dlib_weights",
]

log = logging.getLogger(__name__)


def use_full_float32() -> None:
    """Compute float32 convolutions and products in full float32 on GPUs too.

    Both backends default to TF32 on recent NVIDIA GPUs, which moved
    descriptors by up to 3e-4 from dlib's on an H200; the port is meant to be
    exact, and the backbone is cheap next to a job's fixed cost.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)


use_full_float32()

CHIP_SIZE = 150
INPUT_NAME = "chip"
#: dlib's input_rgb_image_sized means (as float32 in the model file).
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)


@keras.saving.register_keras_serializable(package="phenoface")
class ChipNormalization(layers.Layer):
    """dlib's input scaling: ``(float32(rgb) - mean) / 256`` per channel."""

    def __init__(self, mean: Sequence[float] = DLIB_MEAN_RGB, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)

    def call(self, chips):
        mean = ops.convert_to_tensor(np.asarray(self.mean, dtype=np.float32))
        # Subtract in float32 then scale by a power of two, as dlib does: exact.
        return (ops.cast(chips, "float32") - mean) * np.float32(1.0 / 256.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": list(self.mean)}


@keras.saving.register_keras_serializable(package="phenoface")
class ChannelAffine(layers.Layer):
    """dlib's ``affine_`` layer (batch norm folded): ``x * gamma + beta``."""

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        return inputs * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="phenoface")
class ZeroPadAdd(layers.Layer):
    """dlib's ``add_prev_``: add two maps, zero-padding the smaller at the end.

    Padding goes after the last row, column and channel, and the output has
    the larger size on every axis (down-sampling blocks meet 3x3 against 4x4
    and 1x1 against 2x2, and 2x more channels against the shortcut's).
    """

    def call(self, inputs):
        first, second = inputs
        target = [max(a, b) for a, b in zip(first.shape[1:], second.shape[1:])]

        def pad(x):
            extra = [t - s for t, s in zip(target, x.shape[1:])]
            if not any(extra):
                return x
            return ops.pad(x, [[0, 0]] + [[0, e] for e in extra])

        return pad(first) + pad(second)

    def compute_output_shape(self, input_shapes):
        first, second = input_shapes
        return (first[0],) + tuple(max(a, b) for a, b in zip(first[1:], second[1:]))


def _apply(spec_kind: str, name: str, args: tuple, x):
    """Apply one computational layer of the dlib network type."""
    if spec_kind == "con":
        filters, rows, cols, stride_y, stride_x = args
        return layers.Conv2D(
            filters,
            (rows, cols),
            strides=(stride_y, stride_x),
            # dlib pads stride-1 filters by half their size and strided ones not at all.
            padding="same" if (stride_y, stride_x) == (1, 1) else "valid",
            kernel_initializer="zeros",
            name=name,
        )(x)
    if spec_kind == "affine":
        return ChannelAffine(name=name)(x)
    if spec_kind == "relu":
        return layers.ReLU(name=name)(x)
    if spec_kind == "max_pool":
        rows, cols, stride_y, stride_x = args
        return layers.MaxPooling2D((rows, cols), (stride_y, stride_x), "valid", name=name)(x)
    if spec_kind == "avg_pool":
        rows, cols, stride_y, stride_x = args
        if rows == 0:
            return layers.GlobalAveragePooling2D(name=name)(x)
        return layers.AveragePooling2D((rows, cols), (stride_y, stride_x), "valid", name=name)(x)
    if spec_kind == "fc":
        return layers.Dense(args[0], use_bias=False, kernel_initializer="zeros", name=name)(x)
    raise ValueError(f"unknown layer kind {spec_kind}")


def build_backbone(weights: DlibResnet | None = None) -> keras.Model:
    """Build the frozen face-recognition ResNet.

    Parameters
    ----------
    weights : DlibResnet, optional
        Weights from :func:`read_dlib_resnet`; without them every weight is
        zero (gamma one) until loaded (use :func:`load_backbone` for a
        converted file). Zero initialisers also avoid seeding random
        generators for weights that are always overwritten.

    Returns
    -------
    keras.Model
        Input ``(N, 150, 150, 3)`` RGB chips (uint8 or float); outputs
        ``[pooled (N, 256), descriptor (N, 128)]``. Every layer is frozen.
    """
    chips = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name=INPUT_NAME, dtype="float32")
    mean = weights.input_mean if weights is not None else DLIB_MEAN_RGB
    x = ChipNormalization(mean, name="normalize")(chips)
    tags: dict[int, object] = {}
    for spec in RESNET_LAYERS:
        if spec.kind == "tag":
            tags[spec.args[0]] = x
        elif spec.kind == "skip":
            # skip1: continue from the tag1 output; the block output waits in tag2.
            x = tags[spec.args[0]]
        elif spec.kind == "add_prev":
            x = ZeroPadAdd(name=spec.name)([x, tags[spec.args[0]]])
        else:
            x = _apply(spec.kind, spec.name, spec.args, x)
            if spec.name == "pooled":
                pooled = x
    descriptor = x
    model = keras.Model(chips, [pooled, descriptor], name="dlib_face_resnet")
    if weights is not None:
        set_dlib_weights(model, weights)
    for layer in model.layers:
        layer.trainable = False
    model.trainable = False
    return model


def set_dlib_weights(model: keras.Model, weights: DlibResnet) -> None:
    """Copy dlib's arrays into the matching layers of a built backbone."""
    for name, (kernel, bias) in weights.convs.items():
        model.get_layer(name).set_weights([kernel, bias])
    for name, (gamma, beta) in weights.affines.items():
        model.get_layer(name).set_weights([gamma, beta])
    model.get_layer("descriptor").set_weights([weights.fc])


def sidecar_path(weights_path: str | os.PathLike) -> Path:
    """``x.weights.h5`` -> ``x.sha256``: where the source checksum is recorded."""
    path = Path(weights_path)
    name = path.name.removesuffix(".weights.h5")
    return path.with_name(f"{name}.sha256")


def convert_dlib_resnet(
    dat_path: str | os.PathLike,
    out_weights_path: str | os.PathLike,
    sha256_path: str | os.PathLike | None = None,
) -> str:
    """Convert dlib's ``.dat`` into a Keras ``.weights.h5`` file.

    Parameters
    ----------
    dat_path : path-like
        ``dlib_face_recognition_resnet_model_v1.dat``.
    out_weights_path : path-like
        Destination; must end in ``.weights.h5``. Written atomically.
    sha256_path : path-like, optional
        Sidecar recording the source file's SHA-256 (``sha256sum`` format);
        defaults to :func:`sidecar_path` of the destination.

    Returns
    -------
    str
        SHA-256 of the source ``.dat`` file.
    """
    out = Path(out_weights_path)
    if not out.name.endswith(".weights.h5"):
        raise PhenofaceError(f"{out}: Keras weights files must end in .weights.h5; rename the output")
    weights = read_dlib_resnet(dat_path)
    model = build_backbone(weights)
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
    write_text(sha256_path or sidecar_path(out), f"{weights.sha256}  {Path(dat_path).name}\n")
    log.info("converted %s (sha256 %s) to %s", dat_path, weights.sha256, out)
    return weights.sha256


def load_backbone(weights_path: str | os.PathLike) -> keras.Model:
    """Build the backbone and load weights written by :func:`convert_dlib_resnet`."""
    path = Path(weights_path)
    if not path.is_file():
        raise PhenofaceError(f"{path}: converted backbone weights not found; run the convert_backbone rule")
    model = build_backbone()
    model.load_weights(path)
    return model


def _check_chips(chips: np.ndarray) -> np.ndarray:
    """Return ``chips`` as an array of shape (N, 150, 150, 3) or raise."""
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise PhenofaceError(
            f"chips must have shape (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}; "
            "use the aligned RGB chips written by preprocessing"
        )
    return chips


def extract_features(
    model: keras.Model, chips: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Run the backbone on aligned chips.

    Parameters
    ----------
    model : keras.Model
        From :func:`load_backbone` or :func:`build_backbone`.
    chips : numpy.ndarray
        ``(N, 150, 150, 3)`` RGB chips, uint8 (sent as is, cast in the model)
        or float in 0..255.
    batch_size : int
        Chips per forward pass.

    Returns
    -------
    pooled, descriptor : numpy.ndarray
        float32 arrays of shape ``(N, 256)`` and ``(N, 128)``.
    """
    chips = _check_chips(chips)
    if len(chips) == 0:
        return np.zeros((0, 256), np.float32), np.zeros((0, 128), np.float32)
    pooled, descriptor = [], []
    for start in range(0, len(chips), batch_size):
        batch = chips[start : start + batch_size]
        n_real = len(batch)
        if start and n_real < batch_size:
            # A short last batch would compile the forward pass a second time
            # (seconds on a GPU); padding costs one batch of compute at most.
            batch = _pad_rows(batch, batch_size)
        out = model.predict_on_batch(batch)
        pooled.append(np.asarray(out[0][:n_real], dtype=np.float32))
        descriptor.append(np.asarray(out[1][:n_real], dtype=np.float32))
    return np.concatenate(pooled), np.concatenate(descriptor)


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with zero rows appended up to ``rows`` rows."""
    padding = np.zeros((rows - len(array),) + array.shape[1:], array.dtype)
    return np.concatenate([array, padding])


def _bucket(n: int) -> int:
    """The smallest power of two >= ``n``: the batch shapes gradients are compiled for."""
    return 1 << max(n - 1, 0).bit_length()


def _grad_with_aux(fn: Callable, args: dict, compiled: dict | None = None) -> tuple[dict, dict]:
    """Gradients of ``fn(args)[0]`` (a scalar) w.r.t. every array in ``args``.

    ``fn`` returns ``(scalar, aux)``; this is the only backend-specific code.
    Returns ``(grads, aux)`` with numpy arrays. Under JAX the gradient
    function is compiled once and kept in ``compiled`` (when given), so later
    calls with the same shapes reuse it instead of recompiling per batch.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = {key: tf.convert_to_tensor(value) for key, value in args.items()}
        with tf.GradientTape() as tape:
            tape.watch(list(tensors.values()))
            total, aux = fn(tensors)
        grads = tape.gradient(total, tensors)
    elif backend == "jax":
        import jax

        step = compiled.get("jax") if compiled is not None else None
        if step is None:
            step = jax.jit(jax.grad(fn, has_aux=True))
            if compiled is not None:
                compiled["jax"] = step
        grads, aux = step(jax.tree_util.tree_map(jax.numpy.asarray, args))
    else:
        raise NotImplementedError(f"gradients are implemented for tensorflow and jax, not {backend}")

    def as_numpy(tree: dict) -> dict:
        return {k: np.asarray(v, dtype=np.float32) for k, v in tree.items()}

    return as_numpy(grads), as_numpy(aux)


#: Compiled gradient functions per model, keyed by what shapes the traced function.
_COMPILED: weakref.WeakKeyDictionary[keras.Model, dict] = weakref.WeakKeyDictionary()


def _sum_output(out):
    """Default per-chip score: the sum of the chosen output."""
    return ops.sum(out, axis=-1)


@ops.custom_gradient
def guided_relu(x):
    """ReLU whose gradient passes only where both the input and the upstream gradient are positive."""

    def grad(*args, upstream=None):
        # TensorFlow passes the upstream gradient positionally, JAX by keyword.
        if upstream is None:
            (upstream,) = args
        keep = ops.logical_and(x > 0, upstream > 0)
        return ops.where(keep, upstream, ops.zeros_like(upstream))

    return ops.relu(x), grad


def gradients(
    model: keras.Model,
    chips: np.ndarray,
    layer_names: Sequence[str] = (),
    output: str = "descriptor",
    target: Callable | None = None,
    guided: bool = False,
    chip_weights: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Activations and gradients of a per-chip score, for Grad-CAM.

    All requested layers are served by one forward and one backward pass: a
    zero "probe" is added to each requested layer's output and the gradient
    w.r.t. the probe is the gradient w.r.t. the activation.

    Parameters
    ----------
    model : keras.Model
        The backbone (any functional model whose outputs include ``output``).
    chips : numpy.ndarray
        ``(N, 150, 150, 3)`` chips.
    layer_names : sequence of str
        :data:`INPUT_NAME` (``"chip"``) for the input itself and/or layer
        names, e.g. from :data:`BLOCK_NAMES`.
    output : str
        Name of the model output the score is computed from (``descriptor``
        or ``pooled``).
    target : callable, optional
        Maps the chosen output tensor ``(N, d)`` to one score per chip
        ``(N,)`` using ``keras.ops``; default: the sum of the output.
    guided : bool
        Back-propagate through every ``ReLU`` layer as guided backpropagation
        does (Springenberg et al. 2015): only positive gradients into
        positive inputs pass. The forward values are unchanged.
    chip_weights : numpy.ndarray, optional
        ``(N,)`` factor on each chip's score (e.g. +1/-1 for the class
        explained); default 1. Passed as data, not baked into ``target``, so
        one compiled gradient function serves every batch.

    Returns
    -------
    dict
        Name -> ``(activation, gradient)``, float32 arrays of the layer's
        output shape (for the input: the chips as float32 and d score / d chip).
    """
    chips = _check_chips(chips).astype(np.float32)
    n_chips = len(chips)
    weights = np.ones(n_chips, np.float32) if chip_weights is None else np.asarray(chip_weights, np.float32)
    # Pad to a power of two with zero-weight chips: a few batch shapes, each compiled once.
    rows = _bucket(n_chips)
    chips, weights = _pad_rows(chips, rows), _pad_rows(weights, rows)
    output_index = [t.name for t in model.outputs].index(model.get_layer(output).output.name)
    score = target or _sum_output
    inner = [name for name in layer_names if name != INPUT_NAME]
    probes = {
        name: np.zeros((rows,) + tuple(model.get_layer(name).output.shape[1:]), np.float32) for name in inner
    }

    def forward(args: dict):
        activations = {}

        def operation_fn(operation):
            base = guided_relu if guided and isinstance(operation, layers.ReLU) else operation
            if operation.name not in args:
                return base

            def probed(*call_args, **call_kwargs):
                value = base(*call_args, **call_kwargs) + args[operation.name]
                activations[operation.name] = value
                return value

            return probed

        # Keras' own graph runner, with the requested layers wrapped.
        outputs = model._run_through_graph(args[INPUT_NAME], operation_fn=operation_fn)
        return ops.sum(score(outputs[output_index]) * args["chip_weights"]), activations

    key = (tuple(layer_names), output, score, guided)
    compiled = _COMPILED.setdefault(model, {}).setdefault(key, {})
    grads, activations = _grad_with_aux(
        forward, {INPUT_NAME: chips, "chip_weights": weights, **probes}, compiled
    )
    activations[INPUT_NAME] = chips
    return {name: (activations[name][:n_chips], grads[name][:n_chips]) for name in layer_names}


def read_chips(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Read 150x150 RGB chip PNGs into one ``(N, 150, 150, 3)`` uint8 array.

    Raises
    ------
    PhenofaceError
        If a file is missing, unreadable or not a 150x150 colour image.
    """
    from .io import read_rgb_png

    chips = np.zeros((len(paths), CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    for index, path in enumerate(paths):
        image = read_rgb_png(path)
        if image.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise PhenofaceError(
                f"{path}: chip is {image.shape}, expected ({CHIP_SIZE}, {CHIP_SIZE}, 3); "
                "preprocess.chip_size must be 150 for the dlib backbone"
            )
        chips[index] = image
    return chips
