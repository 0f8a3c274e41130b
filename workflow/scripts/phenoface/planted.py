"""A planted "facial adiposity" effect: a smooth widening of the lower face.

The positive control of the power analysis (issue 13) needs faces that truly
differ in shape, by an amount that is known. :func:`plant_adiposity` moves the
cheeks and the jaw of a photo outward from the facial midline, so that the
lower face grows by ``strength`` times the face width, and leaves the eyes,
brows, forehead and everything outside the face where they were. It works on
the original photo, before detection, so the pipeline has to find the change
from scratch.

Geometry (computed from the image's 68 iBUG landmarks, 0-based):

* a face frame: origin at the midpoint of the two eye centres, ``u`` along
  the eye axis (towards the image's right), ``v`` perpendicular to it
  (down the face); ``W`` = distance between the top jaw points ``p0`` and
  ``p16``;
* a point at ``(u, v)`` moves along ``u``, away from the midline, by
  ``(strength / 2) * W * L(|u| / W) * V(v)``: both sides move by half, so
  the width grows by ``strength * W``;
* ``L`` (across the face) is 0 on the nose/mouth column (``|u| < 0.10 W``),
  rises smoothly to 1 by ``0.35 W`` (cheeks, jaw line at ``0.40-0.50 W``),
  stays 1 to ``0.60 W`` and falls smoothly to 0 by ``1.05 W`` (outside the
  face);
* ``V`` (down the face) is 0 above the lowest eye landmark plus ``0.04 W``
  (eyes, brows, forehead never move), rises smoothly to 1 at the mouth
  centre, stays 1 down to the chin ``p8`` and falls smoothly to 0 within
  ``0.25 W`` below it.

Because points move only along ``u`` and ``u + displacement(u)`` increases
with ``u`` (its slope is at least ``1 - 1.7 * strength``, set by the fall
of ``L`` outside the face), the map never folds; strengths are limited to
``[0, 0.5]``. The output image is the input sampled at the
inverse map (Newton's method along ``u``, bicubic ``cv2.remap``, replicated
border). Strength 0 gives the identity map exactly, so it reproduces the
input bit for bit; every image of a power study, strength 0 included, goes
through this one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import landmarks as lm
from .landmarks import eye_centres

#: ``|u| / W`` where the lateral profile starts rising, reaches 1, starts falling and reaches 0.
LATERAL_KNOTS = (0.10, 0.35, 0.60, 1.05)
#: Margin below the lowest eye landmark (in W) above which nothing moves.
EYE_MARGIN = 0.04
#: Minimum height (in W) of the rise from the eye margin to the mouth centre.
MIN_RISE = 0.10
#: Depth (in W) below the chin over which the displacement fades out.
CHIN_FADE = 0.25
#: Largest strength accepted (the map would fold above about 0.6).
MAX_STRENGTH = 0.5
#: Newton iterations of the inverse map (converges to < 1e-6 px in about 4).
INVERSE_ITERATIONS = 8

#: iBUG-68 points the frame needs: both eyes and the whole mouth.
EYES = slice(lm.RIGHT_EYE.start, lm.LEFT_EYE.stop)
MOUTH = slice(lm.OUTER_MOUTH.start, lm.INNER_MOUTH.stop)


@dataclass(frozen=True)
class FaceFrame:
    """The face's own coordinates, from its 68 landmarks (image pixels).

    Attributes
    ----------
    origin : numpy.ndarray
        Midpoint of the two eye centres, ``(2,)``.
    u_axis, v_axis : numpy.ndarray
        Unit vectors along the eye axis (image left to right) and down the face.
    width : float
        ``W``, the distance between jaw points ``p0`` and ``p16``.
    eye_bottom, mouth, chin : float
        ``v`` of the lowest eye landmark, the mouth centre and the chin ``p8``.
    """

    origin: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    width: float
    eye_bottom: float
    mouth: float
    chin: float

    def to_frame(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(u, v)`` of image points ``(..., 2)``."""
        offset = np.asarray(points, np.float64) - self.origin
        return offset @ self.u_axis, offset @ self.v_axis


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """The :class:`FaceFrame` of one face's 68 landmarks ``(68, 2)`` in image pixels."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected 68 finite (x, y) landmarks, got shape {points.shape}")
    image_left_eye, image_right_eye = eye_centres(points)
    axis = image_right_eye - image_left_eye
    if np.linalg.norm(axis) == 0:
        raise ValueError("the two eye centres coincide; landmarks are degenerate")
    u_axis = axis / np.linalg.norm(axis)
    v_axis = np.array([-u_axis[1], u_axis[0]])
    origin = (image_left_eye + image_right_eye) / 2.0
    width = float(np.linalg.norm(points[16] - points[0]))
    if width == 0:
        raise ValueError("jaw points p0 and p16 coincide; landmarks are degenerate")
    v = (points - origin) @ v_axis
    return FaceFrame(
        origin=origin,
        u_axis=u_axis,
        v_axis=v_axis,
        width=width,
        eye_bottom=float(v[EYES].max()),
        mouth=float(v[MOUTH].mean()),
        chin=float(v[lm.CHIN]),
    )


def smooth_ramp(x: np.ndarray, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothstep from 0 at ``start`` to 1 at ``end`` and its derivative in ``x``."""
    t = np.clip((np.asarray(x, np.float64) - start) / (end - start), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t), 6.0 * t * (1.0 - t) / (end - start)


