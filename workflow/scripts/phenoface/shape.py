"""Landmark shape of the cohort's faces: the chip landmarks, Procrustes superimposition, adiposity indices.

* :func:`cohort_images` and :func:`read_landmarks` find each cohort image's
  chip and read the 68 chip landmarks preprocessing wrote;
* :func:`generalized_procrustes` removes position, size and head roll
  (no reflection) so shapes can be compared;
* :func:`shape_indices` approximates three facial-adiposity indices after
  Coetzee et al. (2009, Perception 38:1700) on the 68 points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import landmarks as lm
from .errors import PhenofaceError
from .qc import OK, chip_column

INDEX_NAMES = ("fwhr", "cjwr", "par")


def cohort_images(
    cohort: pd.DataFrame,
    qc: pd.DataFrame,
    source: str = "chip",
    qc_name: str = "results/qc/preprocess.tsv",
) -> pd.DataFrame:
    """Join the cohort with the chip and landmark paths of its QC rows.

    Parameters
    ----------
    cohort : pandas.DataFrame
        From :func:`read_cohort`.
    qc : pandas.DataFrame
        The preprocessing QC table (``image_id, status, chip, masked_chip,
        landmarks``).
    source : {"chip", "masked"}
        Which chip is averaged (``faces.input``).
    qc_name : str
        Name of the QC table for messages.

    Returns
    -------
    pandas.DataFrame
        The cohort rows, in cohort order, plus ``chip_path`` and
        ``landmarks_path``.

    Raises
    ------
    PhenofaceError
        When a cohort image is absent from QC, not ``ok`` there, or has no
        chip/landmark path.
    """
    column = chip_column(source, "faces.input")
    missing = {"image_id", "status", column, "landmarks"} - set(qc.columns)
    if missing:
        raise PhenofaceError(f"{qc_name}: missing columns {sorted(missing)}; rerun preprocessing")
    qc = qc.astype({"image_id": str}).drop_duplicates("image_id", keep="last").set_index("image_id")
    absent = [image for image in cohort["image_id"] if image not in qc.index]
    if absent:
        raise PhenofaceError(
            f"{qc_name}: {len(absent)} cohort image(s) have no QC row (first: {absent[0]!r}); "
            "the cohort and the QC table come from different runs: rerun sample_matched_controls"
        )
    rows = qc.loc[cohort["image_id"].tolist()]
    not_ok = rows[rows["status"].astype(str) != OK]
    if len(not_ok):
        raise PhenofaceError(
            f"{qc_name}: cohort image {not_ok.index[0]!r} has status {not_ok.iloc[0]['status']!r}, not 'ok' "
            f"({len(not_ok)} such image(s)); only QC-passing images may enter the cohort: rerun "
            "sample_matched_controls"
        )
    out = cohort.reset_index(drop=True).copy()
    out["chip_path"] = rows[column].fillna("").astype(str).to_numpy()
    out["landmarks_path"] = rows["landmarks"].fillna("").astype(str).to_numpy()
    for path_column in ("chip_path", "landmarks_path"):
        empty = out[out[path_column].str.strip() == ""]
        if len(empty):
            raise PhenofaceError(
                f"{qc_name}: ok image {empty.iloc[0]['image_id']!r} has no {path_column.split('_')[0]} path; "
                "rerun preprocessing for its shard"
            )
    return out


def read_landmarks(paths: Sequence[str | Path], image_ids: Sequence[str]) -> np.ndarray:
    """Read the chip landmarks of each image from its JSON record.

    Parameters
    ----------
    paths : sequence of path-like
        JSON records written by preprocessing (key ``landmarks_chip``: 68
        ``(x, y)`` pairs in chip pixels, iBUG order, 0-based).
    image_ids : sequence of str
        The image of each record, for messages.

    Returns
    -------
    numpy.ndarray
        ``(n, 68, 2)`` float64.

    Raises
    ------
    PhenofaceError
        Naming the image and file when a record is missing, not JSON, lacks
        the key, or holds anything but 68 finite ``(x, y)`` pairs.
    """
    landmarks = np.zeros((len(paths), lm.N_LANDMARKS, 2), np.float64)
    for index, (path, image_id) in enumerate(zip(paths, image_ids, strict=True)):
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PhenofaceError(
                f"{path}: landmark record of image {image_id!r} is missing; rerun preprocessing for its shard"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PhenofaceError(
                f"{path}: landmark record of image {image_id!r} is unreadable ({error}); rerun preprocessing"
            ) from None
        points = record.get("landmarks_chip") if isinstance(record, dict) else None
        try:
            array = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            array = np.zeros(0)
        if array.shape != (lm.N_LANDMARKS, 2) or not np.isfinite(array).all():
            raise PhenofaceError(
                f"{path}: landmark record of image {image_id!r} has no valid 'landmarks_chip' "
                f"(68 finite (x, y) pairs expected, got shape {array.shape}); rerun preprocessing"
            )
        landmarks[index] = array
    return landmarks


def centroid_size(shapes: np.ndarray) -> np.ndarray:
    """Centroid size: root of the summed squared distances to the centroid.

    Parameters
    ----------
    shapes : numpy.ndarray
        ``(k, 2)`` one shape or ``(n, k, 2)`` several.

    Returns
    -------
    float or numpy.ndarray
        One size per shape.
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    centred = shapes - shapes.mean(axis=-2, keepdims=True)
    return np.sqrt((centred**2).sum(axis=(-2, -1)))


