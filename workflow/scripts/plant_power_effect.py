"""Plant the facial-adiposity widening into one shard of a power study (rule plant_power_effect).

The photos of one arm's shard: the cases of a strength, widened by it
(``params.strength``), or the controls, at strength 0. Both go through the
same warp and are written as lossless PNG, so nothing
but the planted shape separates the groups. A photo whose original showed no
face cannot be warped: it is written unchanged (through the same PNG path),
flagged ``located = False``, and preprocessing decides its status as usual.
"""

import logging

import numpy as np
import pandas as pd

PLANTED_COLUMNS = [
    "image_id",
    "path",
    "group",
    "age",
    "sex",
    "subject_id",
    "stratum",
    "located",
    "strength",
    "planted",
]


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Warp each member and write the planted photos and their table."""
    from pathlib import Path

    from phenoface.faces import UnreadableImage, load_rgb
    from phenoface.io import write_png, write_table
    from phenoface.planted import plant_adiposity
    from phenoface.runtime import setup_logging

    setup_logging(snakemake.log[0])
    log = logging.getLogger("plant_power_effect")
    strength = float(snakemake.params.strength)
    folder = Path(snakemake.output.images)
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {}
    for path in snakemake.input.landmarks:
        with np.load(path, allow_pickle=False) as located:
            by_id.update(zip(located["image_id"].astype(str), located["landmarks"]))
    rows = []
    for member in snakemake.params.members:
        landmarks = by_id[member["image_id"]]
        found = bool(np.isfinite(landmarks).all())
        applied = strength if found else 0.0
        path = folder / f"{member['image_id']}.png"
        try:
            image, _ = load_rgb(member["path"])
        except (UnreadableImage, OSError) as error:
            # No planted photo: preprocessing records the image as unreadable.
            log.warning("%s: %s", member["path"], error)
        else:
            write_png(path, plant_adiposity(image, landmarks, applied) if found else image)
        rows.append({**member, "located": found, "strength": applied, "planted": str(path)})
    table = pd.DataFrame(rows)[PLANTED_COLUMNS]
    log.info(
        "strength %g: %d photos, %d widened, %d without a face in the original",
        strength,
        len(table),
        int((table["strength"] > 0).sum()),
        int((~table["located"]).sum()),
    )
    write_table(snakemake.output.table, table)


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
