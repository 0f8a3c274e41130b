"""Rule fetch_mediapipe_models: the MediaPipe networks, verified by sha256."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from phenoface.errors import PhenofaceError  # noqa: E402
from phenoface.models import fetch_mediapipe_models, mediapipe_model_paths  # noqa: E402

logger = logging.getLogger("fetch_mediapipe_models")


def run(inputs: dict, outputs: dict, params) -> None:
    """Download the pinned mediapipe wheel and write the two verified networks."""
    outputs = {
        "face_landmark": Path(outputs["face_landmark"]),
        "selfie_segmentation": Path(outputs["selfie"]),
    }
    model_dir = outputs["face_landmark"].parent
    expected = mediapipe_model_paths(model_dir)
    if outputs != expected:
        raise PhenofaceError(
            f"rule fetch_mediapipe_models: outputs {outputs} must be {expected} "
            "(both files in one folder, with their standard names)"
        )
    written = fetch_mediapipe_models(model_dir)
    for name, path in written.items():
        logger.info("%s: %s", name, path)


if __name__ == "__main__":
    from phenoface.runtime import run_rule

    run_rule(run, snakemake)  # noqa: F821 (injected by Snakemake)
