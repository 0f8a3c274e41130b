"""The planted facial-adiposity warp: what it widens, what it leaves alone, measured on its output.

Positions are measured on the warped image itself: a small Gaussian spot is
drawn at a landmark, the spot image goes through :func:`plant_adiposity` and
the spot's intensity centroid is where that landmark went. Tolerances: the
jaw width |p4 - p12| grows by ``strength * W`` within 0.5 px on synthetic
faces and within 1 px (about 0.01 W) on a real UTKFace photo; eye and brow
spots move less than 0.5 px.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_shape import similarity, template_face

from phenoface.faces import FacePreprocessor, load_rgb
from phenoface.models import dlib_model_path
from phenoface.planted import displacement, face_frame, inverse_map, plant_adiposity, warp_points

EYES_AND_BROWS = list(range(17, 27)) + list(range(36, 48))
SIZE = 200


def spot_position(
    point: np.ndarray, landmarks: np.ndarray, strength: float, shape=(SIZE, SIZE)
) -> np.ndarray:
    """Where a spot drawn at ``point`` lies after the warp (intensity centroid, pixels)."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    spot = np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * 1.5**2)).astype(np.float32)
    warped = plant_adiposity(spot, landmarks, strength).astype(np.float64)
    weights = np.where(warped > 0.02, warped, 0.0)
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def measured_landmarks(landmarks: np.ndarray, indices, strength: float, shape=(SIZE, SIZE)) -> dict:
    """``{index: position after the warp}`` measured on warped spot images."""
    return {index: spot_position(landmarks[index], landmarks, strength, shape) for index in indices}


def synthetic_face(angle_degrees: float = 0.0) -> np.ndarray:
    """The morphometry tests' template face, rolled by ``angle_degrees``, inside a 200 px image."""
    template = template_face()
    centre = template.mean(axis=0)
    return similarity(template - centre, math.radians(angle_degrees), 1.0, (100.0, 95.0))


@pytest.mark.parametrize("strength", [0.08, 0.24])
@pytest.mark.parametrize("angle", [0.0, 12.0])
def test_jaw_width_grows_by_the_requested_fraction_on_synthetic_faces(strength, angle):
    """|p4 - p12| on the output grows by strength x W (within 0.5 px), upright or rolled."""
    landmarks = synthetic_face(angle)
    width = face_frame(landmarks).width
    moved = measured_landmarks(landmarks, [4, 12], strength)
    growth = np.linalg.norm(moved[4] - moved[12]) - np.linalg.norm(landmarks[4] - landmarks[12])
    assert growth == pytest.approx(strength * width, abs=0.5)
    assert growth > 0.07 * width  # the measurement itself can see a widening


@pytest.mark.parametrize("angle", [0.0, 12.0])
def test_eyes_and_brows_stay_put_on_synthetic_faces(angle):
    """At the largest default strength, eye and brow landmarks move less than 0.5 px."""
    landmarks = synthetic_face(angle)
    moved = measured_landmarks(landmarks, EYES_AND_BROWS, 0.24)
    shifts = [np.linalg.norm(moved[index] - landmarks[index]) for index in EYES_AND_BROWS]
    assert max(shifts) < 0.5


def test_midline_and_outside_the_face_do_not_move():
    """Nose bridge, chin and points beyond 1.05 W from the midline keep their place exactly."""
    landmarks = synthetic_face(0.0)
    frame = face_frame(landmarks)
    far = frame.origin + np.array([[1.1 * frame.width, 40.0], [-1.1 * frame.width, 40.0]])
    still = np.vstack([landmarks[[27, 28, 8]], far, frame.origin + [0.0, -0.5 * frame.width]])
    assert np.abs(displacement(still, landmarks, 0.24)).max() < 1e-9


def test_strength_zero_reproduces_the_image_bit_for_bit():
    """Strength 0 is the same code path and returns the input unchanged (no resampling blur)."""
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    out = plant_adiposity(image, synthetic_face(7.0), 0.0)
    assert out.dtype == np.uint8 and np.array_equal(out, image)


def test_inverse_map_inverts_the_forward_map():
    """Every output pixel's source goes forward onto that pixel (the warp does not fold)."""
    landmarks = synthetic_face(12.0)
    map_x, map_y = inverse_map((SIZE, SIZE), landmarks, 0.24)
    sources = np.stack([map_x, map_y], axis=-1).reshape(-1, 2).astype(np.float64)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    grid = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    assert np.abs(warp_points(sources, landmarks, 0.24) - grid).max() < 1e-3


def test_rejects_strengths_that_could_fold():
    """A strength outside [0, 0.5] is refused rather than silently folding the face."""
    with pytest.raises(ValueError, match="strength"):
        plant_adiposity(np.zeros((SIZE, SIZE), np.float32), synthetic_face(), 0.7)


def test_real_face_jaw_widens_and_eyes_brows_stay(utkface_dir):
    """On a real UTKFace photo: jaw width +strength x W within 1 px; eyes and brows < 0.5 px."""
    image, _ = load_rgb(utkface_dir / "utk_00003.jpg")
    result = FacePreprocessor(dlib_model_path("landmarks")).process_array(image)
    assert result.status == "ok"
    landmarks = result.image_landmarks
    width = face_frame(landmarks).width
    moved = measured_landmarks(landmarks, [4, 12] + EYES_AND_BROWS, 0.16, image.shape[:2])
    growth = np.linalg.norm(moved[4] - moved[12]) - np.linalg.norm(landmarks[4] - landmarks[12])
    assert growth == pytest.approx(0.16 * width, abs=1.0)
    assert max(np.linalg.norm(moved[i] - landmarks[i]) for i in EYES_AND_BROWS) < 0.5
    # and the warped photo differs from the original only below the eyes
    warped = plant_adiposity(image, landmarks, 0.16)
    changed_rows = np.flatnonzero(np.abs(warped.astype(int) - image.astype(int)).max(axis=(1, 2)) > 0)
    assert changed_rows.min() > landmarks[36:48, 1].max()
