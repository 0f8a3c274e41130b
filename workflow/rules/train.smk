# Train/test split (grouped by person, stratified by group x sex x age bin) and
# the paper's classifier head on the frozen dlib ResNet's pooled features.


rule split_cohort:
    input:
        cohort="results/cohort/cohort.csv",
        features="results/features/features.npz",
    output:
        table="results/split/cohort_split.csv",
        report="results/split/identity_clusters.json",
    log:
        "logs/split_cohort.log",
    benchmark:
        "benchmarks/split_cohort.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        test_fraction=lookup(dpath="split/test_fraction", within=config),
        identity_threshold=lookup(dpath="split/identity_threshold", within=config),
        linkage=lookup(dpath="split/linkage", within=config),
        age_bins=lookup(dpath="sampling/age_bins", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/split_cohort.py"


rule train_classifier:
    input:
        split="results/split/cohort_split.csv",
        features="results/features/features.npz",
        backbone="resources/backbone/dlib_resnet.weights.h5",
    output:
        head="results/training/head.keras",
        model="results/training/model.keras",
        history="results/training/history.csv",
        summary="results/training/training.json",
        curves_png=report(
            "results/training/training_curves.png",
            caption="../report/training_curves.rst",
            category="4. Training",
        ),
    log:
        "logs/train_classifier.log",
    benchmark:
        "benchmarks/train_classifier.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        gpu=config["training"]["gpu"],
    params:
        units=lookup(dpath="training/units", within=config),
        dropout=lookup(dpath="training/dropout", within=config),
        l2=lookup(dpath="training/l2", within=config),
        learning_rate=lookup(dpath="training/learning_rate", within=config),
        batch_size=lookup(dpath="training/batch_size", within=config),
        epochs=lookup(dpath="training/epochs", within=config),
        standardize=lookup(dpath="training/standardize", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/train_classifier.py"
