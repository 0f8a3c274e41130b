"""Average faces (the paper's Figure 3): streaming mean chips and mean chip landmarks per group and sex."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import landmarks as lm
from .cohort import GROUPS, SEXES
from .errors import PhenofaceError
from .io import read_rgb_png

LOGGER = logging.getLogger(__name__)


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
        mean_landmarks=np.stack(landmark_means) if cells else np.zeros((0, lm.N_LANDMARKS, 2)),
    )


def landmarks_mean_table(faces: AverageFaces) -> pd.DataFrame:
    """Long table of the mean chip landmarks: ``group, sex, landmark, x, y, n``."""
    parts = [
        pd.DataFrame(
            {
                "group": group,
                "sex": sex,
                "landmark": np.arange(lm.N_LANDMARKS),
                "x": faces.mean_landmarks[index, :, 0],
                "y": faces.mean_landmarks[index, :, 1],
                "n": int(faces.n[index]),
            }
        )
        for index, (group, sex) in enumerate(zip(faces.group, faces.sex))
    ]
    columns = ["group", "sex", "landmark", "x", "y", "n"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
