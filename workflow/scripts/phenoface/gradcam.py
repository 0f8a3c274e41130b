"""Guided Grad-CAM for the composed phenoface model, with checks on the maps.

Grad-CAM (Selvaraju et al. 2017) weighs the channels of one block of the
frozen ResNet by the spatial mean of the gradient of a class score and keeps
the positive part of the weighted sum: where evidence *for* the class lies.
Guided Grad-CAM multiplies that coarse map with guided backpropagation
(Springenberg et al. 2015), as in the paper's Figure 5.

The class score is the head's logit (not the sigmoid probability, whose
gradient vanishes for confident predictions): ``+logit`` for "case",
``-logit`` for "control". Because the score is linear in the logit, the
signed Grad-CAM sum for "control" is exactly minus the one for "case", so one
backward pass serves both classes; guided backpropagation is not linear in
the score's sign and needs a pass per class.

What the maps can show is limited, and :func:`randomization_similarity` and
:func:`guided_class_similarity` measure how far (Adebayo et al. 2018): a map
that hardly changes when the trained head is replaced by a random one shows
what the backbone sees, not what separates the groups.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import cv2
import keras
import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from . import landmarks as lm
from .backbone import CHIP_SIZE, INPUT_NAME, gradients
from .errors import PhenofaceError
from .stats import bh_qvalues

__all__ = [
    "CLASS_SIGNS",
    "LOGIT_LAYER",
    "MAP_COMPARISONS",
    "REGIONS",
    "class_cams",
    "example_indices",
    "explain_chips",
    "guided_class_similarity",
    "logit_model",
    "mean_maps",
    "randomize_head",
    "randomization_similarity",
    "region_labels",
    "region_shares",
    "region_tests",
    "sanity_warnings",
    "select_images",
    "share_table",
    "upsample_maps",
    "with_head_weights",
]

LOGGER = logging.getLogger(__name__)

LOGIT_LAYER = "logit"
#: Sign of the logit that scores each class.
CLASS_SIGNS = {"case": 1.0, "control": -1.0}
#: Maps whose region shares are compared between cases and controls, and what each comparison is.
#: ``cam``/``guided_gradcam``: each image's own-class map (the paper's Figure 5: case evidence on
#: cases against control evidence on controls); ``cam_case``: case evidence on every image.
MAP_COMPARISONS = {
    "cam": "own class",
    "guided_gradcam": "own class",
    "cam_case": "case evidence, both groups",
}
#: Median |Spearman| between trained- and random-head maps above which the maps are flagged.
RANDOMIZATION_WARN = 0.5
#: Share of explained images without own-class evidence above which a warning is raised.
DEGENERATE_WARN = 0.2
#: Images per group below which region tests are flagged as underpowered.
MIN_PER_GROUP = 10
#: Attribution share outside the face, relative to that region's area, above which a warning is raised.
OFF_FACE_RATIO = 1.5
#: Facial regions, in the priority order used where their outlines overlap.
REGIONS = ("eyes", "brows", "nose", "mouth", "forehead", "skin", "other")

#: Forehead height as a fraction of the nose length (points 27 to 33).
_FOREHEAD_FRACTION = 0.6


def logit_score(outputs):
    """Each chip's score to explain: its case logit (the class sign enters as a chip weight)."""
    return outputs[:, 0]


def logit_model(model: keras.Model) -> keras.Model:
    """The composed model with its output sigmoid removed.

    Parameters
    ----------
    model : keras.Model
        ``chips -> probability of case`` from :func:`phenoface.model.compose_model`;
        its last layer is a one-unit sigmoid ``Dense``.

    Returns
    -------
    keras.Model
        ``chips -> logit of case`` (output layer named :data:`LOGIT_LAYER`)
        sharing every other layer, and so every weight, with ``model``.
    """
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense) or last.units != 1:
        raise PhenofaceError(
            f"model {model.name!r} does not end in a one-unit Dense layer; "
            "explain_classifier needs the model.keras written by train_classifier"
        )
    linear = keras.layers.Dense(1, activation=None, use_bias=last.use_bias, name=LOGIT_LAYER)
    # Rebuild the graph reusing every layer but the last (the layers were
    # called in more than one graph, so their ``input`` is ambiguous).
    rebuilt = keras.models.clone_model(model, clone_function=lambda layer: linear if layer is last else layer)
    linear.set_weights(last.get_weights())
    return keras.Model(rebuilt.inputs, rebuilt.outputs, name=f"{model.name}_logit")


