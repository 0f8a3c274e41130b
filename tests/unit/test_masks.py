"""Face masks on real aligned chips made from ../shared/data/faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from phenoface.errors import PhenofaceError
from phenoface.masks import (
    FACE_OVAL,
    FaceMasker,
    MaskResult,
    apply_mask,
    forehead_points,
    landmark_hull_mask,
    mesh_input,
    mesh_to_chip,
)
from phenoface.models import dlib_model_path

CHIP_SIZE = 150
CHIP_PADDING = 0.25
N_CHIPS = 20


def _mapping_to_chip(details) -> np.ndarray:
    """2x3 affine from image to chip coordinates (dlib's get_mapping_to_chip)."""
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    cos, sin = np.cos(details.angle), np.sin(details.angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    corners = np.array(
        [[rect.left(), rect.top()], [rect.left(), rect.bottom()], [rect.right(), rect.bottom()]]
    )
    source = (corners - centre) @ rotation.T + centre
    target = np.array([[0, 0], [0, details.rows - 1], [details.cols - 1, details.rows - 1]], dtype=np.float64)
    return cv2.getAffineTransform(source.astype(np.float32), target.astype(np.float32))


def _make_chip(path: Path, detector, predictor) -> tuple[np.ndarray, np.ndarray] | None:
    """Aligned 150x150 chip and its 68 landmarks in chip coordinates, or None."""
    import dlib

    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    pad_y, pad_x = image.shape[0] // 4, image.shape[1] // 4
    padded = cv2.copyMakeBorder(image, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=0)
    detections = detector(padded, 1)
    if not detections:
        return None
    shape = predictor(padded, max(detections, key=lambda rect: rect.area()))
    details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    chip = dlib.extract_image_chip(padded, details)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    affine = _mapping_to_chip(details)
    return np.ascontiguousarray(chip), points @ affine[:, :2].T + affine[:, 2]


@pytest.fixture(scope="module")
def chips(faces_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """20 real chips with landmarks, spread over the 656 faces (every 32nd)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("landmarks")))
    paths = sorted(faces_dir.glob("dev_*.jpg"))[::32]
    made = [_make_chip(path, detector, predictor) for path in paths]
    made = [chip for chip in made if chip is not None][:N_CHIPS]
    assert len(made) == N_CHIPS
    return made


@pytest.fixture(scope="module")
def model_dir(mediapipe_models) -> Path:
    """The verified MediaPipe networks, in the test model cache outside the repository."""
    return mediapipe_models["face_landmark"].parent


@pytest.fixture(scope="module")
def mesh_results(chips, model_dir) -> list[MaskResult]:
    """face_mesh results for every chip."""
    masker = FaceMasker("face_mesh", model_dir)
    return [masker(chip, landmarks) for chip, landmarks in chips]


@pytest.fixture(scope="module")
def portrait_results(chips, model_dir) -> list[MaskResult]:
    """portrait results for every chip."""
    masker = FaceMasker("portrait", model_dir)
    return [masker(chip, landmarks) for chip, landmarks in chips]


def _value_at(mask: np.ndarray, point: np.ndarray) -> int:
    """Mask value at the pixel nearest ``point`` (x, y)."""
    x, y = np.round(point).astype(int)
    return int(mask[y, x])


def test_face_oval_is_mediapipe_cycle():
    """FACE_OVAL is 36 distinct mesh indices from the forehead (10) round to the chin (152)."""
    assert len(FACE_OVAL) == 36
    assert len(set(FACE_OVAL)) == 36
    assert FACE_OVAL[0] == 10 and FACE_OVAL[18] == 152
    assert max(FACE_OVAL) < 468


def test_mesh_input_and_mapping_round_trip():
    """mesh_input pads to a square in [0, 1], and mesh_to_chip undoes its scale and offset."""
    chip = np.full((150, 150, 3), 255, dtype=np.uint8)
    tensor, scale, offset = mesh_input(chip, context=0.2)
    assert tensor.shape == (1, 192, 192, 3) and tensor.dtype == np.float32
    assert tensor.max() == pytest.approx(1.0)
    assert offset == (30, 30) and scale == pytest.approx(210 / 192)
    corner_in_input = np.zeros((468, 3))
    corner_in_input[:, :2] = np.array([30, 30]) / scale
    np.testing.assert_allclose(mesh_to_chip(corner_in_input.ravel(), scale, offset), 0, atol=1e-9)


def test_face_mesh_is_used_on_real_faces(mesh_results):
    """On real chips the mesh is trusted (no fallback) with a high presence probability."""
    assert [result.method for result in mesh_results] == ["face_mesh"] * N_CHIPS
    assert min(result.score for result in mesh_results) > 0.9


def test_face_mesh_lands_on_dlib_eyes(chips, model_dir):
    """Mesh eye corners (33, 133, 362, 263) lie within 6 px of dlib's (36, 39, 42, 45)."""
    masker = FaceMasker("face_mesh", model_dir)
    errors = []
    for chip, landmarks in chips:
        points, _ = masker.face_mesh_landmarks(chip)
        for mesh_index, dlib_index in ((33, 36), (133, 39), (362, 42), (263, 45)):
            errors.append(np.linalg.norm(points[mesh_index] - landmarks[dlib_index]))
    assert np.median(errors) < 4.0
    assert max(errors) < 8.0


def test_face_mesh_mask_covers_35_to_80_percent(mesh_results):
    """Acceptance: the face_mesh mask covers between 35% and 80% of every chip."""
    fractions = [result.fraction for result in mesh_results]
    assert min(fractions) >= 0.35, fractions
    assert max(fractions) <= 0.80, fractions


def test_face_mesh_mask_contains_nose_and_eyes(chips, mesh_results):
    """The face_mesh mask contains the landmark centroid and both eye centres."""
    for (_, landmarks), result in zip(chips, mesh_results):
        assert _value_at(result.mask, landmarks.mean(axis=0)) == 255
        assert _value_at(result.mask, landmarks[36:42].mean(axis=0)) == 255
        assert _value_at(result.mask, landmarks[42:48].mean(axis=0)) == 255


def test_face_mesh_mask_excludes_corners(mesh_results):
    """The face_mesh mask leaves all four chip corners as background."""
    for result in mesh_results:
        mask = result.mask
        assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0


def test_masks_are_binary_uint8(chips, mesh_results, portrait_results):
    """Every mask is uint8 of the chip's height and width with values 0 and 255 only."""
    for (chip, _), mesh, portrait in zip(chips, mesh_results, portrait_results):
        for mask in (mesh.mask, portrait.mask):
            assert mask.dtype == np.uint8 and mask.shape == chip.shape[:2]
            assert set(np.unique(mask)) <= {0, 255}


def test_portrait_covers_more_than_face_mesh(mesh_results, portrait_results):
    """Person segmentation (hair, neck) covers more of the chip than the face oval on average."""
    assert [result.method for result in portrait_results] == ["portrait"] * N_CHIPS
    mesh_mean = np.mean([result.fraction for result in mesh_results])
    portrait_mean = np.mean([result.fraction for result in portrait_results])
    assert portrait_mean > mesh_mean + 0.05


def test_face_mesh_falls_back_without_a_face(chips, model_dir):
    """A chip with no face (flat grey) falls back to landmark_hull and says why."""
    _, landmarks = chips[0]
    grey = np.full((CHIP_SIZE, CHIP_SIZE, 3), 128, dtype=np.uint8)
    result = FaceMasker("face_mesh", model_dir)(grey, landmarks)
    assert result.method == "landmark_hull"
    assert result.score < 0.5
    assert result.detail.startswith("fallback to landmark_hull: face presence")
    np.testing.assert_array_equal(result.mask, landmark_hull_mask(grey.shape[:2], landmarks))


def test_landmark_hull_covers_all_landmarks(chips):
    """The landmark_hull mask contains every one of the 68 landmarks inside the chip."""
    masker = FaceMasker("landmark_hull")
    for chip, landmarks in chips:
        result = masker(chip, landmarks)
        assert result.method == "landmark_hull" and np.isnan(result.score)
        inside = np.all((landmarks >= 0) & (landmarks <= CHIP_SIZE - 1), axis=1)
        assert all(_value_at(result.mask, point) == 255 for point in landmarks[inside])


def test_landmark_hull_extends_above_brows(chips):
    """The hull reaches above the highest eyebrow point by most of the forehead lift."""
    chip, landmarks = chips[0]
    mask = landmark_hull_mask(chip.shape[:2], landmarks)
    lifted = forehead_points(landmarks)
    top_of_mask = np.nonzero(mask.any(axis=1))[0][0]
    brow_top = landmarks[17:27, 1].min()
    assert top_of_mask < brow_top - 10
    assert top_of_mask == pytest.approx(max(lifted[:, 1].min(), 0), abs=1.5)


def test_none_is_all_255(chips):
    """Method none returns a mask of 255 everywhere."""
    chip, landmarks = chips[0]
    result = FaceMasker("none")(chip, landmarks)
    assert result.method == "none"
    assert result.mask.shape == chip.shape[:2] and np.all(result.mask == 255)


def test_apply_mask_zeroes_exactly_background(chips, mesh_results):
    """apply_mask sets background pixels to 0 and leaves face pixels unchanged."""
    chip, _ = chips[1]
    mask = mesh_results[1].mask
    masked = apply_mask(chip, mask)
    assert np.all(masked[mask == 0] == 0)
    np.testing.assert_array_equal(masked[mask == 255], chip[mask == 255])
    assert np.any(chip[mask == 0] != 0)  # there was background to remove


def test_unknown_method_is_a_user_error():
    """An unknown method name raises PhenofaceError listing the valid ones."""
    with pytest.raises(PhenofaceError, match="face_mesh, portrait, landmark_hull, none"):
        FaceMasker("ellipse")


def test_missing_model_is_a_user_error(tmp_path):
    """A model folder without the network raises PhenofaceError naming the fetch rule."""
    with pytest.raises(PhenofaceError, match="fetch_mediapipe_models"):
        FaceMasker("face_mesh", tmp_path)
