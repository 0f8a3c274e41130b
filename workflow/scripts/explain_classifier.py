"""Explain the trained classifier with guided Grad-CAM on held-out images.

Snakemake entry script of rule ``explain_classifier``. Inputs: ``model``
(results/training/model.keras), ``split`` (results/split/cohort_split.csv),
``qc`` (results/qc/preprocess.tsv: chip and landmark paths), ``features``
(to retrain the head on shuffled labels for the sanity check).
Params: ``explain`` (the config section), ``source`` (features.input: the chip
the model was trained on), ``threshold``, ``training``, ``seed``. Outputs: ``maps``
(gradcam.npz), ``regions`` (per-image region shares), ``region_tests``,
``sanity`` (sanity.json), ``group_png``, ``regions_png``, ``examples_png``
(individual faces). Log: ``log[0]``.
"""

# No `from __future__` import: Snakemake prepends its preamble to entry scripts.
import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd

from phenoface import io
from phenoface.errors import PhenofaceError
from phenoface.runtime import describe_device, setup_logging

LOGGER = logging.getLogger("explain_classifier")

#: Chips per group used for the (costlier) sanity checks.
SANITY_PER_GROUP = 16


def explained_rows(split: pd.DataFrame, qc_path: str, explain: Mapping[str, Any], source: str, seed: int) -> pd.DataFrame:
    """The held-out rows to explain, with their chip and landmark paths."""
    from phenoface.backbone import FEATURE_COLUMNS
    from phenoface.gradcam import select_images

    selected = select_images(split, int(explain["max_images"]), seed)
    qc = pd.read_csv(qc_path, sep="\t", dtype=str, keep_default_na=False).set_index("image_id")
    missing = selected.loc[~selected["image_id"].isin(qc.index), "image_id"]
    if len(missing):
        raise PhenofaceError(
            f"{qc_path}: {len(missing)} test images have no QC row (first: {missing.iloc[0]}); "
            "rerun the workflow from preprocessing"
        )
    rows = qc.loc[selected["image_id"]]
    not_ok = rows.index[rows["status"] != "ok"]
    if len(not_ok):
        raise PhenofaceError(f"{qc_path}: test image {not_ok[0]} is not ok in QC; rerun sample_matched_controls")
    # features.input is an enum in the config schema.
    chip_paths = rows[FEATURE_COLUMNS[source]].to_numpy()
    return selected.assign(chip_path=chip_paths, landmarks_path=rows["landmarks"].to_numpy())


def shuffled_label_model(
    model, split: pd.DataFrame, features_path: str, training: Mapping[str, Any], seed: int
):
    """``model`` with its head retrained on the training half under shuffled labels.

    Adebayo et al.'s data-randomisation test: maps that survive it show the
    data and the backbone, not what the labels taught the head.
    """
    from phenoface.gradcam import with_head_weights
    from phenoface.model import HEAD_INPUT, HeadConfig, labels_from_groups, train_head
    from phenoface.runtime import make_rng
    from phenoface.split import training_half

    features, train = training_half(split, features_path, HEAD_INPUT)
    labels = make_rng(seed).permutation(labels_from_groups(train["group"]))
    LOGGER.info("retraining the head on %d training images with shuffled labels", len(labels))
    head, _ = train_head(features, labels, HeadConfig.from_mapping(training), seed)
    # The head's layers carry the same names inside the composed model.
    return with_head_weights(model, {layer.name: layer.get_weights() for layer in head.layers if layer.weights})


