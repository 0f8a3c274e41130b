"""Average faces and landmark morphometry of cases versus matched controls.

The paper (Liang et al. 2020, Figure 3) shows average cancer and non-cancer
faces with their landmarks and reads "more facial adiposity" into them by
eye. This module puts numbers on that comparison:

* the 68 dlib/iBUG landmarks of every cohort chip, read from the JSON
  records preprocessing wrote (:func:`read_landmarks`);
* generalized Procrustes superimposition (translation, scale, rotation; no
  reflection) so shape is compared without position, size or head roll
  (:func:`generalized_procrustes`);
* per landmark, the shift of the case mean from the control mean with a
  permutation p-value (labels permuted *within* matching strata, so the
  matching is respected) and Benjamini-Hochberg q-values
  (:func:`landmark_shift_test`, :func:`bh_qvalues`);
* three indices of facial adiposity after Coetzee et al. (2009, Perception
  38:1700), approximated on the 68 points (:func:`shape_indices`), each
  tested with a Welch CI, Cohen's d, a within-strata permutation p-value and
  an age/sex-adjusted OLS difference (:func:`index_group_test`);
* streaming average chips and mean chip landmarks per (group, sex)
  (:func:`average_faces`).

All of it describes associations in this cohort; none of it says why faces
differ. Randomness comes only from a :class:`numpy.random.Generator` passed in.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .errors import PhenofaceError
from .io import read_rgb_png
from .stats import bh_qvalues

LOGGER = logging.getLogger(__name__)

N_LANDMARKS = 68
GROUPS = ("case", "control")
#: Sex order of figures and tables (the paper: male row on top).
SEXES = ("M", "F")
#: Subsets every test is run on: all faces, then each sex.
SUBSETS = ("all",) + SEXES
#: QC column holding the chip averaged, per ``faces.input``.
CHIP_COLUMNS = {"chip": "chip", "masked": "masked_chip"}
COHORT_COLUMNS = ["image_id", "group", "age", "sex", "stratum"]
INDEX_NAMES = ("fwhr", "cjwr", "par")

#: iBUG 68-point regions; left/right are the subject's (imutils convention),
#: so ``brow_right`` (17-21) is on the image's left.
REGIONS: dict[str, range] = {
    "jaw": range(0, 17),
    "brow_right": range(17, 22),
    "brow_left": range(22, 27),
    "nose": range(27, 36),
    "eye_right": range(36, 42),
    "eye_left": range(42, 48),
    "mouth_outer": range(48, 60),
    "mouth_inner": range(60, 68),
}
#: Region name of each landmark index.
LANDMARK_REGIONS: list[str] = [name for name, indices in REGIONS.items() for _ in indices]

LANDMARK_TEST_COLUMNS = [
    "subset", "landmark", "region", "dx", "dy", "shift", "shift_px", "p_value", "q_value",
    "n_case", "n_control", "note",
]  # fmt: skip
SHAPE_TEST_COLUMNS = [
    "subset", "index", "n_case", "n_control", "mean_case", "mean_control", "diff", "ci_low", "ci_high",
    "cohens_d", "p_perm", "adj_diff", "adj_se", "adj_p", "adj_covariates", "note",
]  # fmt: skip


# --------------------------------------------------------------------------- inputs


def read_cohort(path: str | Path) -> pd.DataFrame:
    """Read ``cohort.csv`` and check its columns and values.

    Parameters
    ----------
    path : path-like
        The cohort table (``image_id, group, age, sex, subject_id, stratum``).

    Returns
    -------
    pandas.DataFrame
        The table with text ids/labels and integer ages.

    Raises
    ------
    PhenofaceError
        When a column is missing, a group is not case/control, a sex is not
        M/F/empty or an age is not a number; the message names the first bad row.
    """
    table = pd.read_csv(
        path,
        dtype={"image_id": str, "group": str, "sex": str, "stratum": str, "subject_id": str},
        keep_default_na=False,
    )
    missing = set(COHORT_COLUMNS) - set(table.columns)
    if missing:
        raise PhenofaceError(f"{path}: missing columns {sorted(missing)}; rerun sample_matched_controls")
    # An empty sex is a control of unknown sex (an age-only bin of a pool without sex, README):
    # it enters the "all" analyses and no per-sex cell.
    for column, allowed in (("group", GROUPS), ("sex", SEXES + ("",))):
        bad = table[~table[column].isin(allowed)]
        if len(bad):
            raise PhenofaceError(
                f"{path}: row of image {bad.iloc[0]['image_id']!r} has {column} {bad.iloc[0][column]!r}; "
                f"expected one of {list(allowed)}"
            )
    ages = pd.to_numeric(table["age"], errors="coerce")
    if ages.isna().any():
        first = table.loc[ages.isna(), "image_id"].iloc[0]
        raise PhenofaceError(f"{path}: image {first!r} has no numeric age; fix the sample sheet")
    duplicated = table["image_id"][table["image_id"].duplicated()]
    if len(duplicated):
        raise PhenofaceError(f"{path}: image {duplicated.iloc[0]!r} appears twice in the cohort")
    table["age"] = ages.astype(int)
    return table


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
    column = CHIP_COLUMNS.get(source)
    if column is None:
        raise PhenofaceError(f"faces.input is {source!r}; use one of {sorted(CHIP_COLUMNS)}")
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
    not_ok = rows[rows["status"].astype(str) != "ok"]
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
    landmarks = np.zeros((len(paths), N_LANDMARKS, 2), np.float64)
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
        if array.shape != (N_LANDMARKS, 2) or not np.isfinite(array).all():
            raise PhenofaceError(
                f"{path}: landmark record of image {image_id!r} has no valid 'landmarks_chip' "
                f"(68 finite (x, y) pairs expected, got shape {array.shape}); rerun preprocessing"
            )
        landmarks[index] = array
    return landmarks


# --------------------------------------------------------------------------- Procrustes


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
    eye_vector = shape[42:48].mean(axis=0) - shape[36:42].mean(axis=0)
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
    for iterations in range(1, max_iter + 1):
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


# --------------------------------------------------------------------------- shape indices


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).sum(axis=-1))


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """The closed face outline used by the perimeter-to-area ratio.

    Jaw points 0..16 (from the subject's right ear round the chin), then the
    brow points 26..17 back across the forehead line: ``(..., 27, 2)``.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([landmarks[..., 0:17, :], landmarks[..., 26:16:-1, :]], axis=-2)


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
    if points.ndim != 3 or points.shape[1:] != (N_LANDMARKS, 2):
        raise ValueError(f"expected (n, 68, 2) landmarks, got {points.shape}")
    brow_mid = (points[:, 21] + points[:, 22]) / 2.0
    fwhr = _distance(points[:, 0], points[:, 16]) / _distance(brow_mid, points[:, 51])
    cjwr = _distance(points[:, 1], points[:, 15]) / _distance(points[:, 4], points[:, 12])
    sizes = centroid_size(points)
    unit = (points - points.mean(axis=1, keepdims=True)) / sizes[:, None, None]
    perimeter, area = polygon_perimeter_area(face_outline(unit))
    return pd.DataFrame({"fwhr": fwhr, "cjwr": cjwr, "par": perimeter / area})


# --------------------------------------------------------------------------- tests


def permute_within_strata(
    labels: np.ndarray, strata: Sequence, rng: np.random.Generator, n_permutations: int
) -> np.ndarray:
    """Shuffle labels among the members of each stratum, many times at once.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n,)`` labels (e.g. True for a case).
    strata : sequence
        ``(n,)`` stratum of each row.
    rng : numpy.random.Generator
        The only source of randomness.
    n_permutations : int
        Number of permuted label vectors.

    Returns
    -------
    numpy.ndarray
        ``(n_permutations, n)``; every row holds, in each stratum, exactly
        the labels that stratum held.
    """
    labels = np.asarray(labels)
    codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1].astype(np.float64)
    n = labels.shape[0]
    sorted_labels = labels[np.argsort(codes, kind="stable")]
    # Sorting by stratum code + U[0, 1) orders every stratum's members as one
    # contiguous block (same blocks as the stable sort) in random order.
    order = np.argsort(codes[None, :] + rng.random((n_permutations, n)), axis=1)
    out = np.empty((n_permutations, n), dtype=labels.dtype)
    out[np.arange(n_permutations)[:, None], order] = sorted_labels[None, :]
    return out


