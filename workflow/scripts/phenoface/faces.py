"""Loading images and turning each into an aligned face chip (the paper's Figure 1).

Pipeline per image: robust load → dlib HOG detection (with edge padding and
upsampling) → 68 landmarks → ``dlib.get_face_chip_details(shape, size, padding)``
→ the upright aligned chip that dlib's recognition ResNet expects, with the
landmarks mapped into chip coordinates.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from .landmarks import eye_centres
from .qc import OK

#: Background that transparent pixels are flattened onto (fixed, so results
#: never depend on the hidden colour of transparent pixels).
ALPHA_BACKGROUND = (128, 128, 128)


class UnreadableImage(Exception):
    """The file cannot be decoded into a complete image."""


@dataclass
class FaceResult:
    """Outcome of preprocessing one image (chip and landmarks only when ``status == 'ok'``)."""

    status: str
    detail: str = ""
    n_faces: int = 0
    det_score: float = math.nan
    image_size: tuple[int, int] = (0, 0)
    image_format: str = ""
    face_rect: tuple[float, float, float, float] | None = None
    chip: np.ndarray | None = None
    chip_landmarks: np.ndarray | None = None
    image_landmarks: np.ndarray | None = None
    chip_transform: np.ndarray | None = None


def load_rgb(path: str | Path) -> tuple[np.ndarray, str]:
    """Load an image file as an RGB uint8 array, whatever its format.

    The format comes from the content, not the extension; EXIF orientation is
    applied; grayscale, palette, 16-bit, alpha and CMYK become RGB (alpha is
    flattened onto :data:`ALPHA_BACKGROUND`). Truncated or corrupt files raise
    :class:`UnreadableImage` (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set).

    Returns
    -------
    rgb : numpy.ndarray
        (H, W, 3) uint8.
    image_format : str
        Pillow's format name (``JPEG``, ``PNG``, ...).
    """
    data = Path(path).read_bytes()
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or "unknown"
            image.load()
            image = ImageOps.exif_transpose(image)
    except Exception as error:  # Pillow raises many types for bad files
        raise UnreadableImage(f"cannot decode: {type(error).__name__}: {error}") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() if array.max() > 0 else 1.0
        image = Image.fromarray((array / top * 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise UnreadableImage(f"unexpected decoded shape {rgb.shape}")
    return rgb, image_format


def chip_transform(details) -> np.ndarray:
    """2x3 affine matrix mapping image coordinates into the chip of ``details``.

    Mirrors dlib's ``get_mapping_to_chip``: the chip rectangle's top-left,
    bottom-left and bottom-right corners, rotated by ``details.angle`` about
    the rectangle's centre, go to (0, 0), (0, rows-1) and (cols-1, rows-1).
    """
    rect = details.rect
    cx = (rect.left() + rect.right()) / 2.0
    cy = (rect.top() + rect.bottom()) / 2.0
    cos_a, sin_a = math.cos(details.angle), math.sin(details.angle)

    def rotate(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + cos_a * dx - sin_a * dy, cy + sin_a * dx + cos_a * dy

    source = np.float32(
        [
            rotate(rect.left(), rect.top()),
            rotate(rect.left(), rect.bottom()),
            rotate(rect.right(), rect.bottom()),
        ]
    )
    target = np.float32([[0, 0], [0, details.rows - 1], [details.cols - 1, details.rows - 1]])
    return cv2.getAffineTransform(source, target).astype(np.float64)


def apply_affine(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine transform to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ transform[:, :2].T + transform[:, 2]


class FacePreprocessor:
    """Detects, landmarks and aligns faces; loads dlib's models once.

    Parameters
    ----------
    landmark_model : path-like
        ``shape_predictor_68_face_landmarks.dat``.
    upsample : int
        HOG detector upsampling (1 finds faces down to about 40 px).
    pad_fraction : float
        Edge padding added on every side before detection, as a fraction of
        the image's longer side (tight crops such as UTKFace need it).
    min_face_size : int
        Faces narrower than this (original pixels) are ``too_small``.
    multi_face : {"keep_best", "reject"}
        What to do with several faces.
    chip_size, chip_padding : int, float
        Arguments of ``dlib.get_face_chip_details``.
    level_eyes : bool
        dlib fits its chip to all 68 landmarks, which leaves the eye centres
        up to ~5 px apart in height; when true the chip is turned about its
        centre by that residual angle (a few degrees at most) so the eyes
        are level. Scale and centre stay dlib's.
    retry_detection : bool
        When the configured detection finds nothing, retry without padding,
        then with edge-replicated padding, at upsampling 0 and the configured
        value (HOG responses on tight crops depend on what surrounds the
        face); the first attempt that finds a face wins and is recorded.
    """

    def __init__(
        self,
        landmark_model: str | Path,
        upsample: int = 1,
        pad_fraction: float = 0.25,
        min_face_size: int = 50,
        multi_face: str = "keep_best",
        chip_size: int = 150,
        chip_padding: float = 0.25,
        level_eyes: bool = True,
        retry_detection: bool = True,
    ) -> None:
        import dlib

        if multi_face not in ("keep_best", "reject"):
            raise ValueError(f"multi_face must be keep_best or reject, got {multi_face!r}")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(landmark_model))
        self.upsample = upsample
        self.pad_fraction = pad_fraction
        self.min_face_size = min_face_size
        self.multi_face = multi_face
        self.chip_size = chip_size
        self.chip_padding = chip_padding
        self.level_eyes = level_eyes
        self.retry_detection = retry_detection

    def process_file(self, path: str | Path) -> FaceResult:
        """Load and process one image file; never raises for a bad image."""
        try:
            rgb, image_format = load_rgb(path)
        except UnreadableImage as error:
            return FaceResult(status="unreadable", detail=str(error))
        except OSError as error:
            return FaceResult(status="unreadable", detail=f"cannot read file: {error}")
        result = self.process_array(rgb)
        result.image_format = image_format
        return result

    def process_array(self, rgb: np.ndarray) -> FaceResult:
        """Detect, landmark and align the face in an RGB uint8 array."""
        dlib = self._dlib
        height, width = rgb.shape[:2]
        size = (width, height)
        for attempt, (pad_fraction, border, upsample) in enumerate(self._detection_attempts()):  # noqa: B007
            pad = int(round(pad_fraction * max(height, width)))
            padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, border, value=(0, 0, 0))
            rects, scores, _ = self.detector.run(padded, upsample, 0.0)
            if len(rects):
                break
        if len(rects) == 0:
            return FaceResult(status="no_face", detail="HOG detector found no face", image_size=size)
        order = np.argsort(scores)[::-1]
        best = rects[int(order[0])]
        score = float(scores[int(order[0])])
        n_faces = len(rects)
        rect_xywh = (best.left() - pad, best.top() - pad, best.width(), best.height())
        common = dict(n_faces=n_faces, det_score=score, image_size=size, face_rect=rect_xywh)
        if n_faces > 1 and self.multi_face == "reject":
            return FaceResult(
                status="multiple_faces",
                detail=f"{n_faces} faces found and preprocess.multi_face is reject",
                **common,
            )
        if best.width() < self.min_face_size:
            return FaceResult(
                status="too_small",
                detail=f"face {best.width()} px wide < preprocess.min_face_size {self.min_face_size}",
                **common,
            )
        shape = self.predictor(padded, best)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        details = dlib.get_face_chip_details(shape, size=self.chip_size, padding=self.chip_padding)
        if self.level_eyes:
            details = self._levelled(details, landmarks)
        chip = np.ascontiguousarray(dlib.extract_image_chip(padded, details), dtype=np.uint8)
        transform = chip_transform(details)
        chip_landmarks = apply_affine(transform, landmarks)
        # Express the landmarks and the transform in original (unpadded) coordinates.
        image_landmarks = landmarks - pad
        shift = np.array([[1.0, 0.0, pad], [0.0, 1.0, pad], [0.0, 0.0, 1.0]])
        original_transform = transform @ shift
        notes = []
        if attempt:
            notes.append(f"face found on detection retry {attempt} (pad {pad_fraction}, upsample {upsample})")
        if n_faces > 1:
            notes.append(f"{n_faces} faces found; kept the highest-scoring")
        detail = "; ".join(notes)
        return FaceResult(
            status=OK,
            detail=detail,
            chip=chip,
            chip_landmarks=chip_landmarks,
            image_landmarks=image_landmarks,
            chip_transform=original_transform,
            **common,
        )

    def _detection_attempts(self) -> list[tuple[float, int, int]]:
        """(pad fraction, OpenCV border mode, upsample) to try in order."""
        attempts = [(self.pad_fraction, cv2.BORDER_CONSTANT, self.upsample)]
        if self.retry_detection:
            for upsample in sorted({0, self.upsample}):
                attempts.append((0.0, cv2.BORDER_CONSTANT, upsample))
                attempts.append((self.pad_fraction, cv2.BORDER_REPLICATE, upsample))
        return attempts

    def _levelled(self, details, landmarks: np.ndarray):
        """Chip details turned about the chip centre so the eye centres are level."""
        right_eye, left_eye = eye_centres(apply_affine(chip_transform(details), landmarks))
        residual = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
        dims = self._dlib.chip_dims(details.rows, details.cols)
        return self._dlib.chip_details(details.rect, dims, details.angle + residual)


def aligned_chips(paths, limit: int | None = None, **settings) -> np.ndarray:
    """(N, size, size, 3) uint8 chips of the images in ``paths`` that yield a face.

    Uses :class:`FacePreprocessor` with default settings (overridable by
    keyword) and dlib's 68-landmark model; stops after ``limit`` chips.
    """
    from .models import dlib_model_path

    preprocessor = FacePreprocessor(dlib_model_path("landmarks"), **settings)
    chips = []
    for path in paths:
        result = preprocessor.process_file(path)
        if result.status == OK:
            chips.append(result.chip)
        if limit is not None and len(chips) == limit:
            break
    if not chips:
        raise ValueError("no face found in any of the given images")
    return np.stack(chips)
