# The planted-effect positive control (`snakemake power`, not part of `all`):
# faces drawn from the power sheet, half of them "cases" whose lower face is
# widened by each strength in power.strengths, then the study's own
# preprocessing, features, split, training, evaluation, Grad-CAM and landmark
# tests per strength (the study's rules, reused with other paths). Photos are
# planted and preprocessed per arm: the cases of each strength, and the
# controls once (strength 0 whatever the strength, the same warp code).


rule locate_power_faces:
    input:
        images=get_power_original_images,
        landmark_model=DLIB_MODEL_PATHS["landmarks"],
    output:
        landmarks="results/power/r{repeat}/located/{shard}.npz",
    log:
        "logs/locate_power_faces/r{repeat}/{shard}.log",
    benchmark:
        "benchmarks/locate_power_faces/r{repeat}/{shard}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        members=get_power_sample_rows,
        upsample=lookup(dpath="preprocess/upsample", within=config),
        pad_fraction=lookup(dpath="preprocess/pad_fraction", within=config),
        min_face_size=lookup(dpath="preprocess/min_face_size", within=config),
        multi_face=lookup(dpath="preprocess/multi_face", within=config),
        retry_detection=lookup(dpath="preprocess/retry_detection", within=config),
    script:
        "../scripts/locate_power_faces.py"


rule plant_power_effect:
    input:
        landmarks=get_power_located,
        images=get_power_original_images,
    output:
        table=f"{POWER_ARM}/planted/{{shard}}.tsv",
        images=directory(f"{POWER_ARM}/planted/{{shard}}"),
    log:
        "logs/plant_power_effect/r{repeat}/{arm}/{shard}.log",
    benchmark:
        "benchmarks/plant_power_effect/r{repeat}/{arm}/{shard}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        members=get_power_sample_rows,
        strength=power_arm_strength,
    script:
        "../scripts/plant_power_effect.py"


use rule preprocess_images as preprocess_power_images with:
    input:
        images=f"{POWER_ARM}/planted/{{shard}}",
        landmark_model=DLIB_MODEL_PATHS["landmarks"],
        mask_models=get_mask_model(),
    output:
        qc=f"{POWER_ARM}/preprocess/{{shard}}.tsv",
        chips=directory(f"{POWER_ARM}/preprocess/{{shard}}"),
    log:
        "logs/preprocess_power_images/r{repeat}/{arm}/{shard}.log",
    benchmark:
        "benchmarks/preprocess_power_images/r{repeat}/{arm}/{shard}.tsv"
    params:
        members=get_power_shard_members,


use rule extract_features as extract_power_features with:
    input:
        qc=f"{POWER_ARM}/preprocess/{{shard}}.tsv",
        weights="resources/backbone/dlib_resnet.weights.h5",
    output:
        features=f"{POWER_ARM}/features/{{shard}}.npz",
    log:
        "logs/extract_power_features/r{repeat}/{arm}/{shard}.log",
    benchmark:
        "benchmarks/extract_power_features/r{repeat}/{arm}/{shard}.tsv"


use rule merge_features as merge_power_features with:
    input:
        shards=power_shard_paths("features/{shard}.npz"),
    output:
        features=f"{POWER_DIR}/features.npz",
    log:
        "logs/merge_power_features/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/merge_power_features/r{repeat}/s{strength}.tsv"


rule build_power_cohort:
    input:
        planted=power_shard_paths("planted/{shard}.tsv"),
        qc=power_shard_paths("preprocess/{shard}.tsv"),
    output:
        cohort=f"{POWER_DIR}/cohort.csv",
        qc=f"{POWER_DIR}/qc.tsv",
    log:
        "logs/build_power_cohort/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/build_power_cohort/r{repeat}/s{strength}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/build_power_cohort.py"


use rule split_cohort as split_power_cohort with:
    input:
        cohort=f"{POWER_DIR}/cohort.csv",
        features=f"{POWER_DIR}/features.npz",
    output:
        table=f"{POWER_DIR}/split/cohort_split.csv",
        report=f"{POWER_DIR}/split/identity_clusters.json",
    log:
        "logs/split_power_cohort/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/split_power_cohort/r{repeat}/s{strength}.tsv"


use rule train_classifier as train_power_classifier with:
    input:
        split=f"{POWER_DIR}/split/cohort_split.csv",
        features=f"{POWER_DIR}/features.npz",
        backbone="resources/backbone/dlib_resnet.weights.h5",
    output:
        head=f"{POWER_DIR}/training/head.keras",
        model=f"{POWER_DIR}/training/model.keras",
        history=f"{POWER_DIR}/training/history.csv",
        summary=f"{POWER_DIR}/training/training.json",
        curves_png=f"{POWER_DIR}/training/training_curves.png",
    log:
        "logs/train_power_classifier/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/train_power_classifier/r{repeat}/s{strength}.tsv"


