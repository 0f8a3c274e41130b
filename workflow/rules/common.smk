import functools
import json
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from phenoface.dlib_format import BLOCK_NAMES
from phenoface.errors import PhenofaceError
from phenoface.models import DLIB_MODELS
from phenoface.power import draw_power_sample, repeat_seed, strength_label
from phenoface.runtime import make_rng
from phenoface.sheets import assign_shards, check_sheets_disjoint, read_sheet

validate(config, schema="../schemas/config.schema.yaml")
if config["explain"]["layer"] not in BLOCK_NAMES:
    # Checked here so a typo fails before hours of preprocessing, not after training.
    raise WorkflowError(
        f"explain.layer is {config['explain']['layer']!r}; use one of {', '.join(BLOCK_NAMES)}"
    )
# TensorFlow's C++ start-up chatter would bury each job's log; warnings still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


wildcard_constraints:
    batch=r"cases|pool_r\d+|ext_\w+|reference|sexref",
    shard=r"\d{4}",
    round=r"\d+",
    name=r"\w+",
    repeat=r"\d+",
    strength=r"\d+(?:\.\d+)?",
    arm=r"controls|s\d+(?:\.\d+)?",


def sheet_name(path):
    """Wildcard-safe name of an external sheet, from its file stem."""
    return re.sub(r"\W+", "_", Path(path).stem).strip("_") or "sheet"


def with_shards(table):
    """The table with a ``shard`` column (hash buckets of its image ids)."""
    shard_size = config["preprocess"]["shard_size"]
    shards = assign_shards(list(table["image_id"]), shard_size)
    return table.assign(shard=[f"{s:04d}" for s in shards])


def load_sheets():
    """Read every sample sheet, turning user errors into one clean message.

    Returns the cases, the pool and the sheets preprocessed as whole batches
    (cases, each external validation sheet as ``ext_<name>``, the optional
    reference sheet as ``reference``, the sex classifier's labelled sheet as
    ``sexref`` when one is named and used), each with a ``shard`` column.
    """
    try:
        cases = read_sheet(config["cases"], "cases")
        pool = read_sheet(config["reference_pool"], "pool")
        batches = {"cases": cases}
        for name, path in EXTERNAL.items():
            batches[f"ext_{name}"] = read_sheet(path, "external")
        if config["audit"]["reference_sheet"]:
            batches["reference"] = read_sheet(
                config["audit"]["reference_sheet"], "reference"
            )
        if config["sampling"]["sex_reference"] and infers_sex(pool):
            batches["sexref"] = read_sheet(
                config["sampling"]["sex_reference"], "sex_reference"
            )
        check_sheets_disjoint(pool, *batches.values())
    except PhenofaceError as error:
        raise WorkflowError(str(error)) from None
    batches = {batch: with_shards(table) for batch, table in batches.items()}
    return batches["cases"], pool, batches


def infers_sex(pool):
    """True when pool rows without sex get it inferred from the face (sampling.infer_sex)."""
    sampling = config["sampling"]
    return (
        sampling["infer_sex"]
        and "sex" in sampling["match_on"]
        and bool(pool["sex"].eq("").any())
    )


def external_sheets():
    """``{name: path}`` of the external validation sheets; names must differ."""
    paths = config["evaluation"]["external"]
    names = [sheet_name(path) for path in paths]
    if len(set(names)) != len(names):
        raise WorkflowError(
            f"evaluation.external: sheet file names must differ (got {names}); rename the files."
        )
    return dict(zip(names, paths))


EXTERNAL = external_sheets()
CASES, POOL, BATCHES = load_sheets()
INFER_SEX = infers_sex(POOL)
SHEET_ROWS = pd.concat([POOL, *BATCHES.values()], ignore_index=True).set_index(
    "image_id"
)
DLIB_MODEL_PATHS = {
    name: f"resources/dlib/{model.filename}" for name, model in DLIB_MODELS.items()
}
MASK_MODELS = {
    "face_mesh": "resources/mediapipe/face_landmark.tflite",
    "portrait": "resources/mediapipe/selfie_segmentation.tflite",
}


def get_validation_sheets():
    """``{path: kind}`` of the external and reference sheets (checked for duplicate content too)."""
    sheets = {path: "external" for path in EXTERNAL.values()}
    if config["audit"]["reference_sheet"]:
        sheets[config["audit"]["reference_sheet"]] = "reference"
    if "sexref" in BATCHES:
        sheets[config["sampling"]["sex_reference"]] = "sex_reference"
    return sheets


