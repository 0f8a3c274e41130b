"""Shape-normalised average faces: each chip warped to its group's mean shape, then averaged.

A pixel average of aligned chips (:func:`phenoface.average_faces.average_faces`)
blurs wherever faces differ in shape, so a group difference in shape (a wider
jaw) shows as a soft edge at best. Warping every chip piecewise-affinely onto
its group's mean landmark shape first puts each face's jaw, eyes and mouth on
the same pixels, so the average is sharp and has exactly the group's mean
shape (the classic "average face" construction). The triangulation covers
the whole chip: the 68 landmarks plus fixed anchors on the chip border. The
map is scikit-image's piecewise-affine one (tested equal to
``PiecewiseAffineTransform``), with the triangulation of each group's mean
shape computed once; scikit-image's ``warp`` resamples.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import Delaunay
from skimage.transform import warp

from .average_faces import AverageFaces
from .io import read_rgb_png

LOGGER = logging.getLogger(__name__)


def border_anchors(height: int, width: int, per_side: int = 3) -> np.ndarray:
    """Fixed points just outside the chip border (corners included), ``(k, 2)`` as ``(x, y)``.

    Half a pixel outside, so every pixel centre lies inside the triangulation.
    """
    xs = np.linspace(-0.5, width - 0.5, per_side + 1)
    ys = np.linspace(-0.5, height - 0.5, per_side + 1)
    points = [(x, -0.5) for x in xs] + [(x, height - 0.5) for x in xs]
    points += [(-0.5, y) for y in ys[1:-1]] + [(width - 0.5, y) for y in ys[1:-1]]
    return np.array(points, dtype=np.float64)


@dataclass(frozen=True)
class ShapeTarget:
    """A mean shape triangulated once, with every output pixel's triangle and barycentric weights.

    The piecewise-affine map from the target to any chip's landmarks is then
    one weighted sum per pixel, so a cell's chips share the costly part (the
    same map as ``skimage.transform.PiecewiseAffineTransform`` estimated on
    these points, which re-triangulates and loops over triangles per chip).
    """

    shape: tuple[int, int]
    anchors: np.ndarray
    vertices: np.ndarray
    weights: np.ndarray


def shape_target(target: np.ndarray, height: int, width: int) -> ShapeTarget:
    """Triangulate ``target`` ``(68, 2)`` plus border anchors and locate every pixel of a chip."""
    anchors = border_anchors(height, width)
    triangulation = Delaunay(np.vstack([np.asarray(target, np.float64), anchors]))
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
    simplex = triangulation.find_simplex(pixels)
    if (simplex < 0).any():
        raise ValueError("mean shape lies outside the chip: some pixels fall outside the triangulation")
    affine = triangulation.transform[simplex]
    partial = np.einsum("nij,nj->ni", affine[:, :2], pixels - affine[:, 2])
    weights = np.column_stack([partial, 1.0 - partial.sum(axis=1)])
    return ShapeTarget((height, width), anchors, triangulation.simplices[simplex], weights)


def warp_to_shape(chip: np.ndarray, landmarks: np.ndarray, target: ShapeTarget) -> np.ndarray:
    """``chip`` warped piecewise-affinely so its ``landmarks`` ``(68, 2)`` land on the target shape.

    Returns a float64 image in the chip's value range (0-255), same size
    (bilinear, edge pixels repeated).
    """
    points = np.vstack([np.asarray(landmarks, np.float64), target.anchors])
    source = np.einsum("ni,nij->nj", target.weights, points[target.vertices])
    height, width = target.shape
    coordinates = np.stack([source[:, 1].reshape(height, width), source[:, 0].reshape(height, width)])
    image = chip.astype(np.float64) / 255.0
    channels = [warp(image[..., c], coordinates, mode="edge", order=1) for c in range(image.shape[2])]
    return np.stack(channels, axis=-1) * 255.0


def shape_normalised_averages(
    images: pd.DataFrame, landmarks: np.ndarray, faces: AverageFaces, progress_every: int = 2000
) -> np.ndarray:
    """Average per (group, sex) cell of ``faces`` of the chips warped to that cell's mean shape.

    Parameters
    ----------
    images : pandas.DataFrame
        Rows with ``group``, ``sex``, ``chip_path`` (as for
        :func:`phenoface.average_faces.average_faces`).
    landmarks : numpy.ndarray
        ``(n, 68, 2)`` chip landmarks, same rows.
    faces : AverageFaces
        The pixel averages; their cells and mean landmarks are the targets.

    Returns
    -------
    numpy.ndarray
        ``(k, h, w, 3)`` float64 (0-255), in the order of ``faces``' cells.
    """
    images = images.reset_index(drop=True)
    sums = np.zeros(faces.mean_chip.shape, np.float64)
    counts = np.zeros(len(faces.n), np.int64)
    height, width = faces.mean_chip.shape[1:3]
    targets = [shape_target(mean, height, width) for mean in faces.mean_landmarks]
    started = time.perf_counter()
    for index, row in images.iterrows():
        cell = faces.cell(row["group"], row["sex"])
        if cell is None:
            continue
        sums[cell] += warp_to_shape(read_rgb_png(row["chip_path"]), landmarks[index], targets[cell])
        counts[cell] += 1
        done = index + 1
        if done % progress_every == 0 or done == len(images):
            rate = done / max(time.perf_counter() - started, 1e-9)
            LOGGER.info("shape-normalised %d/%d chips (%.0f/s)", done, len(images), rate)
    return sums / np.maximum(counts, 1)[:, None, None, None]
