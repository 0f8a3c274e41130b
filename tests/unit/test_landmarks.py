"""The iBUG-68 landmark groups: one name per point, subject's left/right."""

from __future__ import annotations

import numpy as np

from phenoface import landmarks as lm


def test_groups_cover_every_point_once() -> None:
    """The named groups partition the 68 points in index order."""
    covered = [index for indices in lm.GROUPS.values() for index in indices]
    assert covered == list(range(lm.N_LANDMARKS))
    assert len(lm.GROUP_OF_POINT) == lm.N_LANDMARKS
    assert lm.GROUP_OF_POINT[lm.RIGHT_EYE.start] == "eye_right"


def test_eye_centres_are_the_subjects_right_then_left() -> None:
    """eye_centres returns the mean of points 36-41 (subject's right) then 42-47, for batches too."""
    shapes = np.random.default_rng(0).normal(size=(3, lm.N_LANDMARKS, 2))
    right_eye, left_eye = lm.eye_centres(shapes)
    np.testing.assert_allclose(right_eye, shapes[:, 36:42].mean(axis=1))
    np.testing.assert_allclose(left_eye, shapes[:, 42:48].mean(axis=1))