def faces_in_report(path, **kwargs):
    """``path`` as a report item only when the user asked for faces in the report."""
    return report(path, **kwargs) if config["report"]["show_faces"] else path


def get_mask_model():
    """The model file the configured mask method needs (none for hull/none)."""
    method = config["preprocess"]["mask_method"]
    return [MASK_MODELS[method]] if method in MASK_MODELS else []


def candidates_version(round_):
    """``(path, mtime_ns)`` of a pool round's candidate table; resolves (or defers) its checkpoint."""
    path = checkpoints.select_pool_candidates.get(round=round_).output.candidates
    return path, os.stat(path).st_mtime_ns


def read_candidates(round_):
    """Candidate table of a pool round."""
    return read_candidates_file(*candidates_version(round_))


@functools.cache
def read_candidates_file(path, mtime_ns):
    """A candidate table, read once per version of the file.

    Input functions ask for it once per pool shard; reading it each time made
    a study's DAG quadratic in its size.
    """
    return pd.read_csv(path, sep="\t", dtype={"shard": str, "image_id": str})


@functools.cache
def members_by_shard(batch, candidates_version=None):
    """``{shard: [{image_id, sheet, path}, ...]}`` of a batch, by image id.

    Whole-sheet batches come from their sheet; a pool round from its candidate
    table (``candidates_version``: the ``(path, mtime_ns)`` it was read from).
    """
    if candidates_version is None:
        table = BATCHES[batch][["image_id", "sheet", "path", "shard"]]
    else:
        candidates = read_candidates_file(*candidates_version)
        table = SHEET_ROWS.loc[list(candidates["image_id"]), ["sheet", "path"]]
        table = table.reset_index().assign(shard=list(candidates["shard"]))
    table = table.sort_values("image_id")
    return {
        shard: members.drop(columns="shard").to_dict("records")
        for shard, members in table.groupby("shard", sort=False)
    }


def get_pool_rounds(last=None):
    """Candidate tables of the pool rounds up to ``last`` (default: all that run).

    Rounds stop at the first empty one or at ``sampling.max_rounds``.
    """
    last = config["sampling"]["max_rounds"] if last is None else last
    rounds = []
    for round_ in range(1, last + 1):
        candidates = read_candidates(round_)
        if candidates.empty:
            break
        rounds.append((round_, candidates))
    return rounds


def batch_shards(batch):
    """``{shard: members}`` of a batch (a pool round's after its checkpoint)."""
    if batch in BATCHES:
        return members_by_shard(batch)
    round_ = int(batch.removeprefix("pool_r"))
    return members_by_shard(batch, candidates_version(round_))


def get_shard_members(wildcards):
    """Rows (image_id, sheet, path) of one preprocessing shard."""
    return list(batch_shards(wildcards.batch).get(wildcards.shard, []))


