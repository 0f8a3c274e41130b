"""Baselines and shortcut audits that say what the classifier's AUC is worth.

On the same train/test split as the classifier:

* ``descriptor``: logistic regression on the 128-d dlib face descriptor
  (a strong face-only reference the deep head should at least match);
* ``age_sex``: logistic regression on age and sex only; near 0.5 when the
  case/control matching worked, otherwise residual imbalance;
* ``image_statistics``: logistic regression on how the picture was taken
  (resolution, JPEG quality, brightness, contrast, saturation, sharpness,
  colour of the background that the mask removed). A high AUC means the
  groups differ by acquisition, and any face model may learn that shortcut;
* ``reference_sheet`` (optional): the trained model scores a second
  healthy sheet against the held-out pool controls; two healthy sources
  should be inseparable.

Also the repeat-training loop (split and train again with derived seeds)
and external scoring. Model-specific calls (split, train, predict) are
passed in as functions so this module needs no Keras.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .cohort import case_labels
from .errors import PhenofaceError
from .stats import AucResult, auc_delong, classification_summary, summarise_repeats

LOGGER = logging.getLogger(__name__)

#: The IJG (libjpeg) standard luminance quantisation table, natural order;
#: quality Q scales it (jcparam.c), which lets us invert a file's table to Q.
IJG_LUMINANCE = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=float,
)  # fmt: skip

#: Columns of the image-statistics baseline (see :func:`image_statistics`).
IMAGE_STAT_FEATURES = [
    "width",
    "height",
    "jpeg_quality",
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "background_r_mean",
    "background_g_mean",
    "background_b_mean",
    "background_r_std",
    "background_g_std",
    "background_b_std",
]

#: Columns of the baselines table.
BASELINE_COLUMNS = [
    "baseline",
    "status",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "auc_se",
    "n_train",
    "n_test",
    "n_features",
    "description",
]

BASELINE_DESCRIPTIONS = {
    "descriptor": "logistic regression on the standardised 128-d dlib face descriptor",
    "age_sex": "logistic regression on the matched variables only (age continuous; sex when matched)",
    "image_statistics": "logistic regression on image acquisition statistics (no face content)",
    "reference_sheet": "trained model: second healthy sheet (positive) vs held-out pool controls",
}


def _ijg_table(quality: int) -> np.ndarray:
    """The IJG luminance table libjpeg writes at ``quality`` (1-100)."""
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return np.clip(np.floor((IJG_LUMINANCE * scale + 50.0) / 100.0), 1, 255)


def jpeg_quality_from_table(table: Sequence[int]) -> float:
    """Estimate the IJG quality (1-100) that produced a luminance table.

    The closest IJG-scaled table wins (sum of absolute differences). Both
    tables are compared sorted: the scaling is monotone, so this does not
    depend on whether the table is stored in zigzag or natural order.
    Camera tables that are not IJG-scaled get the nearest equivalent.
    """
    values = np.sort(np.asarray(table, dtype=float).ravel())
    if values.size != 64:
        return math.nan
    errors = [np.abs(np.sort(_ijg_table(q)) - values).sum() for q in range(1, 101)]
    return float(int(np.argmin(errors)) + 1)


def jpeg_quality(image: Image.Image) -> float:
    """Quality estimate of an opened JPEG, MPO included (NaN for other formats)."""
    # Only JPEG data carries quantisation tables; Pillow opens many phone photos saved as .jpg
    # as MPO (a JPEG followed by a preview or depth picture), so the format name is not checked.
    tables = getattr(image, "quantization", None)
    if not tables:
        return math.nan
    return jpeg_quality_from_table(tables[min(tables)])


def _read_rgb(path: str | Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def image_statistics(
    original_path: str | Path, chip_path: str | Path, mask_path: str | Path | None
) -> dict[str, float]:
    """Acquisition statistics of one image, blind to the face itself.

    Parameters
    ----------
    original_path : path
        The image as supplied: width, height, JPEG quality.
    chip_path : path
        The aligned, unmasked chip: brightness (mean grey), contrast (SD of
        grey), saturation (mean HSV saturation), sharpness (variance of the
        Laplacian). Measured on the chip so that every image has the same
        size and framing.
    mask_path : path or None
        Face mask of the chip (non-zero = face). Mean and SD of each RGB
        channel over the chip pixels the mask removed; NaN without a mask
        or without background pixels.

    Returns
    -------
    dict
        Keys :data:`IMAGE_STAT_FEATURES`, values float (NaN when unknown).
    """
    import cv2

    stats: dict[str, float] = dict.fromkeys(IMAGE_STAT_FEATURES, math.nan)
    with Image.open(original_path) as original:
        stats["width"], stats["height"] = (float(v) for v in original.size)
        stats["jpeg_quality"] = jpeg_quality(original)

    chip = _read_rgb(chip_path)
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY).astype(float)
    stats["brightness"] = float(grey.mean())
    stats["contrast"] = float(grey.std())
    stats["saturation"] = float(cv2.cvtColor(chip, cv2.COLOR_RGB2HSV)[..., 1].mean())
    stats["sharpness"] = float(cv2.Laplacian(grey, cv2.CV_64F).var())

    if mask_path is not None and str(mask_path) not in ("", "nan") and Path(mask_path).is_file():
        with Image.open(mask_path) as mask_image:
            mask = np.asarray(mask_image.convert("L"))
        if mask.shape != chip.shape[:2]:
            raise PhenofaceError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but chip {chip_path} is "
                f"{chip.shape[1]}x{chip.shape[0]}; re-run preprocessing for this image."
            )
        background = chip[mask == 0].astype(float)
        if background.size:
            for channel, name in enumerate("rgb"):
                stats[f"background_{name}_mean"] = float(background[:, channel].mean())
                stats[f"background_{name}_std"] = float(background[:, channel].std())
    return stats


def collect_image_statistics(images: pd.DataFrame) -> pd.DataFrame:
    """:func:`image_statistics` for every row of a QC table.

    Parameters
    ----------
    images : pandas.DataFrame
        Columns ``image_id``, ``path`` (original), ``chip``, ``mask``.

    Returns
    -------
    pandas.DataFrame
        ``image_id`` plus :data:`IMAGE_STAT_FEATURES`, same row order.
    """
    missing = {"image_id", "path", "chip", "mask"} - set(images.columns)
    if missing:
        raise PhenofaceError(
            f"QC table lacks column(s) {sorted(missing)}; the image-statistics audit needs "
            "image_id, path, chip and mask (results/qc/preprocess.tsv)."
        )
    rows = []
    start = time.monotonic()
    for position, record in enumerate(images.itertuples(index=False), start=1):
        for column in ("path", "chip"):
            if not Path(str(getattr(record, column))).is_file():
                raise PhenofaceError(
                    f"image {record.image_id}: {column} file {getattr(record, column)} not found; "
                    "re-run preprocessing (results/qc/preprocess.tsv is out of date)."
                )
        mask = record.mask if isinstance(record.mask, str) and record.mask else None
        rows.append({"image_id": record.image_id, **image_statistics(record.path, record.chip, mask)})
        if position % 200 == 0 or position == len(images):
            rate = position / max(time.monotonic() - start, 1e-9)
            LOGGER.info(
                "image statistics: %d/%d images (%.0f/s, ETA %.0f s)",
                position,
                len(images),
                rate,
                (len(images) - position) / rate,
            )
    return pd.DataFrame(rows, columns=["image_id", *IMAGE_STAT_FEATURES])


def fit_predict_logistic(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int
) -> np.ndarray:
    """Case probability of each test row from a standardised logistic regression.

    Missing values are imputed with the training median and flagged by an
    indicator column (``SimpleImputer(add_indicator=True)``).
    """
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=5000, random_state=seed),
    )
    model.fit(np.asarray(train_x, dtype=float), np.asarray(train_y, dtype=int))
    return model.predict_proba(np.asarray(test_x, dtype=float))[:, 1]


def age_sex_matrix(table: pd.DataFrame, variables: tuple[str, ...] = ("age", "sex")) -> np.ndarray:
    """Columns for the matched variables: age (years) and/or sex (M = 1, F = 0, unknown 0.5).

    Only the variables the cohort was matched on belong here: a variable that
    was not matched (sex when matching on age only) may be the phenotype itself.
    An empty sex (a control in a bin matched on age alone because the pool had
    no sex there) is coded halfway: as missing, its imputation indicator would
    flag those controls and turn the baseline into a detector of missing labels.
    """
    columns = {
        "age": lambda: pd.to_numeric(table["age"], errors="coerce").to_numpy(float),
        "sex": lambda: (
            table["sex"].fillna("").astype(str).str.upper().map({"M": 1.0, "F": 0.0, "": 0.5}).to_numpy(float)
        ),
    }
    unknown = [v for v in variables if v not in columns]
    if unknown or not variables:
        raise ValueError(f"variables must be a non-empty subset of age, sex; got {variables}")
    return np.column_stack([columns[v]() for v in variables])


def _baseline_row(
    name: str, result: AucResult | None, n_train: int, n_test: int, n_features: int, status: str
) -> dict:
    """One row of the baselines table."""
    values = (
        result.as_dict("auc")
        if result is not None
        else dict.fromkeys(["auc", "auc_ci_low", "auc_ci_high", "auc_se"], math.nan)
    )
    return {
        "baseline": name,
        "status": status,
        **values,
        "n_train": n_train,
        "n_test": n_test,
        "n_features": n_features,
        "description": BASELINE_DESCRIPTIONS[name],
    }


def run_baselines(
    split_table: pd.DataFrame,
    descriptors: np.ndarray,
    image_stats: pd.DataFrame,
    seed: int,
    confidence: float = 0.95,
    matched: tuple[str, ...] = ("age", "sex"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit the three data baselines on the train split, score the test split.

    Parameters
    ----------
    split_table : pandas.DataFrame
        ``image_id``, ``group``, ``age``, ``sex``, ``split`` (train|test).
    descriptors : ndarray, shape (n, 128)
        dlib descriptors aligned with ``split_table`` rows.
    image_stats : pandas.DataFrame
        ``image_id`` plus :data:`IMAGE_STAT_FEATURES` for (at least) every
        image in ``split_table``.
    seed : int
        Seed for the solvers.
    confidence : float
        Level of the DeLong intervals.
    matched : tuple of str
        The variables the cohort was matched on (``sampling.match_on``): the
        ``age_sex`` baseline uses only these.

    Returns
    -------
    baselines : pandas.DataFrame
        Columns :data:`BASELINE_COLUMNS`, one row per baseline.
    predictions : pandas.DataFrame
        Test rows: ``image_id``, ``y_true`` and one probability column per
        baseline.
    """
    if len(descriptors) != len(split_table):
        raise ValueError("descriptors must be aligned with split_table rows")
    stats_by_id = image_stats.set_index("image_id")
    absent = sorted(set(split_table["image_id"]) - set(stats_by_id.index))
    if absent:
        raise PhenofaceError(
            f"{len(absent)} cohort image(s) have no image statistics (first: {absent[0]}); "
            "the QC table and the split table disagree: re-run preprocessing and the split."
        )
    labels = case_labels(split_table["group"])
    train = (split_table["split"] == "train").to_numpy()
    test = (split_table["split"] == "test").to_numpy()
    if not train.any() or not test.any():
        raise PhenofaceError("the split table needs both train and test rows for the baselines.")
    for part, mask in (("train", train), ("test", test)):
        if np.unique(labels[mask]).size < 2:
            raise PhenofaceError(f"the {part} split holds one group only; baselines need cases and controls.")
    inputs = {
        "descriptor": np.asarray(descriptors, dtype=float),
        "age_sex": age_sex_matrix(split_table, tuple(matched)),
        "image_statistics": stats_by_id.loc[split_table["image_id"], IMAGE_STAT_FEATURES].to_numpy(float),
    }
    rows = []
    predictions = pd.DataFrame({"image_id": split_table["image_id"].to_numpy()[test], "y_true": labels[test]})
    for name, matrix in inputs.items():
        probs = fit_predict_logistic(matrix[train], labels[train], matrix[test], seed)
        result = auc_delong(labels[test], probs, confidence)
        LOGGER.info("baseline %s: %s", name, result.label(confidence))
        rows.append(_baseline_row(name, result, int(train.sum()), int(test.sum()), matrix.shape[1], "ok"))
        predictions[name] = probs
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS), predictions


