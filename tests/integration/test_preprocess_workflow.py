"""Preprocessing through Snakemake: the 656 real faces, shard caching, kill and resume."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import write_sheet

pytestmark = pytest.mark.integration

QC_TARGET = "results/qc/preprocess.tsv"
CONTACT_SHEET = "results/qc/contact_sheet.png"


def small_pool(utkface_dir: Path, tmp_path: Path, n: int) -> Path:
    """A pool sheet of ``n`` UTKFace images that are not in the developer set."""
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    rows = meta.loc[meta["in_dev_set"] == ""].head(n)
    return write_sheet(
        tmp_path / "pool.csv",
        [{"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex} for r in rows.itertuples()],
    )


def test_all_developer_faces(make_workflow, faces_dir: Path, utkface_dir: Path, tmp_path: Path) -> None:
    """All 656 faces: >= 99% ok, 150x150 chips, level eyes, default mask covers 35-80%."""
    pool = small_pool(utkface_dir, tmp_path, 40)
    flow = make_workflow("faces", {"cases": str(faces_dir / "metadata.csv"), "reference_pool": str(pool)})
    # The contact sheet is its own rule (draw_contact_sheet), so it is asked for by name.
    flow.run(QC_TARGET, CONTACT_SHEET)
    qc = pd.read_csv(flow.path(QC_TARGET), sep="\t", keep_default_na=False)
    cases = qc[qc["sheet"] == "cases"]
    assert len(cases) == 656 and cases["image_id"].is_unique
    assert len(qc) == 656 + 40
    ok = cases[cases["status"] == "ok"]
    assert len(ok) / len(cases) >= 0.99, cases.loc[cases["status"] != "ok", ["path", "status", "detail"]]
    eye_dy = ok["eye_dy"].astype(float)
    assert eye_dy.median() <= 1.0 and eye_dy.max() <= 4.0
    fractions = ok["mask_fraction"].astype(float)
    assert fractions.min() >= 0.35 and fractions.max() <= 0.80, fractions.describe()
    assert set(ok["mask_method"]) == {"face_mesh"}
    import cv2

    for chip in ok["masked_chip"].sample(25, random_state=0):
        image = cv2.imread(str(flow.path(chip)))
        assert image.shape == (150, 150, 3)
    contact = cv2.imread(str(flow.path(CONTACT_SHEET)))
    assert contact.shape[0] % 150 == 0 and contact.shape[1] == 8 * 150


@pytest.fixture()
def copied_faces(faces_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """24 face copies as cases and 8 as pool, in a writable folder (so one can be touched)."""
    meta = pd.read_csv(faces_dir / "metadata.csv", keep_default_na=False).head(32)
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for r in meta.itertuples():
        shutil.copy(faces_dir / r.image, images / r.image)
        rows.append({"image": f"images/{r.image}", "age": r.age, "sex": r.sex})
    cases = write_sheet(tmp_path / "cases.csv", rows[:24])
    pool = write_sheet(tmp_path / "pool.csv", rows[24:])
    return cases, pool


def small_config(cases: Path, pool: Path) -> dict:
    return {"cases": str(cases), "reference_pool": str(pool), "preprocess": {"shard_size": 3}}


def comparable(table: pd.DataFrame, workdir: Path) -> pd.DataFrame:
    """A QC table without timings and with the working directory factored out."""
    table = table.drop(columns=["seconds"]).copy()
    for column in ("chip", "masked_chip", "mask", "landmarks"):
        table[column] = table[column].str.replace(str(workdir), "", regex=False)
    return table


def test_changing_one_image_reruns_one_shard(make_workflow, copied_faces, faces_dir: Path) -> None:
    """After a full run, replacing one case image's content schedules exactly one preprocessing job."""
    from phenoface.sheets import assign_shards, read_sheet

    cases, pool = copied_faces
    flow = make_workflow("touch", small_config(cases, pool))
    flow.run(QC_TARGET)
    assert flow.planned_jobs(QC_TARGET).get("preprocess_images", 0) == 0
    sheet = read_sheet(cases, "cases")
    expected_shards = {f"{s:04d}" for s in assign_shards(list(sheet["image_id"]), 3)}
    written = {p.stem for p in flow.path("results/preprocess/cases").glob("*.tsv")}
    assert written == expected_shards and len(written) > 1
    changed = Path(sheet["path"][5])
    changed.chmod(0o644)
    shutil.copyfile(faces_dir / "dev_0600.jpg", changed)
    planned = flow.planned_jobs(QC_TARGET)
    assert planned["preprocess_images"] == 1, planned


def test_kill_and_resume_gives_the_same_table(make_workflow, copied_faces) -> None:
    """SIGKILL to snakemake mid-run, then a re-run, ends with the uninterrupted run's QC table."""
    cases, pool = copied_faces
    reference = make_workflow("reference", small_config(cases, pool))
    reference.run(QC_TARGET)
    interrupted = make_workflow("interrupted", small_config(cases, pool))
    process = interrupted.popen(QC_TARGET, cores=1)
    deadline = time.time() + 120
    shard_dir = interrupted.path("results/preprocess/cases")
    while time.time() < deadline and len(list(shard_dir.glob("*.tsv"))) < 2:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not interrupted.path(QC_TARGET).exists()
    interrupted.run("--unlock")  # a SIGKILL leaves Snakemake's lock behind
    interrupted.run(QC_TARGET)
    expected = comparable(
        pd.read_csv(reference.path(QC_TARGET), sep="\t", keep_default_na=False), reference.workdir
    )
    resumed = comparable(
        pd.read_csv(interrupted.path(QC_TARGET), sep="\t", keep_default_na=False), interrupted.workdir
    )
    pd.testing.assert_frame_equal(expected, resumed)
    leftovers = [
        p for p in interrupted.path("results").rglob(".*") if p.is_file() and p.name != ".snakemake_timestamp"
    ]
    assert leftovers == []
    first = sorted(interrupted.path("results/preprocess/cases").glob("*/*.chip.png"))[0]
    twin = reference.path(str(first.relative_to(interrupted.workdir)))
    import cv2

    assert np.array_equal(cv2.imread(str(first)), cv2.imread(str(twin)))
