"""Logging, seeding and device reporting shared by every entry script."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send log records to ``log_path`` (if given) and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


def make_rng(seed: int) -> np.random.Generator:
    """Return the seeded generator all randomness in a step must come from.

    Also seeds Python's and (when imported) Keras' global generators so that
    library code that uses them is reproducible too.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import sys

    if "keras" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def describe_device() -> str:
    """One line naming the Keras backend, the accelerator it will use and the GPUs granted.

    ``CUDA_VISIBLE_DEVICES`` is what the scheduler handed the job (SLURM sets it
    for ``--gpus``/``--gres`` jobs); comparing it with the devices the backend
    found tells a missing GPU request from a missing CUDA library.
    """
    import keras

    granted = f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}"
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        return f"keras backend jax, devices: {', '.join(str(d) for d in devices)}; {granted}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"keras backend tensorflow, GPUs: {len(gpus)} ({'GPU' if gpus else 'CPU only'}); {granted}"
    return f"keras backend {backend}; {granted}"


def run_main(main, snakemake) -> None:
    """Run an entry script's ``main``; a user error ends it with its message, not a traceback.

    :class:`~phenoface.errors.PhenofaceError` messages already name the file,
    row or stratum and the fix, so a stack trace would only hide them.
    """
    import sys

    from .errors import PhenofaceError

    try:
        main(snakemake)
    except PhenofaceError as error:
        logging.getLogger("phenoface").error("%s", error)
        sys.stderr.write(f"\nphenoface: {error}\n\n")
        raise SystemExit(1) from None


def run_rule(run, snakemake) -> None:
    """An entry script's whole ``__main__``: log to the rule's log, call ``run(inputs, outputs, params)``.

    ``inputs`` and ``outputs`` are dicts of the rule's named files; ``params``
    is ``snakemake.params`` (settings read by name).
    """

    def main(snakemake) -> None:
        setup_logging(snakemake.log[0])
        run(dict(snakemake.input.items()), dict(snakemake.output.items()), snakemake.params)

    run_main(main, snakemake)