def with_head_weights(model: keras.Model, weights: Mapping[str, list[np.ndarray]]) -> keras.Model:
    """A copy of ``model`` in which the named layers get the given weights.

    The copy shares no variables with ``model``; every other layer keeps
    ``model``'s weights.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for name, layer_weights in weights.items():
        clone.get_layer(name).set_weights(layer_weights)
    return clone


def randomize_head(model: keras.Model, head_layers: Sequence[str], seed: int) -> keras.Model:
    """A copy of ``model`` whose ``head_layers`` get fresh random weights.

    The backbone and the standardisation statistics are kept; each listed
    layer's kernel is redrawn Glorot-uniform and its bias set to zero, as
    Keras initialises an untrained head. This is the model-randomisation test
    of Adebayo et al. (2018).
    """
    rng = np.random.default_rng(seed)
    fresh = {}
    for name in head_layers:
        fresh[name] = [
            rng.uniform(-np.sqrt(6.0 / sum(w.shape)), np.sqrt(6.0 / sum(w.shape)), w.shape).astype(w.dtype)
            if w.ndim == 2
            else np.zeros_like(w)
            for w in model.get_layer(name).get_weights()
        ]
    return with_head_weights(model, fresh)


def class_cams(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Signed Grad-CAM sums ``sum_c mean_hw(dS/dA_c) * A_c``.

    Parameters
    ----------
    activations, grads : ndarray of shape (N, h, w, C)
        A block's activations and the gradient of the case score w.r.t. them.

    Returns
    -------
    ndarray of shape (N, h, w)
        Float32. The case map is ``max(sum, 0)``, the control map ``max(-sum, 0)``.
    """
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return (weights * activations).sum(axis=-1).astype(np.float32)