def lateral_profile(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``L(s)`` and ``dL/ds`` at ``s = |u| / W`` (see the module docstring)."""
    rise, rise_slope = smooth_ramp(s, LATERAL_KNOTS[0], LATERAL_KNOTS[1])
    fall, fall_slope = smooth_ramp(s, LATERAL_KNOTS[2], LATERAL_KNOTS[3])
    return rise * (1.0 - fall), rise_slope * (1.0 - fall) - rise * fall_slope


def vertical_profile(v: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """``V(v)``: 0 at the eyes and above, 1 from the mouth centre to the chin, 0 below."""
    start = frame.eye_bottom + EYE_MARGIN * frame.width
    full = max(frame.mouth, start + MIN_RISE * frame.width)
    rise, _ = smooth_ramp(v, start, full)
    chin = max(frame.chin, full)
    fall, _ = smooth_ramp(v, chin, chin + CHIN_FADE * frame.width)
    return rise * (1.0 - fall)


def displacement(points: np.ndarray, landmarks: np.ndarray, strength: float) -> np.ndarray:
    """Forward displacement ``(..., 2)`` (image pixels) of image points ``(..., 2)``."""
    frame = face_frame(landmarks)
    u, v = frame.to_frame(points)
    profile, _ = lateral_profile(np.abs(u) / frame.width)
    amount = 0.5 * strength * frame.width * profile * vertical_profile(v, frame)
    return (np.sign(u) * amount)[..., None] * frame.u_axis


def warp_points(points: np.ndarray, landmarks: np.ndarray, strength: float) -> np.ndarray:
    """Where image points go under the planted widening of the face with ``landmarks``."""
    return np.asarray(points, np.float64) + displacement(points, landmarks, strength)


def inverse_map(
    shape: tuple[int, int], landmarks: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates ``(map_x, map_y)`` (float32, ``shape``) of every output pixel.

    Points move only along ``u``, so each output pixel's source lies on its own
    line of constant ``v``: Newton's method solves ``t + a(t) = |u_out|`` for
    the source's ``t = |u|``, where ``a`` is the outward displacement.
    """
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise ValueError(f"strength must be in [0, {MAX_STRENGTH}], got {strength}")
    frame = face_frame(landmarks)
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xs, ys], axis=-1)
    u_out, v = frame.to_frame(grid)
    target = np.abs(u_out)
    scale = 0.5 * strength * frame.width * vertical_profile(v, frame)
    t = target.copy()
    for _ in range(INVERSE_ITERATIONS):
        profile, slope = lateral_profile(t / frame.width)
        residual = t + scale * profile - target
        t = np.maximum(t - residual / (1.0 + scale * slope / frame.width), 0.0)
    # Exactly zero where nothing moves (strength 0 included): the identity map, no resampling error.
    shift = np.sign(u_out) * (target - t)
    source = grid - shift[..., None] * frame.u_axis
    return source[..., 0].astype(np.float32), source[..., 1].astype(np.float32)


def plant_adiposity(image: np.ndarray, landmarks: np.ndarray, strength: float) -> np.ndarray:
    """Widen the lower face of ``image`` by ``strength`` times its face width.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` or ``(H, W)`` image (any dtype OpenCV remaps).
    landmarks : numpy.ndarray
        ``(68, 2)`` iBUG landmarks of the face in ``image`` pixels.
    strength : float
        Fraction of the face width ``W`` by which the jaw line widens, in
        ``[0, 1)``; 0 returns the image unchanged (the same code path).

    Returns
    -------
    numpy.ndarray
        The warped image, same shape and dtype.
    """
    map_x, map_y = inverse_map(image.shape[:2], landmarks, strength)
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
