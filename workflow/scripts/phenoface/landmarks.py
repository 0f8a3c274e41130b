"""The iBUG 68-point landmark scheme of dlib's shape predictor: its groups, named once.

Left and right are the *subject's* throughout: the subject's right eye
(points 36-41) is on the image's left.
"""

from __future__ import annotations

import numpy as np

N_LANDMARKS = 68

JAW = range(0, 17)
RIGHT_BROW = range(17, 22)
LEFT_BROW = range(22, 27)
BROWS = range(17, 27)
NOSE_BRIDGE = range(27, 31)
NOSE_BASE = range(31, 36)
NOSE = range(27, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
OUTER_MOUTH = range(48, 60)
INNER_MOUTH = range(60, 68)
CHIN = 8

#: Every point in one named group (the names are column values of the landmark tests).
GROUPS: dict[str, range] = {
    "jaw": JAW,
    "brow_right": RIGHT_BROW,
    "brow_left": LEFT_BROW,
    "nose": NOSE,
    "eye_right": RIGHT_EYE,
    "eye_left": LEFT_EYE,
    "mouth_outer": OUTER_MOUTH,
    "mouth_inner": INNER_MOUTH,
}
#: Group name of each landmark index.
GROUP_OF_POINT: list[str] = [name for name, indices in GROUPS.items() for _ in indices]


def points(landmarks: np.ndarray, group: range) -> np.ndarray:
    """The points of ``group`` from landmarks shaped ``(..., 68, 2)``."""
    return np.asarray(landmarks)[..., group.start : group.stop, :]


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left) and left eye (image right)."""
    return points(landmarks, RIGHT_EYE).mean(axis=-2), points(landmarks, LEFT_EYE).mean(axis=-2)