def _permutation_p(exceed: np.ndarray, n_permutations: int) -> np.ndarray:
    """``(1 + #{perm >= observed}) / (1 + P)`` (never 0)."""
    return (1.0 + exceed) / (1.0 + n_permutations)


def _contrast_weights(is_case: np.ndarray) -> np.ndarray:
    """Row weights (``1/n_case`` cases, ``-1/n_control`` controls): their dot product is a mean difference."""
    is_case = np.asarray(is_case, dtype=bool)
    n_case, n_control = int(is_case.sum()), int((~is_case).sum())
    return np.where(is_case, 1.0 / n_case, -1.0 / n_control)


def permuted_contrasts(
    data: np.ndarray,
    is_case: np.ndarray,
    strata: Sequence,
    rng: np.random.Generator,
    n_permutations: int,
    chunk: int = 100,
):
    """Yield case-minus-control mean differences of ``data`` under within-strata permutations.

    Parameters
    ----------
    data : numpy.ndarray
        ``(n,)`` or ``(n, m)`` values per face.
    is_case : numpy.ndarray
        ``(n,)`` bool.
    strata, rng, n_permutations
        See :func:`permute_within_strata`.
    chunk : int
        Permutations per block (memory ~ ``chunk x n``).

    Yields
    ------
    numpy.ndarray
        ``(size,)`` or ``(size, m)`` blocks, ``n_permutations`` rows in all.
    """
    weights = _contrast_weights(is_case)
    done = 0
    while done < n_permutations:
        size = min(chunk, n_permutations - done)
        yield permute_within_strata(weights, strata, rng, size) @ data
        done += size


