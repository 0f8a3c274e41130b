"""Subprocess worker for test_backbone: runs the backbone under one Keras backend.

The Keras backend is fixed when keras is first imported, so the tests start
this script once per backend with ``KERAS_BACKEND`` set. Usage::

    python backbone_worker.py CHIPS_NPZ WEIGHTS_H5 OUT_NPZ [--convert DAT]

With ``--convert`` the dlib file is first converted to WEIGHTS_H5. The
output holds the backend name, pooled/descriptor for the uint8 chips, the
descriptor of the same chips sent as float32, and for the first two chips the
gradient of the summed descriptor w.r.t. the input and every block, and its
guided-backpropagation gradient w.r.t. the input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflow" / "scripts"))


def main(argv: list[str]) -> None:
    """Run the checks and write their raw results to OUT_NPZ."""
    import keras

    from phenoface import backbone
    from phenoface.errors import PhenofaceError

    chips_path, weights_path, out_path = argv[:3]
    result: dict[str, np.ndarray] = {"backend": np.array(keras.backend.backend())}
    if len(argv) == 5 and argv[3] == "--convert":
        result["sha256"] = np.array(backbone.convert_dlib_resnet(argv[4], weights_path))
    chips = np.load(chips_path)["chips"]
    model = backbone.load_backbone(weights_path)
    result["pooled"], result["descriptor"] = backbone.extract_features(model, chips, batch_size=64)
    # 5 chips in batches of 3: the short last batch is padded, never recompiled.
    _, result["descriptor_short_last"] = backbone.extract_features(model, chips[:5], batch_size=3)
    _, result["descriptor_float"] = backbone.extract_features(
        model, chips[:8].astype(np.float32), batch_size=8
    )
    empty_pooled, empty_descriptor = backbone.extract_features(model, np.zeros((0, 150, 150, 3), np.uint8))
    result["empty_shapes"] = np.array([empty_pooled.shape, empty_descriptor.shape])
    try:
        backbone.extract_features(model, np.zeros((2, 100, 100, 3), np.uint8))
    except PhenofaceError as error:
        result["bad_shape_error"] = np.array(str(error))
    names = (backbone.INPUT_NAME,) + backbone.BLOCK_NAMES
    grads = backbone.gradients(model, chips[:2], names)
    for name, (activation, gradient) in grads.items():
        result[f"act_shape/{name}"] = np.array(activation.shape)
        result[f"grad/{name}"] = gradient
    guided = backbone.gradients(model, chips[:2], [backbone.INPUT_NAME], guided=True)
    result["guided/chip"] = guided[backbone.INPUT_NAME][1]
    weighted = backbone.gradients(model, chips[:3], [backbone.INPUT_NAME], chip_weights=[1.0, -1.0, 0.0])
    result["weighted/chip"] = weighted[backbone.INPUT_NAME][1]
    result["unweighted/chip"] = backbone.gradients(model, chips[:3], [backbone.INPUT_NAME])[
        backbone.INPUT_NAME
    ][1]
    np.savez(out_path, **result)


if __name__ == "__main__":
    main(sys.argv[1:])
