"""The QC table accounts for every sheet row exactly once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenoface.preprocess import QC_COLUMNS, contact_sheet, empty_qc_row, summarize_qc


def sheet_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": ["c1", "c2", "p1", "p2", "p3"],
            "sheet": ["cases", "cases", "pool", "pool", "pool"],
            "path": [f"/x/{i}.jpg" for i in ("c1", "c2", "p1", "p2", "p3")],
        }
    )


def shard(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame([empty_qc_row(i, sheet, f"/x/{i}.jpg", status, "") for i, sheet, status in rows])


def test_untried_pool_rows_become_not_needed_in_sheet_order() -> None:
    """Pool rows no shard reported get status not_needed; order follows the sheets."""
    table = summarize_qc(
        sheet_rows(),
        [shard(("c2", "cases", "ok"), ("p2", "pool", "no_face")), shard(("c1", "cases", "unreadable"))],
    )
    assert list(table["image_id"]) == ["c1", "c2", "p1", "p2", "p3"]
    assert list(table["status"]) == ["unreadable", "ok", "not_needed", "no_face", "not_needed"]
    assert list(table.columns) == QC_COLUMNS


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([shard(("c1", "cases", "ok"), ("c2", "cases", "ok")), shard(("c1", "cases", "ok"))], "twice"),
        ([shard(("c1", "cases", "ok"), ("c2", "cases", "ok"), ("zz", "pool", "ok"))], "no sheet"),
        ([shard(("c1", "cases", "ok"))], "case images without a QC row"),
    ],
)
def test_inconsistent_shards_are_refused(shards: list[pd.DataFrame], message: str) -> None:
    """Double-counted, unknown or missing case rows raise instead of being silently fixed."""
    with pytest.raises(ValueError, match=message):
        summarize_qc(sheet_rows(), shards)


def test_contact_sheet_tiles(tmp_path) -> None:
    """Ten chips tile into two rows of eight 150 px tiles; none gives a grey placeholder."""
    from phenoface.io import write_png

    paths = []
    for index in range(10):
        path = tmp_path / f"{index}.png"
        write_png(path, np.full((150, 150, 3), index * 20, dtype=np.uint8))
        paths.append(str(path))
    sheet = contact_sheet(paths)
    assert sheet.shape == (300, 1200, 3)
    assert sheet[0, 150, 0] == 20 and sheet[150, 150, 0] == 180 and sheet[299, 1199, 0] == 255
    assert contact_sheet([]).shape == (150, 150, 3)


def test_forked_workers_give_the_sequential_table_and_files(
    tmp_path, faces_dir, edge_cases_dir, repo_root
) -> None:
    """A shard split over 2 forked workers yields the same rows, in order, and byte-identical chips."""
    from phenoface.faces import FacePreprocessor
    from phenoface.masks import FaceMasker, apply_mask
    from phenoface.models import dlib_model_path, ensure_mediapipe_models
    from phenoface.preprocess import preprocess_members

    paths = sorted(faces_dir.glob("dev_*.jpg"))[:3] + [edge_cases_dir / "truncated_face.jpg"]
    members = [{"image_id": f"img{i}", "sheet": "cases", "path": str(p)} for i, p in enumerate(paths)]
    preprocessor = FacePreprocessor(dlib_model_path("landmarks"))
    masker = FaceMasker("face_mesh", ensure_mediapipe_models(repo_root / "resources")["face_landmark"].parent)
    tables = {
        workers: preprocess_members(
            members, tmp_path / str(workers), preprocessor, masker, apply_mask, workers=workers
        )
        for workers in (1, 2)
    }
    one, two = (
        tables[w].drop(columns=["seconds", "chip", "mask", "masked_chip", "landmarks"]) for w in (1, 2)
    )
    pd.testing.assert_frame_equal(one, two)
    assert list(two["image_id"]) == [m["image_id"] for m in members]
    assert list(two["status"]).count("ok") == 3 and two["status"].iloc[-1] == "unreadable"
    for name in sorted(p.name for p in (tmp_path / "1").iterdir()):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