def summary(values: np.ndarray) -> dict:
    """n, median, min and max of the finite values (None when there are none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(finite), "median": float(np.median(finite)), "min": float(finite.min()), "max": float(finite.max())}


def sanity_checks(
    model, logit, shuffled, chips: np.ndarray, groups: np.ndarray, layer: str, seed: int, batch_size: int
) -> dict:
    """Model- and data-randomisation and class-sensitivity checks on a few chips per group."""
    from phenoface.gradcam import (
        guided_class_similarity,
        logit_model,
        randomization_similarity,
        randomize_head,
    )
    from phenoface.model import FC1_LAYER, FC2_LAYER

    sample = np.concatenate([np.flatnonzero(groups == g)[:SANITY_PER_GROUP] for g in ("case", "control")])
    random_logit = logit_model(randomize_head(model, [FC1_LAYER, FC2_LAYER], seed))
    randomized = randomization_similarity(logit, random_logit, chips[sample], layer, batch_size)
    relabelled = randomization_similarity(logit, logit_model(shuffled), chips[sample], layer, batch_size)
    class_similarity = guided_class_similarity(logit, chips[sample], batch_size)
    return {
        "n_images": int(len(sample)),
        "randomized_head_spearman_abs": summary(np.abs(randomized)),
        "shuffled_labels_spearman_abs": summary(np.abs(relabelled)),
        "guided_case_vs_control_spearman": summary(class_similarity),
    }


def run(inputs: Mapping[str, str], outputs: Mapping[str, str], params: Mapping[str, Any]) -> dict:
    """Explain, check and write every output; return the sanity summary."""
    from phenoface.backbone import read_chips
    from phenoface.gradcam import (
        MAP_COMPARISONS,
        example_indices,
        explain_chips,
        logit_model,
        mean_maps,
        region_labels,
        region_tests,
        sanity_warnings,
        share_table,
    )
    from phenoface.model import load_model
    from phenoface.plots_explain import plot_examples, plot_group_maps, plot_region_shares
    from phenoface.morphometry import read_landmarks
    from phenoface.split import read_split_table

    explain, seed = params["explain"], int(params["seed"])
    layer, batch_size = explain["layer"], int(explain["batch_size"])
    split = read_split_table(inputs["split"])
    rows = explained_rows(split, inputs["qc"], explain, params["source"], seed)
    groups = rows["group"].to_numpy()
    LOGGER.info("explaining %d held-out images (%s) at layer %s",
                len(rows), rows["group"].value_counts().to_dict(), layer)
    chips = read_chips(list(rows["chip_path"]))
    landmarks = read_landmarks(list(rows["landmarks_path"]), list(rows["image_id"]))
    model = load_model(inputs["model"])
    logit = logit_model(model)
    result = explain_chips(logit, chips, groups, layer, batch_size)
    probability = 1.0 / (1.0 + np.exp(-result["logit"].astype(np.float64)))

    maps = {name: result[name] for name in MAP_COMPARISONS}
    usable = result["cam"].reshape(len(rows), -1).max(axis=1) > 0
    labels = np.stack([region_labels(points) for points in landmarks])
    shares = share_table(rows, maps, labels)
    tests = region_tests(shares)
    counts = {group: int(((groups == group) & usable).sum()) for group in ("case", "control")}

    shuffled = shuffled_label_model(model, split, inputs["features"], params["training"], seed)
    sanity = sanity_checks(model, logit, shuffled, chips, groups, layer, seed, batch_size)
    degenerate = float(1.0 - usable.mean()) if len(usable) else 0.0
    sanity.update(
        layer=layer,
        n_explained=int(len(rows)),
        n_usable=counts,
        degenerate_fraction=degenerate,
        source=params["source"],
        seed=seed,
        warnings=sanity_warnings(sanity, counts, degenerate, tests),
    )
    for sentence in sanity["warnings"]:
        LOGGER.warning(sentence)

    signs = np.where(groups == "case", 1.0, -1.0)
    io.write_npz(
        outputs["maps"],
        image_id=rows["image_id"].to_numpy(dtype=str),
        group=groups.astype(str),
        logit=result["logit"].astype(np.float32),
        probability=probability.astype(np.float32),
        cam_lowres=np.maximum(result["cam_signed"] * signs[:, None, None], 0).astype(np.float32),
        cam=result["cam"].astype(np.float16),
        guided_gradcam=result["guided_gradcam"].astype(np.float16),
        layer=np.array(layer),
    )
    io.write_table(outputs["regions"], shares)
    io.write_table(outputs["region_tests"], tests)
    io.write_json(outputs["sanity"], sanity)
    own_maps = {name: maps[name] for name in ("cam", "guided_gradcam")}
    io.save_figure(
        outputs["group_png"],
        plot_group_maps(mean_maps(own_maps, groups, usable), counts, landmarks.mean(axis=0), layer),
    )
    io.save_figure(outputs["regions_png"], plot_region_shares(tests))
    chosen = example_indices(rows, probability, float(params["threshold"]), int(explain["n_examples"]))
    examples = explain_chips(logit, chips[chosen], groups[chosen], layer, batch_size, keep_guided=True)
    example_labels = [f"{rows['group'].iloc[i]}, p(case) = {probability[i]:.2f}" for i in chosen]
    io.save_figure(
        outputs["examples_png"],
        plot_examples(chips[chosen], examples["guided"], examples["cam"], examples["guided_gradcam"], example_labels),
    )
    return sanity


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    LOGGER.info("device: %s", describe_device())
    params = {
        "explain": snakemake.params.explain,
        "source": snakemake.params.source,
        "threshold": snakemake.params.threshold,
        "training": snakemake.params.training,
        "seed": snakemake.params.seed,
    }
    run(dict(snakemake.input.items()), dict(snakemake.output.items()), params)


if __name__ == "__main__":
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