def get_preprocess_threads(wildcards):
    """Worker processes of one preprocessing job: the cores its batch would leave idle.

    A batch with fewer shards than ``--cores`` (a 200-image study is one shard)
    splits each shard over several forked workers, at least 10 images each.
    Threads are no rerun trigger, so this never re-partitions or re-runs a shard.
    """
    if "batch" not in wildcards.keys() or not workflow.local_exec:
        # Rules reusing preprocess_images (power arms), and cluster runs, whose
        # profile groups shards into jobs instead: one process per shard.
        return 1
    try:
        cores = workflow.cores
    except WorkflowError:  # a dry run without --cores
        return 1
    shards = batch_shards(wildcards.batch)
    images = len(shards.get(wildcards.shard, []))
    return max(1, min(cores // max(1, len(shards)), math.ceil(images / 10)))


def get_shard_images(wildcards):
    """Image files of one shard: touching one re-runs only this shard."""
    return [member["path"] for member in get_shard_members(wildcards)]


def pool_round_paths(pattern, last=None):
    """``pattern`` formatted for every shard of each pool round up to ``last``."""
    paths = []
    for round_, candidates in get_pool_rounds(last=last):
        for shard in sorted(candidates["shard"].unique()):
            paths.append(pattern.format(batch=f"pool_r{round_}", shard=shard))
    return paths


def shard_paths(pattern):
    """``pattern`` formatted for every shard of the cases and of each pool round."""
    return batch_paths(pattern, "cases") + pool_round_paths(pattern)


def batch_paths(pattern, batch):
    """``pattern`` formatted for every shard of a whole-sheet batch."""
    shards = sorted(BATCHES[batch]["shard"].unique())
    return [pattern.format(batch=batch, shard=shard) for shard in shards]


def get_case_qc_tables(wildcards):
    """QC tables of every case shard."""
    return batch_paths("results/preprocess/{batch}/{shard}.tsv", "cases")


def get_sheet_batch(wildcards):
    """The batch of a validation sheet: ``ext_<name>`` or ``reference``."""
    return f"ext_{wildcards.name}" if "name" in wildcards.keys() else "reference"


def get_sheet_qc_tables(wildcards):
    """QC tables of a validation sheet's shards."""
    return batch_paths(
        "results/preprocess/{batch}/{shard}.tsv", get_sheet_batch(wildcards)
    )


def get_sheet_feature_shards(wildcards):
    """Feature files of a validation sheet's shards."""
    return batch_paths(
        "results/features/{batch}/{shard}.npz", get_sheet_batch(wildcards)
    )


def get_external_sheet(wildcards):
    """The CSV of external validation sheet ``wildcards.name``."""
    return EXTERNAL[wildcards.name]


def get_earlier_pool_qc_tables(wildcards):
    """QC tables of the pool shards of the rounds before ``wildcards.round``."""
    return pool_round_paths(
        "results/preprocess/{batch}/{shard}.tsv", last=int(wildcards.round) - 1
    )


def get_sex_model():
    """The sex classifier, when pool rows get their sex from the face."""
    return "results/sampling/sex/classifier.npz" if INFER_SEX else []


def get_sex_report():
    """The classifier's accuracy per age bin (decides the bins matched on age alone)."""
    return "results/cohort/sex_inference.csv" if INFER_SEX else []


def get_sex_param(key):
    """``sampling.<key>`` where sex is inferred, else None (so changing it re-runs nothing)."""
    return config["sampling"][key] if INFER_SEX else None


def get_earlier_pool_feature_shards(wildcards):
    """Feature files of the pool shards of the rounds before ``wildcards.round`` (sex inference)."""
    if not INFER_SEX:
        return []
    return pool_round_paths(
        "results/features/{batch}/{shard}.npz", last=int(wildcards.round) - 1
    )


def get_pool_feature_shards(wildcards=None):
    """Feature files of every pool shard (sex inference)."""
    if not INFER_SEX:
        return []
    return pool_round_paths("results/features/{batch}/{shard}.npz")


def get_sex_training_batch():
    """The labelled batch the sex classifier learns from: ``sexref`` or the cases."""
    return "sexref" if "sexref" in BATCHES else "cases"


def get_sex_training_sheet():
    """The sheet of that batch."""
    if get_sex_training_batch() == "sexref":
        return config["sampling"]["sex_reference"]
    return config["cases"]


def get_sex_training_tables(pattern):
    """``pattern`` for every shard of that batch (QC tables or feature files)."""
    return batch_paths(pattern, get_sex_training_batch())


def get_qc_tables(wildcards=None):
    """QC tables of every shard that ran (cases and all pool rounds)."""
    return shard_paths("results/preprocess/{batch}/{shard}.tsv")


def get_feature_shards(wildcards=None):
    """Per-shard feature files of every shard that ran."""
    return shard_paths("results/features/{batch}/{shard}.npz")


def get_provenance_files(wildcards=None):
    """Named files a run depends on: sheets, image hashes and model files."""
    files = {
        "cases_sheet": config["cases"],
        "pool_sheet": config["reference_pool"],
        "image_checks": "results/qc/image_checks.tsv",
        "landmark_model": DLIB_MODEL_PATHS["landmarks"],
        "resnet_model": DLIB_MODEL_PATHS["resnet"],
        "backbone_weights": "resources/backbone/dlib_resnet.weights.h5",
    }
    for index, path in enumerate(get_mask_model()):
        files[f"mask_model_{index}"] = path
    for index, path in enumerate(get_validation_sheets()):
        files[f"validation_sheet_{index}"] = path
    return files


def get_stage_records():
    """JSON records of the stages (every JSON final target but provenance).

    The summary shows every ``warnings`` list in them, so a stage whose record
    is a final target has its warnings on the summary page without more code.
    """
    return [
        path
        for path in get_final_targets()
        if path.endswith(".json") and path != "results/provenance.json"
    ]


def get_recorded_config():
    """The config as provenance records it: canonical JSON without resources (``gpu``).

    Sorted keys, so restating a value or merging config files in another
    order leaves it (and so the rerun trigger) unchanged.
    """
    science = {
        key: (
            {name: value for name, value in section.items() if name != "gpu"}
            if isinstance(section, dict)
            else section
        )
        for key, section in config.items()
    }
    return json.dumps(science, sort_keys=True)


def get_final_targets():
    """Everything `snakemake` builds by default."""
    return [
        "results/report/summary.html",
        "results/report/methods.md",
        "results/report/tables/table1.html",
        "results/qc/preprocess.tsv",
        "results/qc/contact_sheet.png",
        "results/cohort/cohort.csv",
        "results/features/features.npz",
        "results/training/model.keras",
        "results/evaluation/metrics.json",
        "results/explain/sanity.json",
        "results/faces/morphometry.json",
        "results/faces/average_faces.png",
        "results/provenance.json",
    ]


# ---------------------------------------------------------------------------
# Power analysis (issue 13, `snakemake power`): planted-effect studies.

POWER_STRENGTHS = [strength_label(s) for s in config["power"]["strengths"]]
POWER_REPEATS = [str(r) for r in range(config["power"]["repeats"])]
POWER_DIR = "results/power/r{repeat}/s{strength}"


@functools.cache
def power_sample(repeat):
    """The faces of power repeat ``repeat`` with their groups and shards.

    Drawn only when a power job asks, so `all` never reads the power sheet.
    """
    power = config["power"]
    n = power["n"] or len(CASES) * (1 + config["sampling"]["ratio"])
    try:
        sheet = POOL if power["sheet"] is None else read_sheet(power["sheet"], "pool")
        rng = make_rng(repeat_seed(config["seed"], int(repeat)))
        sample = draw_power_sample(
            sheet,
            n,
            rng,
            config["sampling"]["age_bins"],
            config["sampling"]["match_on"],
        )
    except PhenofaceError as error:
        raise WorkflowError(str(error)) from None
    return with_shards(sample)


POWER_ARM = "results/power/r{repeat}/{arm}"


@functools.cache
def power_arm(repeat, arm):
    """Drawn rows of one arm: ``controls`` (strength-independent) or ``s<strength>`` (the cases).

    Controls are warped at strength 0 whatever the strength, so they are
    planted and preprocessed once and shared by every strength.
    """
    sample = power_sample(repeat)
    group = "control" if arm == "controls" else "case"
    return with_shards(sample[sample["group"] == group].drop(columns="shard"))


def power_arm_strength(wildcards):
    """Strength planted into an arm's photos (0 for the controls)."""
    return 0.0 if wildcards.arm == "controls" else float(wildcards.arm[1:])


def get_power_sample_rows(wildcards):
    """Drawn rows (sample columns) of one shard of a power repeat, or of an arm."""
    if "arm" in wildcards.keys():
        table = power_arm(wildcards.repeat, wildcards.arm)
    else:
        table = power_sample(wildcards.repeat)
    rows = table[table["shard"] == wildcards.shard].drop(columns="shard")
    return rows.sort_values("image_id").to_dict("records")


def get_power_original_images(wildcards):
    """Original photos of one power shard."""
    return [row["path"] for row in get_power_sample_rows(wildcards)]


def get_power_located(wildcards):
    """Landmark files of every located shard of the repeat."""
    shards = sorted(power_sample(wildcards.repeat)["shard"].unique())
    return [
        f"results/power/r{wildcards.repeat}/located/{shard}.npz" for shard in shards
    ]


def get_power_shard_members(wildcards):
    """Preprocessing members of an arm's shard: the planted photos."""
    folder = "{}/planted/{}".format(POWER_ARM.format(**wildcards), wildcards.shard)
    return [
        {
            "image_id": row["image_id"],
            "sheet": "cases" if row["group"] == "case" else "pool",
            "path": f"{folder}/{row['image_id']}.png",
        }
        for row in get_power_sample_rows(wildcards)
    ]


def power_shard_paths(suffix):
    """Input function: ``<arm dir>/<suffix>`` for every shard of a strength's two arms."""

    def paths(wildcards):
        out = []
        for arm in (f"s{wildcards.strength}", "controls"):
            shards = sorted(power_arm(wildcards.repeat, arm)["shard"].unique())
            folder = POWER_ARM.format(repeat=wildcards.repeat, arm=arm)
            out += [f"{folder}/{suffix}".format(shard=shard) for shard in shards]
        return out

    return paths


def power_paths(path):
    """``results/power/r<repeat>/s<strength>/<path>`` for every repeat and strength."""
    return expand(f"{POWER_DIR}/{path}", repeat=POWER_REPEATS, strength=POWER_STRENGTHS)