def reference_separation(
    control_probs: Sequence[float], reference_probs: Sequence[float], confidence: float = 0.95
) -> AucResult:
    """How well model scores separate a second healthy sheet from pool controls.

    The reference images are the positives. Use held-out (test) controls:
    training controls were fitted towards 0 and would inflate the AUC.
    """
    control = np.asarray(control_probs, dtype=float)
    reference = np.asarray(reference_probs, dtype=float)
    labels = np.concatenate([np.zeros(control.size, int), np.ones(reference.size, int)])
    return auc_delong(labels, np.concatenate([control, reference]), confidence)


def reference_row(result: AucResult | None, n_reference: int, n_control: int) -> dict:
    """The ``reference_sheet`` row of the baselines table (``skipped`` when None)."""
    if result is None:
        return _baseline_row(
            "reference_sheet", None, 0, 0, 0, "skipped: audit.reference_sheet not configured"
        )
    return _baseline_row("reference_sheet", result, 0, n_reference + n_control, 0, "ok")


def baseline_warnings(
    baselines: pd.DataFrame,
    warn_auc: float = 0.7,
    age_sex_range: tuple[float, float] = (0.40, 0.60),
) -> list[str]:
    """Sentences for metrics.json's ``warnings`` when an audit fails.

    * ``image_statistics`` AUC above ``warn_auc``: acquisition shortcut;
    * ``reference_sheet`` separation (``max(auc, 1 - auc)``) above ``warn_auc``;
    * ``age_sex`` AUC outside ``age_sex_range``: residual age/sex imbalance.
    """
    by_name = {row["baseline"]: row for row in baselines.to_dict("records") if row.get("status") == "ok"}
    warnings: list[str] = []

    def interval(row: dict) -> str:
        return f"AUC {row['auc']:.2f} (95% CI {row['auc_ci_low']:.2f}-{row['auc_ci_high']:.2f})"

    image = by_name.get("image_statistics")
    if image is not None and math.isfinite(image["auc"]) and image["auc"] > warn_auc:
        warnings.append(
            f"Image-statistics baseline reaches {interval(image)}, above {warn_auc:.2f}: cases and controls "
            "differ in how the photos were taken (resolution, compression, lighting, background), so the "
            "classifier's AUC may reflect acquisition rather than faces."
        )
    reference = by_name.get("reference_sheet")
    if reference is not None and math.isfinite(reference["auc"]):
        separation = max(reference["auc"], 1 - reference["auc"])
        if separation > warn_auc:
            warnings.append(
                f"The model separates the second healthy reference sheet from the pool controls with "
                f"{interval(reference)} (separation {separation:.2f} > {warn_auc:.2f}): it responds to the "
                "image source, not only to disease."
            )
    age_sex = by_name.get("age_sex")
    low, high = age_sex_range
    if age_sex is not None and math.isfinite(age_sex["auc"]) and not low <= age_sex["auc"] <= high:
        warnings.append(
            f"Age+sex baseline gives {interval(age_sex)}, outside {low:.2f}-{high:.2f}: residual age/sex "
            "imbalance between cases and controls in the test split; the matching did not fully work."
        )
    return warnings


