"""Sample sheets as ``phenoface.sheets.read_sheet`` returns them, for unit tests."""

from __future__ import annotations

import pandas as pd

from phenoface.sheets import image_id_for


def make_sheet(kind: str, people: list[tuple[int, str]], prefix: str = "img") -> pd.DataFrame:
    """A validated-looking sheet of ``kind`` for (age, sex) pairs."""
    images = [f"{prefix}_{index:05d}.jpg" for index in range(len(people))]
    return pd.DataFrame(
        {
            "image_id": [image_id_for(kind, image) for image in images],
            "sheet": kind,
            "row": range(2, len(people) + 2),
            "image": images,
            "path": [f"/data/{image}" for image in images],
            "age": [age for age, _ in people],
            "sex": [sex for _, sex in people],
            "subject_id": "",
        }
    )
