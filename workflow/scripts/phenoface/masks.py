"""Masking the background of aligned face chips.

A chip is the upright RGB face image made by ``dlib.get_face_chip_details``
and ``dlib.extract_image_chip``; its 68 dlib landmarks are given in chip
coordinates (float ``(68, 2)``, x then y). :class:`FaceMasker` turns a chip
into a binary mask (uint8, 0 = background, 255 = face) by one of four methods:

``face_mesh`` (default)
    MediaPipe's face-landmark network (``face_landmark.tflite``) is run on
    the chip and the polygon along its 36-point face-oval contour
    (:data:`FACE_OVAL`) is filled: the face including the forehead, without
    hair, ears, neck or background. The network expects the face to fill
    about two thirds of its 192x192 input (MediaPipe crops 1.5x the face
    box), whereas a dlib chip is tighter, so the chip is first padded on each
    side by :data:`MESH_CONTEXT` of its size, replicating the border as
    MediaPipe's own cropping does. Pixels are scaled to [0, 1] (MediaPipe's
    float range for this model; checked on real chips: the mesh eye corners
    fall within 2-3 px of dlib's in a 150 px chip, closer than with
    [-1, 1]). If the face-presence probability is below the threshold, the
    output is not finite, or the oval is degenerate (covers less than
    :data:`MIN_MESH_FRACTION` of the chip or misses the centroid of the
    dlib landmarks), the mask falls back to ``landmark_hull`` and the result
    says so.
``portrait``
    MediaPipe selfie segmentation (person vs background): the chip is
    padded with a black border (:data:`SELFIE_CONTEXT` of its size on each
    side; without it the network misses some tight face chips), resized to
    256x256 and scaled to [0, 1] (MediaPipe's range for this model); the
    person probability, mapped back to the chip, is thresholded at 0.5.
    Keeps hair and neck. Falls back to ``landmark_hull`` if the person mask
    covers less than :data:`MIN_PORTRAIT_FRACTION` of the chip or misses the
    landmark centroid.
``landmark_hull``
    No model: the convex hull of the 68 landmarks plus a forehead. The 10
    eyebrow points (17-26) are copied upward, along the chin-to-eyes
    direction, by :data:`FOREHEAD_FRACTION` of the distance from the chin
    (point 8) to the midpoint of the eye centres; the hull of the 68 points
    and these 10 lifted points is filled.
``none``
    An all-ones (255) mask: no masking.

:func:`apply_mask` sets the background pixels of a chip to 0.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import PhenofaceError
from .landmarks import BROWS, CHIN, eye_centres, points
from .models import MEDIAPIPE_MODELS, MEDIAPIPE_SUBDIR, mediapipe_model_paths, verify_sha256

METHODS = ("face_mesh", "portrait", "landmark_hull", "none")
DEFAULT_METHOD = "face_mesh"
#: Default model folder, relative to the working directory (Snakemake's).
DEFAULT_MODEL_DIR = Path("resources") / MEDIAPIPE_SUBDIR

#: MediaPipe face-mesh indices of the face-oval contour, in order around the
#: face (forehead top 10, down the face's left side to the chin 152, back up).
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
    397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
    172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
MESH_INPUT_SIZE = 192
MESH_NUM_LANDMARKS = 468
#: Padding added on each side of the chip, as a fraction of its size, before
#: the face mesh runs (see the module docstring).
MESH_CONTEXT = 0.2
#: Face-presence probability below which the mesh is not trusted.
PRESENCE_THRESHOLD = 0.5
#: A face oval covering less than this fraction of the chip is degenerate.
MIN_MESH_FRACTION = 0.15
SELFIE_INPUT_SIZE = 256
SELFIE_THRESHOLD = 0.5
#: Black border added on each side of the chip, as a fraction of its size,
#: before selfie segmentation: the network is trained on head-and-shoulders
#: framing and misses faces that fill its whole input.
SELFIE_CONTEXT = 0.25
#: A portrait mask covering less than this fraction of the chip is degenerate.
MIN_PORTRAIT_FRACTION = 0.05
#: Forehead height above the brows, as a fraction of the eye-to-chin distance.
FOREHEAD_FRACTION = 0.4


@dataclass(frozen=True)
class MaskResult:
    """The mask of one chip and how it was made.

    Attributes
    ----------
    mask : np.ndarray
        uint8 (H, W), 255 on the face, 0 on the background.
    method : str
        Method actually used (differs from the requested one after a fallback).
    score : float
        face_mesh: face-presence probability; portrait: mean person
        probability inside the mask; NaN for the other methods.
    detail : str
        One line for logs and QC tables, naming any fallback and its reason.
    """

    mask: np.ndarray
    method: str
    score: float
    detail: str

    @property
    def fraction(self) -> float:
        """Fraction of the chip's pixels inside the mask."""
        return float(np.count_nonzero(self.mask)) / self.mask.size