@dataclass
class LandmarkTest:
    """Case-minus-control mean shift of each landmark after Procrustes.

    Attributes
    ----------
    case_mean, control_mean : numpy.ndarray
        ``(68, 2)`` group means of the aligned shapes (unit centroid size).
    shift : numpy.ndarray
        ``(68, 2)`` ``case_mean - control_mean``.
    p_values, q_values : numpy.ndarray
        ``(68,)`` permutation p-values of the squared shift and their BH q-values.
    distance : float
        Root of the summed squared shifts (Procrustes distance between means).
    distance_p : float
        Permutation p-value of ``distance`` (one global test of shape).
    n_case, n_control, n_permutations : int
    """

    case_mean: np.ndarray
    control_mean: np.ndarray
    shift: np.ndarray
    p_values: np.ndarray
    q_values: np.ndarray
    distance: float
    distance_p: float
    n_case: int
    n_control: int
    n_permutations: int


def landmark_shift_test(
    aligned: np.ndarray,
    is_case: np.ndarray,
    strata: Sequence,
    rng: np.random.Generator,
    n_permutations: int,
    chunk: int = 100,
) -> LandmarkTest:
    """Test each landmark's case-control mean shift by permutation within strata.

    The statistic of landmark ``j`` is ``|mean_case_j - mean_control_j|^2``
    on the aligned shapes. Group labels are permuted within strata
    (:func:`permute_within_strata`), which keeps each stratum's case and
    control counts: the null distribution respects the matching. Superimposition
    ignores the labels, so it is done once, before permuting.

    Parameters
    ----------
    aligned : numpy.ndarray
        ``(n, 68, 2)`` Procrustes-aligned shapes.
    is_case : numpy.ndarray
        ``(n,)`` bool.
    strata : sequence
        ``(n,)`` matching stratum of each face.
    rng : numpy.random.Generator
    n_permutations : int
    chunk : int
        Permutations evaluated per matrix product (memory ~ chunk x n).

    Returns
    -------
    LandmarkTest
    """
    is_case = np.asarray(is_case, dtype=bool)
    if is_case.sum() < 1 or (~is_case).sum() < 1:
        raise ValueError("landmark_shift_test needs at least one case and one control")
    n = aligned.shape[0]
    flat = np.asarray(aligned, dtype=np.float64).reshape(n, -1)
    weights = _contrast_weights(is_case)
    difference = weights @ flat
    observed = (difference.reshape(-1, 2) ** 2).sum(axis=1)
    observed_total = observed.sum()
    # Relative tolerance so floating-point noise does not break ties.
    margin = 1.0 - 1e-9
    exceed = np.zeros_like(observed)
    exceed_total = 0
    for block in permuted_contrasts(flat, is_case, strata, rng, n_permutations, chunk):
        stats = (block.reshape(block.shape[0], -1, 2) ** 2).sum(axis=2)
        exceed += (stats >= observed * margin).sum(axis=0)
        exceed_total += int((stats.sum(axis=1) >= observed_total * margin).sum())
    p_values = _permutation_p(exceed, n_permutations)
    case_mean = flat[is_case].mean(axis=0).reshape(-1, 2)
    control_mean = flat[~is_case].mean(axis=0).reshape(-1, 2)
    return LandmarkTest(
        case_mean=case_mean,
        control_mean=control_mean,
        shift=case_mean - control_mean,
        p_values=p_values,
        q_values=bh_qvalues(p_values),
        distance=float(math.sqrt(observed_total)),
        distance_p=float(_permutation_p(exceed_total, n_permutations)),
        n_case=int(is_case.sum()),
        n_control=int((~is_case).sum()),
        n_permutations=int(n_permutations),
    )


