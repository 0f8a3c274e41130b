"""Turn the MegaAge(-Asian) layout into a reference-pool sample sheet.

MegaAge ships a folder of images and two aligned list files: one image file
name per line (``name.txt``) and one age per line (``age.txt``). This writes
a pool sheet with the columns ``image`` (path relative to the sheet's
folder), ``age`` and ``sex`` (empty: MegaAge has no sex labels; with the default
``sampling.infer_sex: true`` the workflow infers sex from the face for the
rows it needs, so ``match_on: [age, sex]`` works, see README).

Usage::

    python workflow/tools/megaage_to_sheet.py --images DIR --names name.txt \\
        --ages age.txt --out pool.csv

``--images/--names/--ages`` may be repeated (e.g. MegaAge-Asian's train and
test splits); the triples are paired in order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from phenoface.errors import PhenofaceError  # noqa: E402
from phenoface.io import write_table  # noqa: E402
from phenoface.runtime import setup_logging  # noqa: E402

LOGGER = logging.getLogger("megaage_to_sheet")
MAX_AGE = 130


def read_list(path: Path) -> list[str]:
    """Lines of a list file, stripped, trailing empty lines dropped.

    An empty line before the last non-empty one is an error (it would shift
    the alignment of names and ages).
    """
    if not path.is_file():
        raise PhenofaceError(f"list file {path} not found; pass the path of MegaAge's name/age list.")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line:
            raise PhenofaceError(f"{path}, line {number}: empty line inside the list; remove it.")
    if not lines:
        raise PhenofaceError(f"list file {path} is empty.")
    return lines


def build_pool_sheet(images_dir: Path, names_path: Path, ages_path: Path, sheet_dir: Path) -> pd.DataFrame:
    """Pool-sheet rows for one MegaAge split.

    Parameters
    ----------
    images_dir : Path
        Folder holding the images named in ``names_path``.
    names_path, ages_path : Path
        Aligned list files: image file name and integer age per line.
    sheet_dir : Path
        Folder of the sheet to write; image paths are made relative to it.

    Returns
    -------
    pandas.DataFrame
        Columns ``image``, ``age`` (int), ``sex`` (empty).
    """
    if not images_dir.is_dir():
        raise PhenofaceError(
            f"image folder {images_dir} not found; pass MegaAge's image folder with --images."
        )
    names = read_list(names_path)
    ages_text = read_list(ages_path)
    if len(names) != len(ages_text):
        raise PhenofaceError(
            f"{names_path} has {len(names)} image names but {ages_path} has {len(ages_text)} ages; "
            "the two lists must be aligned line by line (same split, same order)."
        )
    ages = []
    for number, text in enumerate(ages_text, start=1):
        try:
            age = int(text)
        except ValueError:
            raise PhenofaceError(
                f"{ages_path}, line {number}: age {text!r} is not an integer number of years."
            ) from None
        if not 0 <= age <= MAX_AGE:
            raise PhenofaceError(f"{ages_path}, line {number}: age {age} is outside 0-{MAX_AGE}.")
        ages.append(age)
    paths = [images_dir / name for name in names]
    missing = [(number, path) for number, path in enumerate(paths, start=1) if not path.is_file()]
    if missing:
        shown = "; ".join(f"line {number}: {path}" for number, path in missing[:5])
        raise PhenofaceError(
            f"{names_path}: {len(missing)} listed image(s) not found in {images_dir} ({shown}"
            f"{' ...' if len(missing) > 5 else ''}). Check --images points at the folder of this list."
        )
    images = [os.path.relpath(path.resolve(), sheet_dir.resolve()) for path in paths]
    return pd.DataFrame({"image": images, "age": ages, "sex": [""] * len(images)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, action="append", required=True, help="image folder")
    parser.add_argument("--names", type=Path, action="append", required=True, help="list of image file names")
    parser.add_argument("--ages", type=Path, action="append", required=True, help="list of ages, aligned")
    parser.add_argument("--out", type=Path, required=True, help="pool sheet CSV to write")
    args = parser.parse_args(argv)
    if not len(args.images) == len(args.names) == len(args.ages):
        parser.error("give --images, --names and --ages the same number of times (one triple per split)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; return the process exit status."""
    setup_logging(None)
    args = parse_args(argv)
    try:
        parts = [
            build_pool_sheet(images, names, ages, args.out.parent)
            for images, names, ages in zip(args.images, args.names, args.ages)
        ]
        sheet = pd.concat(parts, ignore_index=True)
        duplicated = sheet["image"].duplicated()
        if duplicated.any():
            raise PhenofaceError(
                f"image {sheet.loc[duplicated, 'image'].iloc[0]} is listed more than once "
                f"({int(duplicated.sum())} duplicate(s)); each image may appear in one list line only."
            )
    except PhenofaceError as error:
        LOGGER.error("%s", error)
        return 2
    write_table(args.out, sheet)
    LOGGER.info(
        "wrote %s: %d images, ages %d-%d", args.out, len(sheet), sheet["age"].min(), sheet["age"].max()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
