"""Build the embedded demo: images, two sample sheets and a config, in one folder.

The demo needs no data of its own: it uses portraits that ship inside
registry packages (scikit-image's ``astronaut``, matplotlib's
``grace_hopper``) and non-face pictures (scikit-image's ``chelsea`` cat and
``coffee``), plus simple variants of the portraits (mirror, small rotation,
crop, brightness) so each sheet has a few rows, and held-out re-takes for an
external validation sheet and a reference sheet. The ages are illustrative,
not the sitters' ages. Usage::

    python workflow/tools/make_demo_sheets.py DEMO_DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from phenoface.io import write_text  # noqa: E402
from phenoface.runtime import setup_logging  # noqa: E402


def portrait_variants(image: Image.Image) -> dict[str, Image.Image]:
    """A few plausible re-takes of one portrait."""
    width, height = image.size
    return {
        "orig": image,
        "mirror": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "rot5": image.rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)),
        "rotm5": image.rotate(-5, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)),
        "crop": image.crop((width // 12, height // 12, width - width // 12, height - height // 12)),
        "bright": ImageEnhance.Brightness(image).enhance(1.2),
    }


def source_images() -> dict[str, Image.Image]:
    """The package-shipped pictures the demo is made from."""
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = Image.open(handle).convert("RGB")
    return {
        "astronaut": Image.fromarray(skimage.data.astronaut()),
        "hopper": hopper,
        "cat": Image.fromarray(skimage.data.chelsea()),
        "coffee": Image.fromarray(skimage.data.coffee()),
    }


def make_demo(out_dir: Path) -> Path:
    """Write demo images, ``cases.csv``, ``pool.csv`` and ``config.yaml``; return the config path."""
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    sources = source_images()
    cases, pool = ["image,age,sex,subject_id"], ["image,age,sex,subject_id"]
    for index, (name, variant) in enumerate(portrait_variants(sources["astronaut"]).items()):
        file = f"astronaut_{name}.jpg"
        variant.save(images_dir / file, quality=92)
        cases.append(f"images/{file},{44 + index % 3},F,")
    for index, (name, variant) in enumerate(portrait_variants(sources["hopper"]).items()):
        file = f"hopper_{name}.jpg"
        variant.save(images_dir / file, quality=92)
        pool.append(f"images/{file},{43 + index % 4},F,")
    # Held-out re-takes for the external validation and reference sheets.
    external, reference = ["image,age,sex,group"], ["image,age,sex"]
    for person, group, age in (("astronaut", "case", 45), ("hopper", "control", 44)):
        file = f"{person}_external.jpg"
        sources[person].rotate(3, resample=Image.Resampling.BICUBIC).save(images_dir / file, quality=80)
        external.append(f"images/{file},{age},F,{group}")
    for contrast in (0.8, 1.3):
        file = f"hopper_reference_{int(contrast * 10)}.jpg"
        ImageEnhance.Contrast(sources["hopper"]).enhance(contrast).save(images_dir / file, quality=85)
        reference.append(f"images/{file},45,F")
    write_text(out_dir / "external.csv", "\n".join(external) + "\n")
    write_text(out_dir / "reference.csv", "\n".join(reference) + "\n")
    for name in ("cat", "coffee"):
        file = f"{name}.png"
        sources[name].save(images_dir / file)
        pool.append(f"images/{file},45,,")
    write_text(out_dir / "cases.csv", "\n".join(cases) + "\n")
    write_text(out_dir / "pool.csv", "\n".join(pool) + "\n")
    config = out_dir / "config.yaml"
    write_text(
        config,
        "# Demo configuration (see config/config.yaml for every key).\n"
        "cases: cases.csv\n"
        "reference_pool: pool.csv\n"
        "seed: 42\n"
        "preprocess:\n  shard_size: 4\n  contact_sheet_size: 12\n"
        "sampling:\n  allow_shortfall: true\n"
        "  # The cat and the cup have no sex; every case is one woman, too few to learn sex from.\n"
        "  infer_sex: false\n"
        "# The demo's faces are variants of two photos: at dlib's 0.6 every case would be one\n"
        "# person and could not be split; a tiny threshold treats each variant as its own.\n"
        "split:\n  identity_threshold: 0.01\n"
        "evaluation:\n  repeats: 2\n  external: [external.csv]\n"
        "audit:\n  reference_sheet: reference.csv\n",
    )
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="folder to create the demo in")
    args = parser.parse_args(argv)
    setup_logging()
    config = make_demo(args.out_dir)
    logging.getLogger("make_demo_sheets").info("demo written: %s", config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