def _normalise(shape: np.ndarray) -> np.ndarray:
    """Centre a ``(k, 2)`` shape and scale it to unit centroid size."""
    centred = shape - shape.mean(axis=0)
    size = np.sqrt((centred**2).sum())
    if not size > 0:
        raise PhenofaceError("a landmark set has all its points at one place; it cannot be aligned")
    return centred / size


def rotate_onto(shape: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate a centred shape onto a centred reference (least squares, no reflection).

    Parameters
    ----------
    shape, reference : numpy.ndarray
        ``(k, 2)`` centred shapes.

    Returns
    -------
    numpy.ndarray
        ``shape @ R`` with ``R`` the proper rotation (det +1) minimising
        ``|shape @ R - reference|`` (Kabsch).
    """
    u, _, vt = np.linalg.svd(shape.T @ reference)
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] = -u[:, -1]
    return shape @ (u @ vt)


def _eye_line_upright(shape: np.ndarray) -> np.ndarray:
    """The rotation (2x2, row vectors) that makes the eye line of ``shape`` point along +x."""
    right_eye, left_eye = lm.eye_centres(shape)
    eye_vector = left_eye - right_eye
    angle = math.atan2(eye_vector[1], eye_vector[0])
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, -sin], [sin, cos]])


@dataclass
class ProcrustesResult:
    """Shapes after generalized Procrustes superimposition.

    Attributes
    ----------
    aligned : numpy.ndarray
        ``(n, 68, 2)`` shapes, centred, unit centroid size, rotated onto the
        mean. Orientation: the mean's eye line along +x, y pointing down
        as in the chips.
    mean_shape : numpy.ndarray
        ``(68, 2)`` Procrustes mean (unit centroid size).
    centroid_sizes : numpy.ndarray
        ``(n,)`` centroid size of each input shape in its own units.
    n_iterations : int
        Iterations until the mean changed by less than the tolerance.
    """

    aligned: np.ndarray
    mean_shape: np.ndarray
    centroid_sizes: np.ndarray
    n_iterations: int


def generalized_procrustes(shapes: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> ProcrustesResult:
    """Generalized Procrustes superimposition (translation, scale, rotation).

    Every shape is centred and scaled to unit centroid size, then rotated
    (never reflected) onto the current mean until the mean stops moving.
    Finally everything is turned so the mean's eye line (centre of points
    36-41 to centre of 42-47) points along +x: the result then does not
    depend on the orientation of any input shape, and ``dx``/``dy`` read as
    horizontal/vertical in the face.

    Parameters
    ----------
    shapes : numpy.ndarray
        ``(n, 68, 2)`` landmark sets (n >= 1).
    tol : float
        Convergence threshold on the change of the mean (sum of squares).
    max_iter : int
        Iteration limit.

    Returns
    -------
    ProcrustesResult
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[0] == 0:
        raise ValueError(f"expected (n, k, 2) shapes with n >= 1, got {shapes.shape}")
    sizes = centroid_size(shapes)
    normalised = np.stack([_normalise(shape) for shape in shapes])
    mean = normalised[0]
    aligned = normalised
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)  # noqa: B007 (the count is returned)  # noqa: B007 (the count is returned)
        aligned = np.stack([rotate_onto(shape, mean) for shape in normalised])
        new_mean = _normalise(aligned.mean(axis=0))
        new_mean = rotate_onto(new_mean, mean)
        change = float(((new_mean - mean) ** 2).sum())
        mean = new_mean
        if change < tol:
            break
    aligned = np.stack([rotate_onto(shape, mean) for shape in normalised])
    upright = _eye_line_upright(mean)
    return ProcrustesResult(aligned @ upright, mean @ upright, sizes, iterations)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).sum(axis=-1))


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """The closed face outline used by the perimeter-to-area ratio.

    Jaw points 0..16 (from the subject's right ear round the chin), then the
    brow points 26..17 back across the forehead line: ``(..., 27, 2)``.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate(
        [lm.points(landmarks, lm.JAW), lm.points(landmarks, lm.BROWS)[..., ::-1, :]], axis=-2
    )


def polygon_perimeter_area(polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Perimeter and (unsigned, shoelace) area of closed polygons ``(..., m, 2)``."""
    following = np.roll(polygon, -1, axis=-2)
    perimeter = _distance(polygon, following).sum(axis=-1)
    cross = polygon[..., 0] * following[..., 1] - following[..., 0] * polygon[..., 1]
    return perimeter, np.abs(cross.sum(axis=-1)) / 2.0