@dataclass
class OlsEffect:
    """One OLS coefficient with its standard error and t-test.

    Attributes
    ----------
    coef, se, t, p : float
        NaN when the design is rank deficient or has no residual degrees of freedom.
    df : int
        Residual degrees of freedom.
    covariates : str
        Terms next to the effect, e.g. ``"age+sex"``.
    note : str
        Why the effect is NaN, else empty.
    """

    coef: float
    se: float
    t: float
    p: float
    df: int
    covariates: str
    note: str = ""


def ols_effect(y: np.ndarray, effect: np.ndarray, covariates: dict[str, np.ndarray]) -> OlsEffect:
    """OLS of ``y`` on an intercept, ``effect`` and covariates; the effect's coefficient.

    Parameters
    ----------
    y : numpy.ndarray
        ``(n,)`` outcome.
    effect : numpy.ndarray
        ``(n,)`` regressor of interest (1 = case, 0 = control).
    covariates : dict of str to numpy.ndarray
        Adjustment regressors, in order.

    Returns
    -------
    OlsEffect
        Coefficient, classical SE ``sqrt(s^2 (X'X)^-1)``, t and two-sided p
        from Student's t with ``n - p`` degrees of freedom.
    """
    y = np.asarray(y, dtype=np.float64)
    columns = [np.ones_like(y), np.asarray(effect, dtype=np.float64)]
    columns += [np.asarray(value, dtype=np.float64) for value in covariates.values()]
    design = np.column_stack(columns)
    n, k = design.shape
    label = "+".join(covariates) or "none"
    df = n - k
    if df <= 0:
        return OlsEffect(math.nan, math.nan, math.nan, math.nan, df, label, f"{n} faces for {k} coefficients")
    if np.linalg.matrix_rank(design) < k:
        return OlsEffect(math.nan, math.nan, math.nan, math.nan, df, label, "design is rank deficient")
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ beta
    sigma2 = float(residual @ residual) / df
    covariance = sigma2 * np.linalg.inv(design.T @ design)
    se = float(math.sqrt(covariance[1, 1]))
    coef = float(beta[1])
    if not se > 0:
        return OlsEffect(coef, se, math.nan, math.nan, df, label, "residuals are all zero (perfect fit)")
    t_value = coef / se
    return OlsEffect(coef, se, t_value, float(2.0 * scipy_stats.t.sf(abs(t_value), df)), df, label)