def upsample_maps(maps: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Resize ``(N, h, w)`` maps to ``(N, size, size)`` bilinearly (pixel centres aligned)."""
    resized = np.zeros((len(maps), size, size), np.float32)
    for index, single in enumerate(maps):
        resized[index] = cv2.resize(single.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return resized


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each non-negative map to a maximum of 1 (all-zero maps stay zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0)
    scale = np.where(peak > 0, peak, 1.0).reshape(-1, *([1] * (maps.ndim - 1)))
    return (maps / scale).astype(np.float32)


def _guided_gradients(model, batch: np.ndarray, chip_weights: np.ndarray) -> dict:
    """Guided-backprop gradients of the logit for ``batch``, each chip's weighted by its sign."""
    return gradients(
        model,
        batch,
        [INPUT_NAME],
        output=LOGIT_LAYER,
        target=logit_score,
        guided=True,
        chip_weights=chip_weights,
    )


def explain_chips(
    model: keras.Model,
    chips: np.ndarray,
    groups: Sequence[str],
    layer: str,
    batch_size: int = 32,
    keep_guided: bool = False,
) -> dict[str, np.ndarray]:
    """Guided Grad-CAM of each chip for the class of its own group.

    Parameters
    ----------
    model : keras.Model
        From :func:`logit_model`.
    chips : ndarray of shape (N, 150, 150, 3)
        Chips as the model was trained on them (masked or not).
    groups : sequence of {"case", "control"}
        The class explained for each chip.
    layer : str
        Block whose activations Grad-CAM weighs (e.g. ``level2_block3``).
    batch_size : int
        Chips per forward/backward pass.
    keep_guided : bool
        Also return the colour guided-backpropagation gradients (0.27 MB a
        chip: only for the few chips drawn as examples).

    Returns
    -------
    dict
        ``logit`` (N,), ``cam_signed`` (N, h, w) signed case sums,
        ``cam`` (N, 150, 150) the own-class Grad-CAM scaled to a maximum of 1,
        ``cam_case`` (N, 150, 150) the case-class Grad-CAM, likewise scaled,
        ``guided_gradcam`` (N, 150, 150) the L2 norm over colour of guided
        backpropagation of the own-class score times ``cam``, scaled to a
        maximum of 1, and with ``keep_guided`` ``guided`` (N, 150, 150, 3).
    """
    groups = list(groups)
    unknown = sorted(set(groups) - set(CLASS_SIGNS))
    if unknown:
        raise PhenofaceError(f"cannot explain groups {unknown}; groups must be case or control")
    try:
        model.get_layer(layer)
    except ValueError:
        raise PhenofaceError(
            f"explain.layer is {layer!r}, which is not a layer of the model; use a block name "
            "such as level2_block3 (see phenoface.backbone.BLOCK_NAMES)"
        ) from None
    signs = np.array([CLASS_SIGNS[g] for g in groups], np.float32)
    keys = ["logit", "cam_signed", "cam", "cam_case", "guided_gradcam"] + (["guided"] if keep_guided else [])
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for start in range(0, len(chips), batch_size):
        batch = chips[start : start + batch_size]
        batch_signs = signs[start : start + batch_size]
        probed = gradients(model, batch, [layer, LOGIT_LAYER], output=LOGIT_LAYER, target=logit_score)
        signed = class_cams(*probed[layer])
        cam = _normalise(upsample_maps(np.maximum(signed * batch_signs[:, None, None], 0.0)))
        guided = _guided_gradients(model, batch, batch_signs)[INPUT_NAME][1]
        parts["logit"].append(probed[LOGIT_LAYER][0][:, 0])
        parts["cam_signed"].append(signed)
        parts["cam"].append(cam)
        parts["cam_case"].append(_normalise(upsample_maps(np.maximum(signed, 0.0))))
        parts["guided_gradcam"].append(_normalise(np.sqrt((guided**2).sum(axis=-1)) * cam))
        if keep_guided:
            parts["guided"].append(guided)
        LOGGER.info("explained %d/%d chips", min(start + batch_size, len(chips)), len(chips))
    if not len(chips):
        empty = {"logit": (0,), "cam_signed": (0, 1, 1), "guided": (0, CHIP_SIZE, CHIP_SIZE, 3)}
        return {key: np.zeros(empty.get(key, (0, CHIP_SIZE, CHIP_SIZE)), np.float32) for key in keys}
    return {key: np.concatenate(value) for key, value in parts.items()}


def select_images(table: pd.DataFrame, max_images: int, seed: int) -> pd.DataFrame:
    """Up to ``max_images`` held-out images per group, a seeded random sample.

    Parameters
    ----------
    table : pandas.DataFrame
        The split table (image_id, group, split, ...).
    max_images : int
        Per group; 0 keeps every test image.
    seed : int
        Seed of the sample.

    Returns
    -------
    pandas.DataFrame
        Test rows, cases first then controls, each sorted by image id.
    """
    test = table[table["split"] == "test"]
    if test.empty:
        raise PhenofaceError("the split has no test images to explain; check results/split/cohort_split.csv")
    rng = np.random.default_rng(seed)
    chosen = []
    for group in ("case", "control"):
        rows = test[test["group"] == group].sort_values("image_id")
        if max_images and len(rows) > max_images:
            rows = rows.iloc[np.sort(rng.choice(len(rows), max_images, replace=False))]
        chosen.append(rows)
    return pd.concat(chosen, ignore_index=True)


def region_labels(landmarks: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Label each chip pixel with a facial region from its 68 landmarks.

    Regions (:data:`REGIONS`, index = label): eyes (outlines dilated by 2 px),
    brows (5 px wide lines), nose (hull of 27-35), mouth (hull of 48-59),
    forehead (the band above the brows, 0.6 nose lengths high), skin (the
    rest of the hull of jaw and brows) and other (hair, background, neck).
    Where outlines overlap the earlier region wins.

    Parameters
    ----------
    landmarks : ndarray of shape (68, 2)
        ``(x, y)`` in chip pixels.

    Returns
    -------
    ndarray of shape (size, size)
        uint8 labels into :data:`REGIONS`.
    """
    points = np.asarray(landmarks, np.float64)
    if points.shape != (lm.N_LANDMARKS, 2) or not np.isfinite(points).all():
        raise PhenofaceError(f"landmarks must be 68 finite (x, y) points, got shape {points.shape}")

    def as_int(indices) -> np.ndarray:
        return np.round(points[indices]).astype(np.int32)

    masks = {name: np.zeros((size, size), np.uint8) for name in REGIONS}
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        cv2.fillPoly(masks["eyes"], [as_int(list(eye))], 1)
    masks["eyes"] = cv2.dilate(masks["eyes"], np.ones((5, 5), np.uint8))
    for brow in (lm.RIGHT_BROW, lm.LEFT_BROW):
        cv2.polylines(masks["brows"], [as_int(list(brow))], False, 1, thickness=5)
    cv2.fillConvexPoly(masks["nose"], cv2.convexHull(as_int(list(lm.NOSE))), 1)
    cv2.fillConvexPoly(masks["mouth"], cv2.convexHull(as_int(list(lm.OUTER_MOUTH))), 1)
    brows = lm.points(points, lm.BROWS)
    lift = _FOREHEAD_FRACTION * np.linalg.norm(points[33] - points[27])
    band = np.concatenate([brows, (brows - [0.0, lift])[::-1]])
    cv2.fillPoly(masks["forehead"], [np.round(band).astype(np.int32)], 1)
    cv2.fillConvexPoly(masks["skin"], cv2.convexHull(as_int([*lm.JAW, *lm.BROWS])), 1)
    labels = np.full((size, size), REGIONS.index("other"), np.uint8)
    for index in reversed(range(len(REGIONS) - 1)):
        labels[masks[REGIONS[index]] > 0] = index
    return labels


def region_shares(maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of each map's total mass in each region.

    Parameters
    ----------
    maps : ndarray of shape (N, H, W)
        Non-negative maps.
    labels : ndarray of shape (N, H, W)
        From :func:`region_labels`.

    Returns
    -------
    ndarray of shape (N, len(REGIONS))
        Rows sum to 1; NaN for an all-zero map.
    """
    n_regions = len(REGIONS)
    flat_labels = labels.reshape(len(labels), -1).astype(np.int64)
    flat_maps = maps.reshape(len(maps), -1).astype(np.float64)
    offsets = (np.arange(len(maps)) * n_regions)[:, None]
    sums = np.bincount((flat_labels + offsets).ravel(), flat_maps.ravel(), len(maps) * n_regions)
    sums = sums.reshape(len(maps), n_regions)
    totals = sums.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, sums / totals, np.nan)


def region_tests(shares: pd.DataFrame) -> pd.DataFrame:
    """Compare the region shares of each map between cases and controls.

    For the own-class maps this is the paper's comparison (case evidence on
    cases against control evidence on controls). Grad-CAM splits one signed
    sum into its positive (case) and negative (control) part, so those two
    tend to fall on complementary regions even when the groups do not differ;
    the ``cam_case`` comparison (case evidence on both groups) is the one
    that asks whether the model finds its evidence in different places.

    Parameters
    ----------
    shares : pandas.DataFrame
        One row per image and map: ``group``, ``map`` and one column per
        region of :data:`REGIONS` (its share), and ``area_<region>`` (the
        region's share of the chip).

    Returns
    -------
    pandas.DataFrame
        Per map and region: mean shares per group, the mean area share,
        ``enrichment_*`` (share / area: above 1 means more attribution than
        the region's size), the difference, a two-sided Mann-Whitney p-value
        and Benjamini-Hochberg q-values over the regions of each map.
    """
    rows = []
    for map_name, table in shares.groupby("map", sort=False):
        for region in REGIONS:
            case = table.loc[table["group"] == "case", region].dropna().to_numpy()
            control = table.loc[table["group"] == "control", region].dropna().to_numpy()
            area = table[f"area_{region}"].mean()
            if len(case) >= 2 and len(control) >= 2 and np.ptp(np.concatenate([case, control])) > 0:
                p_value = scipy_stats.mannwhitneyu(case, control, alternative="two-sided").pvalue
            else:
                p_value = np.nan
            mean_case = case.mean() if len(case) else np.nan
            mean_control = control.mean() if len(control) else np.nan
            rows.append(
                {
                    "comparison": MAP_COMPARISONS.get(map_name, map_name),
                    "map": map_name,
                    "region": region,
                    "n_case": len(case),
                    "n_control": len(control),
                    "area_share": area,
                    "share_case": mean_case,
                    "share_control": mean_control,
                    "enrichment_case": mean_case / area if area > 0 else np.nan,
                    "enrichment_control": mean_control / area if area > 0 else np.nan,
                    "difference": mean_case - mean_control,
                    "p_value": p_value,
                }
            )
    result = pd.DataFrame(rows)
    result["q_value"] = np.nan
    for index in result.groupby("map", sort=False).groups.values():
        result.loc[index, "q_value"] = bh_qvalues(result.loc[index, "p_value"].to_numpy(float))
    return result


def _spearman_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of each pair of flattened maps (NaN where one is constant)."""
    values = []
    for a, b in zip(first.reshape(len(first), -1), second.reshape(len(second), -1)):
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            values.append(np.nan)
        else:
            values.append(scipy_stats.spearmanr(a, b).statistic)
    return np.asarray(values, np.float64)


def randomization_similarity(
    model: keras.Model,
    random_model: keras.Model,
    chips: np.ndarray,
    layer: str,
    batch_size: int = 32,
) -> np.ndarray:
    """Per-chip Spearman correlation of |Grad-CAM| under the trained and a random head.

    Both models come from :func:`logit_model`. The absolute signed sum is
    compared so that a random head's arbitrary sign does not count as a change.
    """
    maps = []
    for candidate in (model, random_model):
        cams = []
        for start in range(0, len(chips), batch_size):
            probed = gradients(
                candidate, chips[start : start + batch_size], [layer], output=LOGIT_LAYER, target=logit_score
            )
            cams.append(np.abs(class_cams(*probed[layer])))
        maps.append(np.concatenate(cams))
    return _spearman_rows(*maps)


def guided_class_similarity(model: keras.Model, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Per-chip Spearman correlation of guided backpropagation for "case" and for "control".

    Near 1 means the guided part of guided Grad-CAM shows the same edges
    whichever class is explained: class evidence then comes from the
    Grad-CAM factor alone.
    """
    magnitudes = {}
    for group, sign in CLASS_SIGNS.items():
        parts = []
        for start in range(0, len(chips), batch_size):
            batch = chips[start : start + batch_size]
            guided = _guided_gradients(model, batch, np.full(len(batch), sign, np.float32))
            parts.append(np.sqrt((guided[INPUT_NAME][1] ** 2).sum(axis=-1)))
        magnitudes[group] = np.concatenate(parts)
    return _spearman_rows(magnitudes["case"], magnitudes["control"])


def share_table(rows: pd.DataFrame, maps: Mapping[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """Per image and map: the share of attribution and of area in each region."""
    area = region_shares(np.ones(labels.shape, np.float32), labels)
    tables = []
    for name, values in maps.items():
        shares = region_shares(values, labels)
        table = pd.DataFrame(shares, columns=list(REGIONS))
        table.insert(0, "map", name)
        table.insert(0, "group", rows["group"].to_numpy())
        table.insert(0, "image_id", rows["image_id"].to_numpy())
        for index, region in enumerate(REGIONS):
            table[f"area_{region}"] = area[:, index]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def mean_maps(maps: Mapping[str, np.ndarray], groups: np.ndarray, usable: np.ndarray) -> dict:
    """Mean of each map over the usable images of each group."""
    means = {}
    for name, values in maps.items():
        means[name] = {}
        for group in ("case", "control"):
            chosen = values[(groups == group) & usable]
            means[name][group] = (
                chosen.mean(axis=0) if len(chosen) else np.zeros(values.shape[1:], np.float32)
            )
    return means


def example_indices(
    rows: pd.DataFrame, probability: np.ndarray, threshold: float, n_examples: int
) -> list[int]:
    """The most confidently, correctly classified images of each group ("typical", as the paper)."""
    chosen = []
    for group, sign in (("case", 1.0), ("control", -1.0)):
        own = probability if sign > 0 else 1.0 - probability
        correct = (probability >= threshold) == (group == "case")
        candidates = np.flatnonzero((rows["group"].to_numpy() == group) & correct)
        chosen.extend(candidates[np.argsort(-own[candidates], kind="stable")][:n_examples].tolist())
    return chosen


def sanity_warnings(
    sanity: dict, counts: Mapping[str, int], degenerate: float, tests: pd.DataFrame
) -> list[str]:
    """Plain sentences about what the maps cannot show in this run."""
    warnings = []
    off_face = tests[(tests["map"] == "cam") & (tests["region"] == "other")]
    for _, row in off_face.iterrows():
        for group in ("case", "control"):
            share = row[f"share_{group}"]
            if np.isfinite(share) and share > OFF_FACE_RATIO * row["area_share"]:
                warnings.append(
                    f"Grad-CAM puts {share:.0%} of the {group} evidence outside the face (hair, "
                    f"background, mask edge), which covers {row['area_share']:.0%} of the chip: "
                    "the model may use cues other than the face."
                )
    randomized = sanity["randomized_head_spearman_abs"]["median"]
    if randomized is not None and randomized >= RANDOMIZATION_WARN:
        warnings.append(
            f"Grad-CAM maps change little when the trained head is replaced by a random one "
            f"(median |Spearman| {randomized:.2f}): they show what the frozen backbone sees more "
            "than what separates the groups."
        )
    relabelled = sanity.get("shuffled_labels_spearman_abs", {}).get("median")
    if relabelled is not None and relabelled >= RANDOMIZATION_WARN:
        warnings.append(
            f"a head trained on shuffled labels gives similar Grad-CAM maps (median |Spearman| "
            f"{relabelled:.2f}): the maps reflect the data and the backbone more than the labels."
        )
    if degenerate > DEGENERATE_WARN:
        warnings.append(
            f"{degenerate:.0%} of the explained images show no evidence for their own group "
            "(mostly misclassified ones); they are left out of the region shares and mean maps."
        )
    own = tests[(tests["map"] == "cam") & (tests["q_value"] < 0.05)]
    same = tests[(tests["map"] == "cam_case") & (tests["q_value"] < 0.05)]
    if len(own) and not len(same):
        warnings.append(
            f"case and control evidence fall on different regions ({', '.join(own['region'])}), but "
            "case evidence does not differ between cases and controls: the complementary pattern "
            "follows from Grad-CAM splitting one signed map into its two signs, not from a "
            "difference between the faces."
        )
    small = [group for group, n in counts.items() if n < MIN_PER_GROUP]
    if small:
        warnings.append(
            f"fewer than {MIN_PER_GROUP} usable explained images in {', '.join(small)}: the region tests "
            "have little power and the mean maps are noisy."
        )
    return warnings
