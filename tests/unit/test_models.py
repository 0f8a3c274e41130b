"""Fetching and verifying the pretrained models."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from phenoface.errors import PhenofaceError
from phenoface.models import (
    MEDIAPIPE_MODELS,
    dlib_model_path,
    download_mediapipe_wheel,
    ensure_mediapipe_models,
    extract_mediapipe_models,
    mediapipe_model_paths,
    mediapipe_models_present,
    verify_sha256,
)


def _fake_wheel(path: Path, contents: dict[str, bytes]) -> Path:
    """A zip file holding ``contents`` (member name to bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        for member, blob in contents.items():
            archive.writestr(member, blob)
    return path


@pytest.fixture(scope="module")
def model_paths(mediapipe_models) -> dict[str, Path]:
    """The MediaPipe networks, fetched once into the test model cache outside the repository."""
    return mediapipe_models


def test_ensure_gives_verified_models(model_paths, model_cache):
    """ensure_mediapipe_models gives both networks in <resources>/mediapipe, pinned sha256."""
    assert set(model_paths) == {"face_landmark", "selfie_segmentation"}
    for name, path in model_paths.items():
        assert path == model_cache / "mediapipe" / MEDIAPIPE_MODELS[name].filename
        assert hashlib.sha256(path.read_bytes()).hexdigest() == MEDIAPIPE_MODELS[name].sha256


def test_ensure_is_a_noop_when_present(model_paths, model_cache):
    """With verified files in place, ensure_mediapipe_models rewrites nothing."""
    before = {name: path.stat().st_mtime_ns for name, path in model_paths.items()}
    again = ensure_mediapipe_models(model_cache)
    assert again == model_paths
    assert {name: path.stat().st_mtime_ns for name, path in again.items()} == before


def test_verify_sha256_rejects_tampered_file(model_paths, tmp_path):
    """A model with one byte changed fails verification with a message naming the file."""
    tampered = tmp_path / "face_landmark.tflite"
    blob = bytearray(model_paths["face_landmark"].read_bytes())
    blob[1000] ^= 0xFF
    tampered.write_bytes(bytes(blob))
    expected = MEDIAPIPE_MODELS["face_landmark"].sha256
    with pytest.raises(PhenofaceError, match=f"{tampered}.*expected {expected}"):
        verify_sha256(tampered, expected, "face_landmark model")


def test_verify_sha256_accepts_original(model_paths):
    """The fetched model passes verification against its pinned sha256."""
    verify_sha256(model_paths["face_landmark"], MEDIAPIPE_MODELS["face_landmark"].sha256, "model")


def test_models_present_is_false_for_tampered_copy(model_paths, tmp_path):
    """mediapipe_models_present is False when one file in the folder is tampered."""
    for name, path in mediapipe_model_paths(tmp_path).items():
        path.write_bytes(model_paths[name].read_bytes())
    assert mediapipe_models_present(tmp_path)
    target = mediapipe_model_paths(tmp_path)["selfie_segmentation"]
    target.write_bytes(target.read_bytes() + b"\0")
    assert not mediapipe_models_present(tmp_path)


def test_extract_rejects_wheel_with_wrong_sha(tmp_path):
    """A wheel whose sha256 is not the pinned one is refused and nothing is written."""
    wheel = _fake_wheel(tmp_path / "mediapipe.whl", {"README": b"not mediapipe"})
    with pytest.raises(PhenofaceError, match="mediapipe==0.10.21 wheel"):
        extract_mediapipe_models(wheel, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_rejects_tampered_member(model_paths, tmp_path):
    """A wheel holding a tampered network is refused, and neither network is written."""
    contents = {spec.member: model_paths[name].read_bytes() for name, spec in MEDIAPIPE_MODELS.items()}
    contents[MEDIAPIPE_MODELS["face_landmark"].member] += b"tampered"
    wheel = _fake_wheel(tmp_path / "mediapipe.whl", contents)
    with pytest.raises(PhenofaceError, match="face_landmark.tflite in .* has sha256"):
        extract_mediapipe_models(wheel, tmp_path / "out", wheel_sha256=None)
    assert not any(path.exists() for path in mediapipe_model_paths(tmp_path / "out").values())


def test_extract_writes_verified_members(model_paths, tmp_path):
    """A wheel with the right members yields both networks, byte-identical, readable by others."""
    contents = {spec.member: model_paths[name].read_bytes() for name, spec in MEDIAPIPE_MODELS.items()}
    wheel = _fake_wheel(tmp_path / "mediapipe.whl", contents)
    written = extract_mediapipe_models(wheel, tmp_path / "out", wheel_sha256=None)
    for name, path in written.items():
        assert path.read_bytes() == model_paths[name].read_bytes()
        assert path.stat().st_mode & 0o444 == 0o444


def test_download_failure_is_a_user_error(tmp_path):
    """When pip cannot run, the error says what failed and what to do."""
    with pytest.raises(PhenofaceError, match="could not run pip.*PyPI.*by hand"):
        download_mediapipe_wheel(tmp_path, python=str(tmp_path / "no-such-python"))


def test_dlib_model_paths_exist():
    """dlib_model_path gives the existing 68-point predictor and ResNet files."""
    assert dlib_model_path("landmarks").name == "shape_predictor_68_face_landmarks.dat"
    assert dlib_model_path("resnet").name == "dlib_face_recognition_resnet_model_v1.dat"
    assert dlib_model_path("landmarks").stat().st_size > 1_000_000


def test_dlib_model_path_rejects_unknown_name():
    """An unknown dlib model name raises PhenofaceError listing the valid names."""
    with pytest.raises(PhenofaceError, match="landmarks, resnet"):
        dlib_model_path("five_point")


def test_place_dlib_model_writes_a_verified_copy(tmp_path):
    """place_dlib_model copies the model (its own file, not a link sharing the environment's mtime)."""
    from phenoface.models import DLIB_MODELS, place_dlib_model
    from phenoface.sheets import file_sha256

    target = place_dlib_model("resnet", tmp_path / "dlib" / "resnet.dat")
    assert file_sha256(target) == DLIB_MODELS["resnet"].sha256
    assert target.stat().st_ino != dlib_model_path("resnet").stat().st_ino
    assert [p.name for p in target.parent.iterdir()] == ["resnet.dat"]  # no staging file left
