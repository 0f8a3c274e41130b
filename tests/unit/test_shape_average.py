"""Shape-normalised average faces: the piecewise-affine warp onto a group's mean shape."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from skimage.transform import PiecewiseAffineTransform, warp
from test_shape import similarity, template_face

from phenoface import average_faces, io
from phenoface.shape_average import shape_normalised_averages, shape_target, warp_to_shape

SIZE = 150


def spot_chip(points: np.ndarray) -> np.ndarray:
    """A grey chip with a bright Gaussian spot at each point (uint8 RGB)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    image = np.zeros((SIZE, SIZE))
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2))
    grey = np.clip(40 + 200 * image, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def spot_centre(image: np.ndarray, near: np.ndarray, radius: int = 4) -> np.ndarray:
    """Intensity centroid of the spot around ``near`` (above the grey background)."""
    x0, y0 = np.round(near).astype(int)
    window = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1, 0] - 40.0
    window = np.clip(window, 0, None)
    ys, xs = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    return np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()


def test_landmarks_land_on_the_target_shape():
    """A chip's jaw and eye landmarks, warped, sit on the target's (within 0.3 px)."""
    target = template_face()
    landmarks = similarity(target - 75, math.radians(4), 0.95, (77, 76))
    landmarks[0:17, 0] = 75 + 1.1 * (landmarks[0:17, 0] - 75)  # a wider jaw than the target
    chosen = [4, 8, 12, 36, 45]
    warped = warp_to_shape(spot_chip(landmarks[chosen]), landmarks, shape_target(target, SIZE, SIZE))
    for index in chosen:
        assert np.linalg.norm(spot_centre(warped, target[index]) - target[index]) < 0.3


def test_matches_scikit_image_piecewise_affine():
    """The shared-triangulation map equals skimage's PiecewiseAffineTransform on the same points."""
    target = template_face()
    landmarks = target + np.random.default_rng(0).normal(0, 1.5, target.shape)
    chip = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    prepared = shape_target(target, SIZE, SIZE)
    ours = warp_to_shape(chip, landmarks, prepared)
    reference = PiecewiseAffineTransform.from_estimate(
        np.vstack([target, prepared.anchors]), np.vstack([landmarks, prepared.anchors])
    )
    theirs = warp(chip / 255.0, reference, output_shape=(SIZE, SIZE), mode="edge", order=1) * 255.0
    assert np.abs(ours - theirs).max() < 1e-6


def test_shape_normalised_average_is_sharp_where_the_pixel_average_blurs(tmp_path):
    """Spots at differently placed jaw points average to one sharp spot after normalisation."""
    base = template_face()
    rows, shapes = [], []
    for index, shift in enumerate([-4.0, -2.0, 2.0, 4.0]):
        shape = base.copy()
        shape[0:17, 0] = 75 + (1 + shift / 50) * (shape[0:17, 0] - 75)
        path = tmp_path / f"chip{index}.png"
        io.write_png(path, spot_chip(shape[[4]]))
        rows.append({"image_id": f"f{index}", "group": "case", "sex": "F", "chip_path": str(path)})
        shapes.append(shape)
    images, landmarks = pd.DataFrame(rows), np.stack(shapes)
    faces = average_faces.average_faces(images, landmarks)
    normalised = shape_normalised_averages(images, landmarks, faces)
    centre = np.round(faces.mean_landmarks[0, 4]).astype(int)
    peak_pixel = faces.mean_chip[0, centre[1], centre[0], 0]
    peak_normalised = normalised[0, centre[1], centre[0], 0]
    assert peak_normalised > peak_pixel + 50  # the pixel average smears the spot over ~8 px
    assert normalised.shape == faces.mean_chip.shape
