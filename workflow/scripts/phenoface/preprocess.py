"""Per-shard preprocessing and the QC table that accounts for every image."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .faces import FacePreprocessor
from .io import write_png, write_text
from .landmarks import eye_centres
from .qc import NOT_NEEDED, OK, QC_COLUMNS

LOGGER = logging.getLogger(__name__)


def empty_qc_row(image_id: str, sheet: str, path: str, status: str, detail: str) -> dict:
    """A QC row for an image that produced no chip."""
    row = {column: "" for column in QC_COLUMNS}
    row.update(image_id=image_id, sheet=sheet, path=path, status=status, detail=detail)
    row.update(n_faces=0, det_score=math.nan, mask_fraction=math.nan, eye_dy=math.nan)
    return row


def preprocess_image(
    image_id: str,
    sheet: str,
    path: str,
    out_dir: Path,
    preprocessor: FacePreprocessor,
    masker: Callable,
    apply_mask: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict:
    """Preprocess one image into ``out_dir``; return its QC row (never raises)."""
    started = time.perf_counter()
    try:
        result = preprocessor.process_file(path)
        row = empty_qc_row(image_id, sheet, path, result.status, result.detail)
        row.update(
            n_faces=result.n_faces,
            det_score=result.det_score,
            image_width=result.image_size[0],
            image_height=result.image_size[1],
            image_format=result.image_format,
            face_width=result.face_rect[2] if result.face_rect else "",
        )
        if result.status == OK:
            masked = masker(result.chip, result.chip_landmarks)
            masked_chip = apply_mask(result.chip, masked.mask)
            files = {
                "chip": out_dir / f"{image_id}.chip.png",
                "mask": out_dir / f"{image_id}.mask.png",
                "masked_chip": out_dir / f"{image_id}.masked.png",
                "landmarks": out_dir / f"{image_id}.json",
            }
            write_png(files["chip"], result.chip)
            write_png(files["mask"], masked.mask)
            write_png(files["masked_chip"], masked_chip)
            right_eye, left_eye = eye_centres(result.chip_landmarks)
            record = {
                "image_id": image_id,
                "path": path,
                "n_faces": result.n_faces,
                "det_score": result.det_score,
                "face_rect_xywh": list(result.face_rect),
                "image_size_wh": list(result.image_size),
                "landmarks_image": result.image_landmarks.round(3).tolist(),
                "landmarks_chip": result.chip_landmarks.round(3).tolist(),
                "chip_transform": result.chip_transform.tolist(),
                "mask_method": masked.method,
                "mask_detail": masked.detail,
            }
            write_text(files["landmarks"], json.dumps(record) + "\n")
            row.update({key: str(value) for key, value in files.items()})
            row.update(
                mask_method=masked.method,
                mask_fraction=float((masked.mask > 0).mean()),
                eye_dy=float(abs(left_eye[1] - right_eye[1])),
            )
            if masked.method != masker.method:
                # Only a fallback is worth a note; the usual mask detail is in the JSON record.
                row["detail"] = "; ".join(filter(None, [row["detail"], f"mask fallback: {masked.detail}"]))
    except Exception as error:  # one bad image must never stop the shard
        LOGGER.exception("unexpected failure on %s (%s)", image_id, path)
        row = empty_qc_row(image_id, sheet, path, "error", f"{type(error).__name__}: {error}")
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row


#: What forked workers of ``preprocess_members`` inherit (set just before the fork).
_SHARED: dict = {}


def _preprocess_shared(member: tuple[str, str, str]) -> dict:
    """``preprocess_image`` in a forked worker, with the models its parent loaded."""
    return preprocess_image(
        *member, _SHARED["out_dir"], _SHARED["preprocessor"], _SHARED["masker"], _SHARED["apply_mask"]
    )


def preprocess_members(
    members: Iterable[dict],
    out_dir: str | Path,
    preprocessor: FacePreprocessor,
    masker: Callable,
    apply_mask: Callable[[np.ndarray, np.ndarray], np.ndarray],
    workers: int = 1,
) -> pd.DataFrame:
    """Preprocess a shard's members (dicts with image_id, sheet, path) into a QC table.

    With ``workers`` > 1 the images are shared among that many processes forked
    after the models were loaded, so the models load once per job whatever the
    count (a small study's single shard can then use every core). Rows come
    back in the members' order either way, and each image's result does not
    depend on which process made it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = [(member["image_id"], member["sheet"], member["path"]) for member in members]
    workers = max(1, min(workers, len(work)))
    if workers == 1:
        return _collect(
            (preprocess_image(*member, out_dir, preprocessor, masker, apply_mask) for member in work),
            len(work),
        )
    _SHARED.update(out_dir=out_dir, preprocessor=preprocessor, masker=masker, apply_mask=apply_mask)
    try:
        # Every result is in (its files written) before the pool is left, which terminates it.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            # Small chunks keep every worker busy to the end; 4 at most saves round trips.
            chunksize = max(1, min(4, len(work) // (4 * workers)))
            return _collect(pool.imap(_preprocess_shared, work, chunksize=chunksize), len(work))
    finally:
        _SHARED.clear()


def _collect(rows: Iterable[dict], total: int) -> pd.DataFrame:
    """QC rows (made as they are consumed) as a table, logging progress (count, rate, ETA) every 25 images."""
    table = []
    started = time.perf_counter()
    for index, row in enumerate(rows, start=1):
        table.append(row)
        if index % 25 == 0 or index == total:
            elapsed = time.perf_counter() - started
            rate = index / elapsed if elapsed else float("inf")
            LOGGER.info("%d/%d images, %.1f img/s, ETA %.0f s", index, total, rate, (total - index) / rate)
    return pd.DataFrame(table, columns=QC_COLUMNS)


def summarize_qc(sheet_rows: pd.DataFrame, shard_tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One QC row per sheet row: shard results, and ``not_needed`` for pool rows never tried.

    Raises ``ValueError`` if a shard reports an image twice or an image that
    no sheet lists, so nothing can be double counted or lost.
    """
    done = pd.concat(shard_tables, ignore_index=True) if shard_tables else pd.DataFrame(columns=QC_COLUMNS)
    if done["image_id"].duplicated().any():
        raise ValueError(
            f"images preprocessed twice: {sorted(done.loc[done['image_id'].duplicated(), 'image_id'])[:5]}"
        )
    unknown = set(done["image_id"]) - set(sheet_rows["image_id"])
    if unknown:
        raise ValueError(f"QC rows for images in no sheet: {sorted(unknown)[:5]}")
    untried = sheet_rows.loc[~sheet_rows["image_id"].isin(done["image_id"])]
    not_cases = untried.loc[untried["sheet"] != "pool"]
    if not not_cases.empty:
        raise ValueError(f"case images without a QC row: {list(not_cases['image_id'])[:5]}")
    skipped = pd.DataFrame(
        [
            empty_qc_row(r.image_id, r.sheet, r.path, NOT_NEEDED, "not drawn as a control candidate")
            for r in untried.itertuples()
        ],
        columns=QC_COLUMNS,
    )
    table = pd.concat([done, skipped], ignore_index=True) if len(skipped) else done
    order = {image_id: position for position, image_id in enumerate(sheet_rows["image_id"])}
    table = table.assign(_order=table["image_id"].map(order)).sort_values("_order").drop(columns="_order")
    return table.reset_index(drop=True)


def contact_sheet_sample(qc: pd.DataFrame, size: int, seed: int) -> list[str]:
    """Masked chips of up to ``size`` ok images, a seeded sample in QC-table order."""
    from .runtime import make_rng

    ok = qc.loc[qc["status"] == OK, "masked_chip"].tolist()
    if not ok:
        return []
    chosen = make_rng(seed).choice(len(ok), size=min(len(ok), size), replace=False)
    return [ok[index] for index in sorted(chosen)]


def contact_sheet(paths: list[str], columns: int = 8, tile: int = 150) -> np.ndarray:
    """Tile chip PNGs (RGB) into one grid image; empty grey tile when none."""
    import cv2

    if not paths:
        return np.full((tile, tile, 3), 200, dtype=np.uint8)
    rows = math.ceil(len(paths) / columns)
    sheet = np.full((rows * tile, min(columns, len(paths)) * tile, 3), 255, dtype=np.uint8)
    for index, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        image = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (tile, tile))
        row, column = divmod(index, columns)
        sheet[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile] = image
    return sheet
