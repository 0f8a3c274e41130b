# Evaluation of the trained head on the held-out half, baselines/shortcut
# audits on the same split, and optional repeated split + training.
# Order: audit_baselines and repeat_training feed evaluate_classifier, which
# writes the headline results/evaluation/metrics.json.


rule audit_baselines:
    input:
        split="results/split/cohort_split.csv",
        features="results/features/features.npz",
        qc="results/qc/preprocess.tsv",
        head=branch(
            config["audit"]["reference_sheet"] is not None,
            then="results/training/head.keras",
        ),
        reference_features=branch(
            config["audit"]["reference_sheet"] is not None,
            then="results/reference/features.npz",
        ),
    output:
        baselines="results/evaluation/baselines.csv",
        image_stats="results/evaluation/image_stats.csv",
        roc_png=report(
            "results/evaluation/baselines_roc.png",
            caption="../report/baselines_roc.rst",
            category="5. Evaluation",
        ),
    log:
        "logs/audit_baselines.log",
    benchmark:
        "benchmarks/audit_baselines.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        seed=lookup(dpath="seed", within=config),
        confidence=lookup(dpath="evaluation/confidence", within=config),
        match_on=lookup(dpath="sampling/match_on", within=config),
    script:
        "../scripts/audit_baselines.py"


rule repeat_training:
    input:
        split="results/split/cohort_split.csv",
        features="results/features/features.npz",
    output:
        repeats="results/evaluation/repeats.csv",
    log:
        "logs/repeat_training.log",
    benchmark:
        "benchmarks/repeat_training.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        gpu=config["training"]["gpu"],
    params:
        seed=lookup(dpath="seed", within=config),
        repeats=lookup(dpath="evaluation/repeats", within=config),
        age_bins=lookup(dpath="sampling/age_bins", within=config),
        test_fraction=lookup(dpath="split/test_fraction", within=config),
        identity_threshold=lookup(dpath="split/identity_threshold", within=config),
        linkage=lookup(dpath="split/linkage", within=config),
        units=lookup(dpath="training/units", within=config),
        dropout=lookup(dpath="training/dropout", within=config),
        l2=lookup(dpath="training/l2", within=config),
        learning_rate=lookup(dpath="training/learning_rate", within=config),
        batch_size=lookup(dpath="training/batch_size", within=config),
        epochs=lookup(dpath="training/epochs", within=config),
        standardize=lookup(dpath="training/standardize", within=config),
    script:
        "../scripts/repeat_training.py"


rule evaluate_classifier:
    input:
        split="results/split/cohort_split.csv",
        features="results/features/features.npz",
        head="results/training/head.keras",
        baselines="results/evaluation/baselines.csv",
        repeats=branch(
            config["evaluation"]["repeats"] > 0,
            then="results/evaluation/repeats.csv",
        ),
        external_features=expand(
            "results/external/{name}/features.npz",
            name=list(EXTERNAL),
        ),
        external_labels=expand(
            "results/external/{name}/labels.csv",
            name=list(EXTERNAL),
        ),
    output:
        metrics="results/evaluation/metrics.json",
        predictions="results/evaluation/predictions.csv",
        subgroups="results/evaluation/metrics_by_subgroup.csv",
        calibration="results/evaluation/calibration.csv",
        external="results/evaluation/external.csv",
        roc_png=report(
            "results/evaluation/roc.png",
            caption="../report/roc.rst",
            category="5. Evaluation",
        ),
        calibration_png=report(
            "results/evaluation/calibration.png",
            caption="../report/calibration.rst",
            category="5. Evaluation",
        ),
    log:
        "logs/evaluate_classifier.log",
    benchmark:
        "benchmarks/evaluate_classifier.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        seed=lookup(dpath="seed", within=config),
        age_bins=lookup(dpath="sampling/age_bins", within=config),
        threshold=lookup(dpath="evaluation/threshold", within=config),
        confidence=lookup(dpath="evaluation/confidence", within=config),
        n_bootstrap=lookup(dpath="evaluation/n_bootstrap", within=config),
        calibration_bins=lookup(dpath="evaluation/calibration_bins", within=config),
        warn_auc=lookup(dpath="audit/warn_auc", within=config),
        age_sex_range=lookup(dpath="audit/age_sex_range", within=config),
        external_names=list(EXTERNAL),
    script:
        "../scripts/evaluate_classifier.py"
