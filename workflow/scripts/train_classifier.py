"""Rule train_classifier: the paper's head on the training half, composed with the frozen backbone."""

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from phenoface import io
from phenoface.runtime import describe_device

LOGGER = logging.getLogger("train_classifier")


def run(inputs: Mapping[str, Any], outputs: Mapping[str, Any], params: Any) -> dict[str, Any]:
    """Train, compose, and write every output; return the summary."""
    from phenoface.backbone import load_backbone
    from phenoface.cohort import case_labels
    from phenoface.model import (
        HEAD_INPUT,
        HeadConfig,
        compose_model,
        head_diagnostics,
        plot_training_curves,
        save_model,
        train_head,
    )
    from phenoface.split import read_split_table, training_half

    config, seed = HeadConfig.from_params(params), params.seed
    features, train = training_half(read_split_table(inputs["split"]), inputs["features"], HEAD_INPUT)
    labels = case_labels(train["group"])
    device = describe_device()
    LOGGER.info("device: %s", device)
    head, history = train_head(features, labels, config, seed)
    diagnostics = head_diagnostics(head, features)
    LOGGER.info(
        "dead FC1 units: %d of %d; training predictions mean %.3f, SD %.3f",
        diagnostics["n_dead_units"],
        diagnostics["n_units"],
        diagnostics["prediction_mean"],
        diagnostics["prediction_std"],
    )
    if diagnostics["collapsed"]:
        LOGGER.warning("the head's output is near constant on the training half (collapsed run)")

    model = compose_model(load_backbone(inputs["backbone"]), head)
    save_model(head, outputs["head"])
    save_model(model, outputs["model"])
    io.write_table(outputs["history"], history)
    figure = plot_training_curves(history, title=f"Training ({len(train)} images)")
    io.save_figure(outputs["curves_png"], figure, dpi=150)

    last_epoch = history[history["epoch"] == history["epoch"].max()]
    summary = {
        "config": dataclasses.asdict(config),
        "seed": seed,
        "device": device,
        "n_train": int(len(train)),
        "n_train_cases": int(labels.sum()),
        "n_train_controls": int(len(labels) - labels.sum()),
        "feature": HEAD_INPUT,
        "n_features": int(features.shape[1]),
        "final_epoch_bce": float(last_epoch["loss_running"].iloc[-1]),
        "final_epoch_accuracy": float(last_epoch["accuracy_running"].iloc[-1]),
        "dead_unit_fraction": diagnostics["dead_unit_fraction"],
        "diagnostics": diagnostics,
    }
    io.write_json(outputs["summary"], summary)
    return summary


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
