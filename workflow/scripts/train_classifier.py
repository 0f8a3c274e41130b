"""Train the paper's classifier head on the training half and compose it with the backbone.

Snakemake entry script of rule ``train_classifier``. Inputs: ``split``
(results/split/cohort_split.csv), ``features``
(results/features/features.npz, pooled features), ``backbone`` (the
converted dlib ResNet weights). Params: ``training`` (the config's training
section), ``seed``. Outputs: ``head`` (head.keras: pooled features ->
probability), ``model`` (model.keras: chips -> probability), ``history``
(per-batch BCE/accuracy csv), ``summary`` (training.json) and ``curves_png``
(the paper's Figure 4A). Log: ``log[0]``.
"""

# No `from __future__` import: Snakemake prepends its preamble to entry scripts.
import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping

from phenoface import io
from phenoface.runtime import describe_device, setup_logging

LOGGER = logging.getLogger("train_classifier")


def run(
    inputs: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    training: Mapping[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Train, compose, and write every output; return the summary."""
    from phenoface.backbone import load_backbone
    from phenoface.split import read_split_table, training_half
    from phenoface.model import (
        HEAD_INPUT,
        HeadConfig,
        compose_model,
        head_diagnostics,
        labels_from_groups,
        plot_training_curves,
        save_model,
        train_head,
    )

    config = HeadConfig.from_mapping(training)
    features, train = training_half(read_split_table(inputs["split"]), inputs["features"], HEAD_INPUT)
    labels = labels_from_groups(train["group"])
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


def main(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    """Entry point: the only place that touches ``snakemake``."""
    setup_logging(snakemake.log[0])
    run(
        inputs={key: getattr(snakemake.input, key) for key in ("split", "features", "backbone")},
        outputs={
            key: getattr(snakemake.output, key)
            for key in ("head", "model", "history", "summary", "curves_png")
        },
        training=dict(snakemake.params.training),
        seed=int(snakemake.params.seed),
    )


if __name__ == "__main__" and "snakemake" in globals():
    from phenoface.runtime import run_main

    run_main(main, snakemake)  # noqa: F821 (injected by Snakemake)
