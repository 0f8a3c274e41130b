from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/sampling.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/power.smk"


localrules:
    all,
    fetch_mediapipe_models,
    place_dlib_models,
    power,


rule all:
    input:
        get_final_targets(),


rule power:
    input:
        "results/power/power.json",
        "results/power/power.png",
        power_paths("faces/average_faces.png"),
