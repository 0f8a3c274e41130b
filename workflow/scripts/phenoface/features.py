"""Per-shard feature files (image_id, pooled, descriptor): merge and read.

NumPy only, so stages that read features without running the network (the
sex classifier, the control draw) need no Keras.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .errors import PhenofaceError


def merge_feature_tables(tables: Sequence[dict]) -> dict[str, np.ndarray]:
    """Concatenate per-shard feature arrays and sort the rows by image id.

    Each table holds ``image_id``, ``pooled`` and ``descriptor``; an image id
    present twice raises :class:`PhenofaceError`.
    """
    image_ids = np.concatenate([np.asarray(t["image_id"], dtype=str) for t in tables] or [np.zeros(0, str)])
    pooled = np.concatenate([t["pooled"] for t in tables] or [np.zeros((0, 256), np.float32)])
    descriptor = np.concatenate([t["descriptor"] for t in tables] or [np.zeros((0, 128), np.float32)])
    unique, counts = np.unique(image_ids, return_counts=True)
    if (counts > 1).any():
        raise PhenofaceError(
            f"image ids in several feature shards: {unique[counts > 1][:5].tolist()}; "
            "remove stale results/features shards and rerun"
        )
    order = np.argsort(image_ids, kind="stable")
    return {
        "image_id": image_ids[order],
        "pooled": pooled[order].astype(np.float32),
        "descriptor": descriptor[order].astype(np.float32),
    }


def read_feature_shards(paths: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Read per-shard feature files (``.npz``) and merge them with :func:`merge_feature_tables`."""
    tables = []
    for path in paths:
        with np.load(path, allow_pickle=False) as shard:
            tables.append({key: shard[key] for key in ("image_id", "pooled", "descriptor")})
    return merge_feature_tables(tables)
