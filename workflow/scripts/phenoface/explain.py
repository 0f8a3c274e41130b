"""The explain stage's analysis: guided Grad-CAM of held-out images, region shares and sanity checks.

Sanity checks after Adebayo et al. (2018): maps that survive randomising the
head (model randomisation) or retraining it on shuffled labels (data
randomisation) show the data and the backbone, not what the labels taught.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .cohort import GROUPS, case_labels
from .errors import PhenofaceError
from .gradcam import (
    MAP_COMPARISONS,
    explain_chips,
    guided_class_similarity,
    logit_model,
    randomization_similarity,
    randomize_head,
    region_labels,
    region_tests,
    sanity_warnings,
    select_images,
    share_table,
    with_head_weights,
)
from .model import FC1_LAYER, FC2_LAYER, HEAD_INPUT, train_head
from .qc import CHIP_COLUMNS, OK
from .runtime import make_rng
from .split import training_half

LOGGER = logging.getLogger(__name__)

#: Chips per group used for the (costlier) sanity checks.
SANITY_PER_GROUP = 16


def explained_rows(
    split: pd.DataFrame, qc: pd.DataFrame, max_images: int, source: str, seed: int, qc_path: str
) -> pd.DataFrame:
    """The held-out rows to explain, with their chip and landmark paths."""
    selected = select_images(split, max_images, seed)
    qc = qc.set_index("image_id")
    missing = selected.loc[~selected["image_id"].isin(qc.index), "image_id"]
    if len(missing):
        raise PhenofaceError(
            f"{qc_path}: {len(missing)} test images have no QC row (first: {missing.iloc[0]}); "
            "rerun the workflow from preprocessing"
        )
    rows = qc.loc[selected["image_id"]]
    not_ok = rows.index[rows["status"] != OK]
    if len(not_ok):
        raise PhenofaceError(
            f"{qc_path}: test image {not_ok[0]} is not ok in QC; rerun sample_matched_controls"
        )
    # features.input is an enum in the config schema.
    chip_paths = rows[CHIP_COLUMNS[source]].to_numpy()
    return selected.assign(chip_path=chip_paths, landmarks_path=rows["landmarks"].to_numpy())


def shuffled_label_model(model, split: pd.DataFrame, features_path: str, head_config, seed: int):
    """``model`` with its head retrained on the training half under shuffled labels.

    Adebayo et al.'s data-randomisation test: maps that survive it show the
    data and the backbone, not what the labels taught the head.
    """
    features, train = training_half(split, features_path, HEAD_INPUT)
    labels = make_rng(seed).permutation(case_labels(train["group"]))
    LOGGER.info("retraining the head on %d training images with shuffled labels", len(labels))
    head, _ = train_head(features, labels, head_config, seed)
    # The head's layers carry the same names inside the composed model.
    return with_head_weights(
        model, {layer.name: layer.get_weights() for layer in head.layers if layer.weights}
    )


def finite_summary(values: np.ndarray) -> dict:
    """n, median, min and max of the finite values (None when there are none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(finite),
        "median": float(np.median(finite)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def sanity_checks(
    model, logit, shuffled, chips: np.ndarray, groups: np.ndarray, layer: str, seed: int, batch_size: int
) -> dict:
    """Model- and data-randomisation and class-sensitivity checks on a few chips per group."""
    sample = np.concatenate([np.flatnonzero(groups == g)[:SANITY_PER_GROUP] for g in ("case", "control")])
    random_logit = logit_model(randomize_head(model, [FC1_LAYER, FC2_LAYER], seed))
    randomized = randomization_similarity(logit, random_logit, chips[sample], layer, batch_size)
    relabelled = randomization_similarity(logit, logit_model(shuffled), chips[sample], layer, batch_size)
    class_similarity = guided_class_similarity(logit, chips[sample], batch_size)
    return {
        "n_images": int(len(sample)),
        "randomized_head_spearman_abs": finite_summary(np.abs(randomized)),
        "shuffled_labels_spearman_abs": finite_summary(np.abs(relabelled)),
        "guided_case_vs_control_spearman": finite_summary(class_similarity),
    }


@dataclass
class Explanation:
    """Maps, region shares and sanity checks of the explained held-out images (rows in ``rows`` order)."""

    rows: pd.DataFrame
    chips: np.ndarray
    landmarks: np.ndarray
    logit_model: object
    result: dict
    probability: np.ndarray
    usable: np.ndarray
    shares: pd.DataFrame
    tests: pd.DataFrame
    counts: dict
    sanity: dict

    @property
    def groups(self) -> np.ndarray:
        return self.rows["group"].to_numpy()

    def arrays(self, layer: str) -> dict[str, np.ndarray]:
        """The arrays of ``gradcam.npz``; ``cam_lowres`` is the own-class map before upsampling."""
        signs = np.where(self.groups == "case", 1.0, -1.0)
        return {
            "image_id": self.rows["image_id"].to_numpy(dtype=str),
            "group": self.groups.astype(str),
            "logit": self.result["logit"].astype(np.float32),
            "probability": self.probability.astype(np.float32),
            "cam_lowres": np.maximum(self.result["cam_signed"] * signs[:, None, None], 0).astype(np.float32),
            "cam": self.result["cam"].astype(np.float16),
            "guided_gradcam": self.result["guided_gradcam"].astype(np.float16),
            "layer": np.array(layer),
        }


def explain_held_out(
    model,
    split: pd.DataFrame,
    rows: pd.DataFrame,
    chips: np.ndarray,
    landmarks: np.ndarray,
    features_path: str,
    *,
    layer: str,
    batch_size: int,
    source: str,
    head_config,
    seed: int,
) -> Explanation:
    """Explain ``rows`` (their chips and chip landmarks) and run the sanity checks."""
    groups = rows["group"].to_numpy()
    logit = logit_model(model)
    result = explain_chips(logit, chips, groups, layer, batch_size)
    probability = 1.0 / (1.0 + np.exp(-result["logit"].astype(np.float64)))

    maps = {name: result[name] for name in MAP_COMPARISONS}
    usable = result["cam"].reshape(len(rows), -1).max(axis=1) > 0
    labels = np.stack([region_labels(points) for points in landmarks])
    shares = share_table(rows, maps, labels)
    tests = region_tests(shares)
    counts = {group: int(((groups == group) & usable).sum()) for group in GROUPS}

    shuffled = shuffled_label_model(model, split, features_path, head_config, seed)
    sanity = sanity_checks(model, logit, shuffled, chips, groups, layer, seed, batch_size)
    degenerate = float(1.0 - usable.mean()) if len(usable) else 0.0
    sanity.update(
        layer=layer,
        n_explained=int(len(rows)),
        n_usable=counts,
        degenerate_fraction=degenerate,
        source=source,
        seed=seed,
        warnings=sanity_warnings(sanity, counts, degenerate, tests),
    )
    return Explanation(
        rows, chips, landmarks, logit, result, probability, usable, shares, tests, counts, sanity
    )