def shape_indices(landmarks: np.ndarray) -> pd.DataFrame:
    """Facial adiposity indices of each face, approximating Coetzee et al. (2009).

    Landmarks are iBUG 68-point, 0-based (``p0``..``p67``):

    * ``fwhr`` (width-to-height): bizygomatic width ``|p0 - p16|`` (the jaw
      line's top points, at the ears) over upper-face height, the distance
      from the brow midpoint (midpoint of the inner brow ends ``p21``,
      ``p22``) to the top of the upper lip ``p51``.
    * ``cjwr`` (cheek-to-jaw width): ``|p1 - p15|`` (cheek) over
      ``|p4 - p12|`` (jaw, at the mouth's height).
    * ``par`` (perimeter-to-area): perimeter over area of the polygon
      ``p0..p16`` then ``p26..p17`` (jaw round to the brows). It depends on
      scale, so it is computed on each shape scaled to unit centroid size
      (the Procrustes scale); rotation and position do not matter.

    Coetzee et al. used hand-placed points (zygion, gonion, nasion, upper
    lip); dlib's jaw points sit on the visible outline, so values are not
    interchangeable with theirs, only comparable within a study.

    Parameters
    ----------
    landmarks : numpy.ndarray
        ``(n, 68, 2)`` in any consistent units (chip pixels).

    Returns
    -------
    pandas.DataFrame
        Columns ``fwhr``, ``cjwr``, ``par``; one row per face.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (lm.N_LANDMARKS, 2):
        raise ValueError(f"expected (n, 68, 2) landmarks, got {points.shape}")
    brow_mid = (points[:, 21] + points[:, 22]) / 2.0
    fwhr = _distance(points[:, 0], points[:, 16]) / _distance(brow_mid, points[:, 51])
    cjwr = _distance(points[:, 1], points[:, 15]) / _distance(points[:, 4], points[:, 12])
    sizes = centroid_size(points)
    unit = (points - points.mean(axis=1, keepdims=True)) / sizes[:, None, None]
    perimeter, area = polygon_perimeter_area(face_outline(unit))
    return pd.DataFrame({"fwhr": fwhr, "cjwr": cjwr, "par": perimeter / area})