def index_group_test(
    values: np.ndarray,
    is_case: np.ndarray,
    strata: Sequence,
    age: np.ndarray,
    sex: Sequence[str],
    rng: np.random.Generator,
    n_permutations: int,
    confidence: float = 0.95,
) -> dict[str, float | int | str]:
    """Compare one shape index between cases and controls.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n,)`` index per face.
    is_case : numpy.ndarray
        ``(n,)`` bool; at least two cases and two controls.
    strata : sequence
        Matching stratum per face (permutations stay within strata).
    age : numpy.ndarray
        Age in years.
    sex : sequence of str
        ``M``/``F`` (or empty: unknown); entered in the adjusted model only
        when both occur, an unknown sex as its own indicator.
    rng : numpy.random.Generator
    n_permutations : int
    confidence : float
        Level of the Welch interval.

    Returns
    -------
    dict
        ``mean_case, mean_control, diff`` (case minus control), Welch
        ``ci_low, ci_high``, ``cohens_d`` (pooled SD), ``p_perm`` (two-sided,
        ``|diff|``, within strata), ``adj_diff, adj_se, adj_p,
        adj_covariates`` (OLS on group + age [+ sex]).
    """
    values = np.asarray(values, dtype=np.float64)
    is_case = np.asarray(is_case, dtype=bool)
    cases, controls = values[is_case], values[~is_case]
    n1, n0 = cases.size, controls.size
    if n1 < 2 or n0 < 2:
        raise ValueError("index_group_test needs at least two cases and two controls")
    diff = float(cases.mean() - controls.mean())
    var1, var0 = cases.var(ddof=1), controls.var(ddof=1)
    se = math.sqrt(var1 / n1 + var0 / n0)
    if se > 0:
        df = (var1 / n1 + var0 / n0) ** 2 / ((var1 / n1) ** 2 / (n1 - 1) + (var0 / n0) ** 2 / (n0 - 1))
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    else:
        half = 0.0
    pooled = math.sqrt(((n1 - 1) * var1 + (n0 - 1) * var0) / (n1 + n0 - 2))
    exceed = sum(
        int((np.abs(block) >= abs(diff) * (1.0 - 1e-9)).sum())
        for block in permuted_contrasts(values, is_case, strata, rng, n_permutations)
    )
    sex = np.asarray(sex, dtype=str)
    covariates = {"age": np.asarray(age, dtype=np.float64)}
    levels = set(np.unique(sex))
    if set(SEXES) <= levels:
        covariates["sex"] = (sex == "M").astype(np.float64)
    if "" in levels and len(levels) > 1:
        covariates["sex_unknown"] = (sex == "").astype(np.float64)
    adjusted = ols_effect(values, is_case.astype(np.float64), covariates)
    return {
        "n_case": n1,
        "n_control": n0,
        "mean_case": float(cases.mean()),
        "mean_control": float(controls.mean()),
        "diff": diff,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "cohens_d": diff / pooled if pooled > 0 else math.nan,
        "p_perm": float(_permutation_p(exceed, n_permutations)),
        "adj_diff": adjusted.coef,
        "adj_se": adjusted.se,
        "adj_p": adjusted.p,
        "adj_covariates": adjusted.covariates,
        "note": adjusted.note,
    }