use rule audit_baselines as audit_power_baselines with:
    input:
        split=f"{POWER_DIR}/split/cohort_split.csv",
        features=f"{POWER_DIR}/features.npz",
        qc=f"{POWER_DIR}/qc.tsv",
    output:
        baselines=f"{POWER_DIR}/evaluation/baselines.csv",
        image_stats=f"{POWER_DIR}/evaluation/image_stats.csv",
        roc_png=f"{POWER_DIR}/evaluation/baselines_roc.png",
    log:
        "logs/audit_power_baselines/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/audit_power_baselines/r{repeat}/s{strength}.tsv"


use rule evaluate_classifier as evaluate_power_classifier with:
    input:
        split=f"{POWER_DIR}/split/cohort_split.csv",
        features=f"{POWER_DIR}/features.npz",
        head=f"{POWER_DIR}/training/head.keras",
        baselines=f"{POWER_DIR}/evaluation/baselines.csv",
    output:
        metrics=f"{POWER_DIR}/evaluation/metrics.json",
        predictions=f"{POWER_DIR}/evaluation/predictions.csv",
        subgroups=f"{POWER_DIR}/evaluation/metrics_by_subgroup.csv",
        calibration=f"{POWER_DIR}/evaluation/calibration.csv",
        external=f"{POWER_DIR}/evaluation/external.csv",
        roc_png=f"{POWER_DIR}/evaluation/roc.png",
        calibration_png=f"{POWER_DIR}/evaluation/calibration.png",
    log:
        "logs/evaluate_power_classifier/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/evaluate_power_classifier/r{repeat}/s{strength}.tsv"
    params:
        external_names=[],


use rule explain_classifier as explain_power_classifier with:
    input:
        model=f"{POWER_DIR}/training/model.keras",
        split=f"{POWER_DIR}/split/cohort_split.csv",
        qc=f"{POWER_DIR}/qc.tsv",
        features=f"{POWER_DIR}/features.npz",
    output:
        maps=f"{POWER_DIR}/explain/gradcam.npz",
        regions=f"{POWER_DIR}/explain/regions.csv",
        region_tests=f"{POWER_DIR}/explain/region_tests.csv",
        sanity=f"{POWER_DIR}/explain/sanity.json",
        group_png=f"{POWER_DIR}/explain/group_maps.png",
        regions_png=f"{POWER_DIR}/explain/region_shares.png",
        examples_png=f"{POWER_DIR}/explain/examples.png",
    log:
        "logs/explain_power_classifier/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/explain_power_classifier/r{repeat}/s{strength}.tsv"


use rule compare_landmarks as compare_power_landmarks with:
    input:
        cohort=f"{POWER_DIR}/cohort.csv",
        qc=f"{POWER_DIR}/qc.tsv",
    output:
        landmark_tests=f"{POWER_DIR}/faces/landmark_tests.csv",
        shape_indices=f"{POWER_DIR}/faces/shape_indices.csv",
        shape_tests=f"{POWER_DIR}/faces/shape_tests.csv",
        comparison_png=f"{POWER_DIR}/faces/landmark_comparison.png",
        indices_png=f"{POWER_DIR}/faces/shape_indices.png",
        summary=f"{POWER_DIR}/faces/morphometry.json",
    log:
        "logs/compare_power_landmarks/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/compare_power_landmarks/r{repeat}/s{strength}.tsv"


use rule build_average_faces as build_power_average_faces with:
    input:
        cohort=f"{POWER_DIR}/cohort.csv",
        qc=f"{POWER_DIR}/qc.tsv",
    output:
        figure=report(
            f"{POWER_DIR}/faces/average_faces.png",
            caption="../report/power_average_faces.rst",
            category="Power",
            subcategory="Average faces",
            labels={"repeat": "{repeat}", "strength": "{strength}"},
        ),
        npz=f"{POWER_DIR}/faces/average_faces.npz",
        landmarks=f"{POWER_DIR}/faces/landmarks_mean.csv",
    log:
        "logs/build_power_average_faces/r{repeat}/s{strength}.log",
    benchmark:
        "benchmarks/build_power_average_faces/r{repeat}/s{strength}.tsv"


rule summarize_power:
    input:
        metrics=power_paths("evaluation/metrics.json"),
        shape_tests=power_paths("faces/shape_tests.csv"),
        cohort=power_paths("cohort.csv"),
        region_tests=power_paths("explain/region_tests.csv"),
        landmark_tests=power_paths("faces/landmark_tests.csv"),
        morphometry=power_paths("faces/morphometry.json"),
    output:
        table=report(
            "results/power/power.csv",
            caption="../report/power.rst",
            category="Power",
        ),
        summary="results/power/power.json",
        figure=report(
            "results/power/power.png",
            caption="../report/power.rst",
            category="Power",
        ),
        regions="results/power/power_regions.csv",
        regions_png=report(
            "results/power/power_regions.png",
            caption="../report/power_regions.rst",
            category="Power",
        ),
        landmarks="results/power/power_landmarks.csv",
    log:
        "logs/summarize_power.log",
    benchmark:
        "benchmarks/summarize_power.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        runs=[[int(r), s] for r in POWER_REPEATS for s in POWER_STRENGTHS],
        min_detection_rate=lookup(dpath="power/min_detection_rate", within=config),
        confidence=lookup(dpath="evaluation/confidence", within=config),
    script:
        "../scripts/summarize_power.py"