def score_external(
    head_model,
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    predict: Callable | None = None,
    threshold: float = 0.5,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Score an external labelled set with the trained head.

    Parameters
    ----------
    head_model : keras.Model
        The trained head (``results/training/head.keras``).
    features : ndarray, shape (n, d)
        The model's input features for the external images (same kind as
        training, e.g. ``pooled`` from the pipeline's feature step).
    labels : array of {0, 1}
        1 = case, 0 = control.
    predict : callable, optional
        ``predict(model, features) -> probabilities``; defaults to
        ``phenoface.model.predict_head``.

    Returns
    -------
    dict
        :func:`phenoface.stats.classification_summary` of the external set.
    """
    if predict is None:
        from .model import predict_head as predict
    probs = np.asarray(predict(head_model, np.asarray(features)), dtype=float).ravel()
    # No int cast here: it would turn a wrong label such as 0.5 into 0 silently; the summary validates.
    return classification_summary(np.asarray(labels), probs, threshold, confidence)


def run_repeats(
    cohort: pd.DataFrame,
    features: np.ndarray,
    seeds: Sequence[int],
    split: Callable[[pd.DataFrame, int], pd.DataFrame],
    train: Callable[[np.ndarray, np.ndarray, int], object],
    predict: Callable[[object, np.ndarray], np.ndarray],
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Split, train and test again once per seed; the spread of the test AUC.

    Parameters
    ----------
    cohort : pandas.DataFrame
        The matched cohort with ``image_id`` and ``group``.
    features : ndarray
        Model input features aligned with ``cohort`` rows.
    seeds : sequence of int
        One seed per repeat (:func:`phenoface.stats.derive_seeds`).
    split : callable
        ``split(cohort, seed) -> cohort`` with a ``split`` column (train|test)
        in the same row order.
    train, predict : callables
        ``train(features, labels, seed) -> model`` and
        ``predict(model, features) -> probabilities``.

    Returns
    -------
    table : pandas.DataFrame
        One row per repeat: ``repeat``, ``seed``, ``n_train``, ``n_test``,
        ``auc``, ``auc_ci_low``, ``auc_ci_high``, ``accuracy``.
    summary : dict
        :func:`phenoface.stats.summarise_repeats` of the AUCs.
    """
    rows = []
    for repeat, seed in enumerate(seeds, start=1):
        start = time.monotonic()
        split_table = split(cohort, int(seed))
        if list(split_table["image_id"]) != list(cohort["image_id"]):
            split_table = split_table.set_index("image_id").loc[cohort["image_id"]].reset_index()
        labels = case_labels(split_table["group"])
        train_mask = (split_table["split"] == "train").to_numpy()
        test_mask = (split_table["split"] == "test").to_numpy()
        model = train(features[train_mask], labels[train_mask], int(seed))
        probs = np.asarray(predict(model, features[test_mask]), dtype=float).ravel()
        summary = classification_summary(labels[test_mask], probs, confidence=confidence)
        rows.append(
            {
                "repeat": repeat,
                "seed": int(seed),
                "n_train": int(train_mask.sum()),
                "n_test": int(test_mask.sum()),
                "auc": summary["auc"],
                "auc_ci_low": summary["auc_ci_low"],
                "auc_ci_high": summary["auc_ci_high"],
                "accuracy": summary["accuracy"],
            }
        )
        LOGGER.info(
            "repeat %d/%d (seed %d): AUC %.3f, %.1f s",
            repeat,
            len(seeds),
            seed,
            summary["auc"],
            time.monotonic() - start,
        )
    table = pd.DataFrame(
        rows, columns=["repeat", "seed", "n_train", "n_test", "auc", "auc_ci_low", "auc_ci_high", "accuracy"]
    )
    return table, summarise_repeats(table["auc"].tolist())