# --------------------------------------------------------------------------- the comparison


def subset_mask(table: pd.DataFrame, subset: str) -> np.ndarray:
    """Rows of ``table`` in a subset: ``all`` or one sex (``M``/``F``)."""
    if subset == "all":
        return np.ones(len(table), dtype=bool)
    return (table["sex"] == subset).to_numpy()


def subset_skip_reason(n_case: int, n_control: int, minimum: int = 2) -> str:
    """Why a subset is not tested (empty string when it is)."""
    if n_case >= minimum and n_control >= minimum:
        return ""
    return f"not tested: {n_case} case(s) and {n_control} control(s); at least {minimum} of each needed"


@dataclass
class Comparison:
    """Everything ``compare_landmarks`` writes.

    Attributes
    ----------
    landmark_tests, shape_indices, shape_tests : pandas.DataFrame
        The three tables (see the columns constants of this module).
    tests : dict of str to LandmarkTest
        The landmark test of each tested subset (for figures).
    summary : dict
        Headline numbers for ``morphometry.json``.
    warnings : list of str
    """

    landmark_tests: pd.DataFrame
    shape_indices: pd.DataFrame
    shape_tests: pd.DataFrame
    tests: dict[str, LandmarkTest]
    summary: dict
    warnings: list[str] = field(default_factory=list)


def _landmark_rows(subset: str, test: LandmarkTest, mean_size: float) -> pd.DataFrame:
    shift_norm = np.sqrt((test.shift**2).sum(axis=1))
    return pd.DataFrame(
        {
            "subset": subset,
            "landmark": np.arange(N_LANDMARKS),
            "region": LANDMARK_REGIONS,
            "dx": test.shift[:, 0],
            "dy": test.shift[:, 1],
            "shift": shift_norm,
            "shift_px": shift_norm * mean_size,
            "p_value": test.p_values,
            "q_value": test.q_values,
            "n_case": test.n_case,
            "n_control": test.n_control,
            "note": "",
        }
    )


