"""Rule explain_classifier: guided Grad-CAM of the trained classifier on held-out images."""

import logging
from collections.abc import Mapping
from typing import Any

from phenoface import io
from phenoface.runtime import describe_device

LOGGER = logging.getLogger("explain_classifier")


def run(inputs: Mapping[str, str], outputs: Mapping[str, str], params: Any) -> dict:
    """Explain, check and write every output; return the sanity summary."""
    from phenoface.backbone import read_chips
    from phenoface.explain import explain_held_out, explained_rows
    from phenoface.gradcam import example_indices, explain_chips, mean_maps
    from phenoface.model import HeadConfig, load_model
    from phenoface.plots_explain import plot_examples, plot_group_maps, plot_region_shares
    from phenoface.qc import read_qc
    from phenoface.shape import read_landmarks
    from phenoface.split import read_split_table

    LOGGER.info("device: %s", describe_device())
    layer, batch_size = params.layer, params.gradcam_batch_size
    split = read_split_table(inputs["split"])
    rows = explained_rows(
        split, read_qc(inputs["qc"]), params.max_images, params.source, params.seed, inputs["qc"]
    )
    LOGGER.info(
        "explaining %d held-out images (%s) at layer %s",
        len(rows),
        rows["group"].value_counts().to_dict(),
        layer,
    )
    explanation = explain_held_out(
        load_model(inputs["model"]),
        split,
        rows,
        read_chips(list(rows["chip_path"])),
        read_landmarks(list(rows["landmarks_path"]), list(rows["image_id"])),
        inputs["features"],
        layer=layer,
        batch_size=batch_size,
        source=params.source,
        head_config=HeadConfig.from_params(params),
        seed=params.seed,
    )
    for sentence in explanation.sanity["warnings"]:
        LOGGER.warning(sentence)

    io.write_npz(outputs["maps"], **explanation.arrays(layer))
    io.write_table(outputs["regions"], explanation.shares)
    io.write_table(outputs["region_tests"], explanation.tests)
    io.write_json(outputs["sanity"], explanation.sanity)
    groups, result = explanation.groups, explanation.result
    own_maps = {name: result[name] for name in ("cam", "guided_gradcam")}
    group_maps = mean_maps(own_maps, groups, explanation.usable)
    outline = explanation.landmarks.mean(axis=0)
    io.save_figure(outputs["group_png"], plot_group_maps(group_maps, explanation.counts, outline, layer))
    io.save_figure(outputs["regions_png"], plot_region_shares(explanation.tests))
    probability, chips = explanation.probability, explanation.chips
    chosen = example_indices(rows, probability, params.threshold, params.n_examples)
    examples = explain_chips(
        explanation.logit_model, chips[chosen], groups[chosen], layer, batch_size, keep_guided=True
    )
    example_labels = [f"{rows['group'].iloc[i]}, p(case) = {probability[i]:.2f}" for i in chosen]
    io.save_figure(
        outputs["examples_png"],
        plot_examples(
            chips[chosen], examples["guided"], examples["cam"], examples["guided_gradcam"], example_labels
        ),
    )
    return explanation.sanity


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