def _check_chip(chip: np.ndarray, chip_landmarks: np.ndarray) -> None:
    """Raise ValueError unless ``chip`` is uint8 (H, W, 3) and landmarks are (68, 2)."""
    if chip.dtype != np.uint8 or chip.ndim != 3 or chip.shape[2] != 3:
        raise ValueError(f"chip must be uint8 (H, W, 3), got {chip.dtype} {chip.shape}")
    if chip_landmarks.shape != (68, 2):
        raise ValueError(f"chip_landmarks must be (68, 2), got {chip_landmarks.shape}")


def polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """Fill a polygon given in float pixel coordinates.

    Parameters
    ----------
    shape : (int, int)
        Mask height and width.
    polygon : np.ndarray
        (N, 2) vertices, x then y; parts outside the mask are clipped.

    Returns
    -------
    np.ndarray
        uint8 (H, W) mask, 255 inside the polygon.
    """
    mask = np.zeros(shape, dtype=np.uint8)
    # 4 fractional bits keep sub-pixel vertex positions when filling.
    vertices = np.round(np.asarray(polygon, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillPoly(mask, [vertices], 255, lineType=cv2.LINE_8, shift=4)
    return mask


def forehead_points(chip_landmarks: np.ndarray, forehead_fraction: float = FOREHEAD_FRACTION) -> np.ndarray:
    """The 10 eyebrow landmarks lifted onto the forehead.

    Parameters
    ----------
    chip_landmarks : np.ndarray
        (68, 2) dlib landmarks, x then y.
    forehead_fraction : float
        Lift as a fraction of the distance from the chin (point 8) to the
        midpoint of the two eye centres.

    Returns
    -------
    np.ndarray
        (10, 2) points: brows moved along the chin-to-eyes direction.
    """
    landmarks = np.asarray(chip_landmarks, dtype=np.float64)
    right_eye, left_eye = eye_centres(landmarks)
    up = (right_eye + left_eye) / 2 - landmarks[CHIN]
    # ``up`` has length eye-to-chin, so scaling it gives the lift directly.
    return points(landmarks, BROWS) + forehead_fraction * up


def landmark_hull_mask(
    shape: tuple[int, int],
    chip_landmarks: np.ndarray,
    forehead_fraction: float = FOREHEAD_FRACTION,
) -> np.ndarray:
    """Convex hull of the 68 landmarks extended over the forehead.

    Parameters
    ----------
    shape : (int, int)
        Mask height and width.
    chip_landmarks : np.ndarray
        (68, 2) dlib landmarks in chip coordinates.
    forehead_fraction : float
        See :func:`forehead_points`.

    Returns
    -------
    np.ndarray
        uint8 (H, W) mask, 255 on the face.
    """
    landmarks = np.asarray(chip_landmarks, dtype=np.float64)
    points = np.vstack([landmarks, forehead_points(landmarks, forehead_fraction)])
    hull = cv2.convexHull(points.astype(np.float32))[:, 0, :]
    mask = polygon_mask(shape, hull)
    # The hull's rounded edges can drop a landmark that lies exactly on an
    # edge; draw the points themselves so every landmark is inside.
    for x, y in np.round(landmarks).astype(int):
        if 0 <= y < shape[0] and 0 <= x < shape[1]:
            mask[y, x] = 255
    return mask


def apply_mask(chip: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return a copy of ``chip`` with the background (mask == 0) set to 0.

    Parameters
    ----------
    chip : np.ndarray
        (H, W, C) or (H, W) image.
    mask : np.ndarray
        (H, W) mask, non-zero on the face.
    """
    if mask.shape != chip.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match chip {chip.shape[:2]}")
    masked = chip.copy()
    masked[mask == 0] = 0
    return masked


def _square_input(
    chip: np.ndarray, context: float, size: int, border: int
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Pad a chip to a square with ``context`` of border, resize to ``size``, scale to [0, 1].

    Returns the (1, size, size, 3) float32 tensor, padded-image pixels per
    input pixel, and the (left, top) padding to subtract when mapping back.
    """
    height, width = chip.shape[:2]
    side = int(round(max(height, width) * (1 + 2 * context)))
    top = (side - height) // 2
    left = (side - width) // 2
    padded = cv2.copyMakeBorder(chip, top, side - height - top, left, side - width - left, border, value=0)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    resized = cv2.resize(padded, (size, size), interpolation=interpolation)
    return (resized.astype(np.float32) / 255.0)[np.newaxis], side / size, (left, top)


def mesh_input(chip: np.ndarray, context: float = MESH_CONTEXT) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The face-mesh input (1, 192, 192, 3): the chip padded square with replicated context."""
    return _square_input(chip, context, MESH_INPUT_SIZE, cv2.BORDER_REPLICATE)


def selfie_input(
    chip: np.ndarray, context: float = SELFIE_CONTEXT
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The selfie-segmentation input (1, 256, 256, 3): the chip padded square with black."""
    return _square_input(chip, context, SELFIE_INPUT_SIZE, cv2.BORDER_CONSTANT)


def selfie_to_chip(
    probability: np.ndarray, shape: tuple[int, int], scale: float, offset: tuple[int, int]
) -> np.ndarray:
    """Resize the (256, 256) person probability back to the padded image and crop the chip."""
    side = int(round(probability.shape[0] * scale))
    full = cv2.resize(probability.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    left, top = offset
    return full[top : top + shape[0], left : left + shape[1]]


def mesh_to_chip(raw_landmarks: np.ndarray, scale: float, offset: tuple[int, int]) -> np.ndarray:
    """Map the network's flat landmark output to (468, 2) chip coordinates."""
    points = np.asarray(raw_landmarks, dtype=np.float64).reshape(MESH_NUM_LANDMARKS, 3)[:, :2]
    return points * scale - np.asarray(offset, dtype=np.float64)


def _sigmoid(logit: float) -> float:
    """Logistic function, safe for large |logit|."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def _load_interpreter(model_dir: Path, name: str):
    """A single-threaded LiteRT interpreter for the verified MediaPipe model ``name``."""
    from ai_edge_litert.interpreter import Interpreter

    path = mediapipe_model_paths(model_dir)[name]
    what = f"MediaPipe {name}"
    if not path.is_file():
        raise PhenofaceError(
            f"{what} model not found at {path}; run the rule fetch_mediapipe_models "
            "(snakemake fetch_mediapipe_models) or pass the folder holding "
            f"{path.name} as model_dir"
        )
    verify_sha256(path, MEDIAPIPE_MODELS[name].sha256, f"{what} model")
    # One thread: preprocessing jobs already run in parallel.
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


class FaceMasker:
    """Make background masks for aligned face chips with one method.

    The model (if any) is loaded once, at construction.

    Parameters
    ----------
    method : {"face_mesh", "portrait", "landmark_hull", "none"}
        Masking method (see the module docstring).
    model_dir : path-like, optional
        Folder holding ``face_landmark.tflite`` / ``selfie_segmentation.tflite``;
        defaults to ``resources/mediapipe`` under the working directory.
        Unused by ``landmark_hull`` and ``none``.
    presence_threshold : float
        Face-presence probability below which ``face_mesh`` falls back.

    Examples
    --------
    >>> masker = FaceMasker("face_mesh", Path("resources/mediapipe"))  # doctest: +SKIP
    >>> result = masker(chip, chip_landmarks)  # doctest: +SKIP
    >>> masked = apply_mask(chip, result.mask)  # doctest: +SKIP
    """

    def __init__(
        self,
        method: str = DEFAULT_METHOD,
        model_dir: str | os.PathLike | None = None,
        presence_threshold: float = PRESENCE_THRESHOLD,
    ) -> None:
        if method not in METHODS:
            raise PhenofaceError(
                f"unknown mask method {method!r}; choose one of {', '.join(METHODS)} "
                "(config key for the mask method)"
            )
        self.method = method
        self.presence_threshold = presence_threshold
        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self._interpreter = None
        if method == "face_mesh":
            self._interpreter = _load_interpreter(self.model_dir, "face_landmark")
        elif method == "portrait":
            self._interpreter = _load_interpreter(self.model_dir, "selfie_segmentation")
        if self._interpreter is not None:
            self._input_index = self._interpreter.get_input_details()[0]["index"]
            self._outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}

    def __call__(self, chip: np.ndarray, chip_landmarks: np.ndarray) -> MaskResult:
        """Mask one chip.

        Parameters
        ----------
        chip : np.ndarray
            uint8 (H, W, 3) RGB chip.
        chip_landmarks : np.ndarray
            (68, 2) dlib landmarks in chip coordinates, x then y.

        Returns
        -------
        MaskResult
        """
        chip_landmarks = np.asarray(chip_landmarks, dtype=np.float64)
        _check_chip(chip, chip_landmarks)
        if self.method == "face_mesh":
            return self._face_mesh(chip, chip_landmarks)
        if self.method == "portrait":
            return self._portrait(chip, chip_landmarks)
        if self.method == "landmark_hull":
            return self._hull(chip, chip_landmarks, "convex hull of 68 landmarks + forehead")
        return MaskResult(
            mask=np.full(chip.shape[:2], 255, dtype=np.uint8),
            method="none",
            score=float("nan"),
            detail="no masking",
        )

    def _hull(self, chip: np.ndarray, chip_landmarks: np.ndarray, detail: str) -> MaskResult:
        """The landmark_hull result, with ``detail`` saying why it was used."""
        return MaskResult(
            mask=landmark_hull_mask(chip.shape[:2], chip_landmarks),
            method="landmark_hull",
            score=float("nan"),
            detail=detail,
        )

    def face_mesh_landmarks(self, chip: np.ndarray) -> tuple[np.ndarray, float]:
        """Run the face mesh on a chip.

        Returns
        -------
        points : np.ndarray
            (468, 2) mesh landmarks in chip coordinates.
        presence : float
            Face-presence probability (sigmoid of the network's logit).
        """
        if self.method != "face_mesh":
            raise ValueError("face_mesh_landmarks needs a FaceMasker('face_mesh', ...)")
        tensor, scale, offset = mesh_input(chip)
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._outputs["conv2d_21"])
        logit = float(self._interpreter.get_tensor(self._outputs["conv2d_31"]).ravel()[0])
        presence = _sigmoid(logit) if math.isfinite(logit) else float("nan")
        return mesh_to_chip(raw, scale, offset), presence

    def _face_mesh(self, chip: np.ndarray, chip_landmarks: np.ndarray) -> MaskResult:
        """face_mesh method with its fallback to landmark_hull."""
        points, presence = self.face_mesh_landmarks(chip)
        problem = None
        if not (math.isfinite(presence) and np.isfinite(points).all()):
            problem = "face mesh output is not finite"
        elif presence < self.presence_threshold:
            problem = f"face presence {presence:.3f} < {self.presence_threshold}"
        else:
            mask = polygon_mask(chip.shape[:2], points[list(FACE_OVAL)])
            fraction = np.count_nonzero(mask) / mask.size
            cx, cy = np.round(chip_landmarks.mean(axis=0)).astype(int)
            inside = 0 <= cy < mask.shape[0] and 0 <= cx < mask.shape[1] and mask[cy, cx] > 0
            if fraction < MIN_MESH_FRACTION:
                problem = f"face oval covers {fraction:.1%} of the chip (< {MIN_MESH_FRACTION:.0%})"
            elif not inside:
                problem = "face oval does not contain the landmark centroid"
            else:
                return MaskResult(
                    mask=mask,
                    method="face_mesh",
                    score=presence,
                    detail=f"face oval, presence {presence:.3f}",
                )
        result = self._hull(chip, chip_landmarks, f"fallback to landmark_hull: {problem}")
        return MaskResult(result.mask, result.method, presence, result.detail)

    def _portrait(self, chip: np.ndarray, chip_landmarks: np.ndarray) -> MaskResult:
        """portrait method with its fallback to landmark_hull."""
        tensor, scale, offset = selfie_input(chip)
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        (output_index,) = self._outputs.values()
        probability = selfie_to_chip(
            self._interpreter.get_tensor(output_index)[0, :, :, 0], chip.shape[:2], scale, offset
        )
        mask = np.where(probability > SELFIE_THRESHOLD, 255, 0).astype(np.uint8)
        fraction = np.count_nonzero(mask) / mask.size
        cx, cy = np.round(chip_landmarks.mean(axis=0)).astype(int)
        inside = 0 <= cy < mask.shape[0] and 0 <= cx < mask.shape[1] and mask[cy, cx] > 0
        problem = None
        if not np.isfinite(probability).all():
            problem = "person probability is not finite"
        elif fraction < MIN_PORTRAIT_FRACTION:
            problem = f"person mask covers {fraction:.1%} of the chip"
        elif not inside:
            problem = "person mask does not contain the landmark centroid"
        if problem is not None:
            return self._hull(chip, chip_landmarks, f"fallback to landmark_hull: {problem}")
        score = float(probability[mask > 0].mean())
        return MaskResult(
            mask=mask,
            method="portrait",
            score=score,
            detail=f"person segmentation, mean p {score:.3f}",
        )