def compare_groups(
    images: pd.DataFrame,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    n_permutations: int,
    fdr: float = 0.05,
    confidence: float = 0.95,
) -> Comparison:
    """Landmark and shape-index tests of cases vs controls, for all faces and each sex.

    Parameters
    ----------
    images : pandas.DataFrame
        Cohort rows (``image_id, group, age, sex, stratum``), aligned with
        ``landmarks``.
    landmarks : numpy.ndarray
        ``(n, 68, 2)`` chip landmarks.
    rng : numpy.random.Generator
    n_permutations : int
    fdr : float
        q-value below which a landmark counts as shifted (summary, warnings).
    confidence : float
        Level of the shape-index intervals.

    Returns
    -------
    Comparison
        A subset with fewer than two cases or controls gets one row in each
        test table saying so, and a warning.
    """
    images = images.reset_index(drop=True)
    if len(images) != landmarks.shape[0]:
        raise ValueError("images and landmarks must have the same rows")
    indices = shape_indices(landmarks)
    index_table = pd.concat([images[["image_id", "group", "sex", "age"]], indices], axis=1)
    landmark_parts, shape_rows, tests, warnings = [], [], {}, []
    summary: dict = {"subsets": {}}
    for subset in SUBSETS:
        mask = subset_mask(images, subset)
        part = images[mask]
        is_case = (part["group"] == "case").to_numpy()
        n_case, n_control = int(is_case.sum()), int((~is_case).sum())
        reason = subset_skip_reason(n_case, n_control)
        if reason:
            landmark_parts.append(
                pd.DataFrame([{"subset": subset, "n_case": n_case, "n_control": n_control, "note": reason}])
            )
            for name in INDEX_NAMES:
                shape_rows.append(
                    {
                        "subset": subset,
                        "index": name,
                        "n_case": n_case,
                        "n_control": n_control,
                        "note": reason,
                    }
                )
            warnings.append(f"subset {subset}: {reason}")
            summary["subsets"][subset] = {
                "n_case": n_case,
                "n_control": n_control,
                "tested": False,
                "note": reason,
            }
            continue
        strata = part["stratum"].astype(str).to_numpy()
        procrustes = generalized_procrustes(landmarks[mask])
        test = landmark_shift_test(procrustes.aligned, is_case, strata, rng, n_permutations)
        tests[subset] = test
        landmark_parts.append(_landmark_rows(subset, test, float(procrustes.centroid_sizes.mean())))
        significant = np.flatnonzero(test.q_values < fdr)
        for name in INDEX_NAMES:
            result = index_group_test(
                indices.loc[mask, name].to_numpy(),
                is_case,
                strata,
                part["age"].to_numpy(),
                part["sex"].to_numpy(),
                rng,
                n_permutations,
                confidence,
            )
            shape_rows.append({"subset": subset, "index": name, **result})
        summary["subsets"][subset] = {
            "n_case": n_case,
            "n_control": n_control,
            "tested": True,
            "procrustes_distance": test.distance,
            "procrustes_distance_p": test.distance_p,
            "n_landmarks_q_below_fdr": int(significant.size),
            "landmarks_q_below_fdr": significant.tolist(),
            "mean_centroid_size_px": float(procrustes.centroid_sizes.mean()),
        }
        if significant.size == 0:
            warnings.append(
                f"subset {subset}: no landmark shift survives FDR {fdr} "
                f"(smallest q {np.nanmin(test.q_values):.3g})"
            )
        LOGGER.info(
            "%s: %d cases, %d controls; Procrustes distance %.4g (p %.3g); %d landmark(s) q < %g",
            subset, n_case, n_control, test.distance, test.distance_p, significant.size, fdr,
        )  # fmt: skip
    landmark_tests = pd.concat(landmark_parts, ignore_index=True).reindex(columns=LANDMARK_TEST_COLUMNS)
    landmark_tests["landmark"] = landmark_tests["landmark"].astype("Int64")
    landmark_tests["note"] = landmark_tests["note"].fillna("")
    landmark_tests["region"] = landmark_tests["region"].fillna("")
    shape_tests = pd.DataFrame(shape_rows).reindex(columns=SHAPE_TEST_COLUMNS)
    shape_tests[["note", "adj_covariates"]] = shape_tests[["note", "adj_covariates"]].fillna("")
    summary["shape_indices"] = {
        f"{row['subset']}:{row['index']}": {
            key: row[key] for key in ("diff", "ci_low", "ci_high", "cohens_d", "p_perm", "adj_diff", "adj_p")
        }
        for row in shape_tests.to_dict("records")
        if not row["note"].startswith("not tested")
    }
    summary["fdr"] = fdr
    return Comparison(landmark_tests, index_table, shape_tests, tests, summary, warnings)


def group_counts(images: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Faces per group and sex: ``{"case": {"M": 3, "F": 4, "all": 7}, ...}``."""
    counts = {}
    for group in GROUPS:
        part = images[images["group"] == group]
        counts[group] = {sex: int((part["sex"] == sex).sum()) for sex in SEXES}
        counts[group]["all"] = int(len(part))
    return counts


# --------------------------------------------------------------------------- average faces


@dataclass
class AverageFaces:
    """Average chip and mean chip landmarks per (group, sex).

    Attributes
    ----------
    group, sex : numpy.ndarray
        ``(k,)`` str; case before control, M before F, present cells only.
    n : numpy.ndarray
        ``(k,)`` faces averaged.
    mean_chip : numpy.ndarray
        ``(k, h, w, 3)`` float64 pixel means (0-255).
    mean_landmarks : numpy.ndarray
        ``(k, 68, 2)`` mean landmarks in chip pixels.
    """

    group: np.ndarray
    sex: np.ndarray
    n: np.ndarray
    mean_chip: np.ndarray
    mean_landmarks: np.ndarray

    def cell(self, group: str, sex: str) -> int | None:
        """Row index of a (group, sex) cell, None when absent."""
        hits = np.flatnonzero((self.group == group) & (self.sex == sex))
        return int(hits[0]) if hits.size else None

    def mean_chip_uint8(self) -> np.ndarray:
        """The average chips rounded to uint8."""
        return np.clip(np.rint(self.mean_chip), 0, 255).astype(np.uint8)


def average_faces(images: pd.DataFrame, landmarks: np.ndarray, progress_every: int = 2000) -> AverageFaces:
    """Stream every chip once into a float64 sum per (group, sex).

    Memory does not grow with the cohort: one chip is held at a time.

    Parameters
    ----------
    images : pandas.DataFrame
        From :func:`cohort_images` (``group``, ``sex``, ``chip_path``).
    landmarks : numpy.ndarray
        ``(n, 68, 2)`` chip landmarks, same rows.
    progress_every : int
        Log progress every this many chips.

    Returns
    -------
    AverageFaces

    Raises
    ------
    PhenofaceError
        When a chip is unreadable or its size differs from the first chip's.
    """
    images = images.reset_index(drop=True)
    keys = list(zip(images["group"], images["sex"]))
    sums: dict[tuple[str, str], np.ndarray] = {}
    counts: dict[tuple[str, str], int] = {}
    shape = None
    started = time.perf_counter()
    for index, (key, path) in enumerate(zip(keys, images["chip_path"])):
        chip = read_rgb_png(path)
        if shape is None:
            shape = chip.shape
        elif chip.shape != shape:
            raise PhenofaceError(
                f"{path}: chip of image {images.loc[index, 'image_id']!r} is {chip.shape}, "
                f"others are {shape}; "
                "all chips must come from one preprocessing run"
            )
        if key not in sums:
            sums[key] = np.zeros(shape, np.float64)
            counts[key] = 0
        sums[key] += chip
        counts[key] += 1
        done = index + 1
        if done % progress_every == 0 or done == len(keys):
            rate = done / max(time.perf_counter() - started, 1e-9)
            LOGGER.info(
                "averaged %d/%d chips (%.0f/s, ETA %.0f s)", done, len(keys), rate, (len(keys) - done) / rate
            )
    cells = [(g, s) for g in GROUPS for s in SEXES if (g, s) in sums]
    landmark_means = []
    key_array = np.array(["|".join(key) for key in keys], dtype=str)
    for group, sex in cells:
        landmark_means.append(landmarks[key_array == f"{group}|{sex}"].mean(axis=0))
    height, width = shape[:2] if shape else (0, 0)
    return AverageFaces(
        group=np.array([g for g, _ in cells], dtype=str),
        sex=np.array([s for _, s in cells], dtype=str),
        n=np.array([counts[cell] for cell in cells], dtype=np.int64),
        mean_chip=(
            np.stack([sums[cell] / counts[cell] for cell in cells])
            if cells
            else np.zeros((0, height, width, 3))
        ),
        mean_landmarks=np.stack(landmark_means) if cells else np.zeros((0, N_LANDMARKS, 2)),
    )


def landmarks_mean_table(faces: AverageFaces) -> pd.DataFrame:
    """Long table of the mean chip landmarks: ``group, sex, landmark, x, y, n``."""
    parts = [
        pd.DataFrame(
            {
                "group": group,
                "sex": sex,
                "landmark": np.arange(N_LANDMARKS),
                "x": faces.mean_landmarks[index, :, 0],
                "y": faces.mean_landmarks[index, :, 1],
                "n": int(faces.n[index]),
            }
        )
        for index, (group, sex) in enumerate(zip(faces.group, faces.sex))
    ]
    columns = ["group", "sex", "landmark", "x", "y", "n"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
