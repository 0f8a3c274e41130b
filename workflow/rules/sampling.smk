checkpoint select_pool_candidates:
    input:
        cases=config["cases"],
        pool=config["reference_pool"],
        cases_qc=get_case_qc_tables,
        pool_qc=get_earlier_pool_qc_tables,
        sex_model=get_sex_model(),
        sex_report=get_sex_report(),
        pool_features=get_earlier_pool_feature_shards,
    output:
        candidates="results/sampling/candidates/round{round}.tsv",
    log:
        "logs/select_pool_candidates/round{round}.log",
    benchmark:
        "benchmarks/select_pool_candidates/round{round}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        age_bins=lookup(dpath="sampling/age_bins", within=config),
        match_on=lookup(dpath="sampling/match_on", within=config),
        ratio=lookup(dpath="sampling/ratio", within=config),
        oversample=lookup(dpath="sampling/oversample", within=config),
        seed=lookup(dpath="seed", within=config),
        shard_size=lookup(dpath="preprocess/shard_size", within=config),
        sex_confidence=get_sex_param("sex_confidence"),
    script:
        "../scripts/select_pool_candidates.py"


rule sample_matched_controls:
    input:
        qc="results/qc/preprocess.tsv",
        cases=config["cases"],
        pool=config["reference_pool"],
        sex_model=get_sex_model(),
        sex_report=get_sex_report(),
        pool_features=get_pool_feature_shards,
    output:
        cohort="results/cohort/cohort.csv",
        table1="results/cohort/table1.csv",
        table1_png=report(
            "results/cohort/table1.png",
            caption="../report/table1.rst",
            category="3. Cohort",
        ),
        balance="results/cohort/balance.csv",
        flow_png=report(
            "results/cohort/flow.png",
            caption="../report/flow.rst",
            category="3. Cohort",
        ),
        flow_svg="results/cohort/flow.svg",
        shortfall="results/cohort/shortfall.csv",
    log:
        "logs/sample_matched_controls.log",
    benchmark:
        "benchmarks/sample_matched_controls.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        age_bins=lookup(dpath="sampling/age_bins", within=config),
        match_on=lookup(dpath="sampling/match_on", within=config),
        ratio=lookup(dpath="sampling/ratio", within=config),
        allow_shortfall=lookup(dpath="sampling/allow_shortfall", within=config),
        seed=lookup(dpath="seed", within=config),
        sex_confidence=get_sex_param("sex_confidence"),
        sex_min_accuracy=get_sex_param("sex_min_accuracy"),
    script:
        "../scripts/sample_matched_controls.py"


rule train_sex_classifier:
    input:
        sheet=get_sex_training_sheet(),
        pool=config["reference_pool"],
        qc=get_sex_training_tables("results/preprocess/{batch}/{shard}.tsv"),
        features=get_sex_training_tables("results/features/{batch}/{shard}.npz"),
    output:
        model="results/sampling/sex/classifier.npz",
        report="results/cohort/sex_inference.csv",
    log:
        "logs/train_sex_classifier.log",
    benchmark:
        "benchmarks/train_sex_classifier.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        from_sex_reference=get_sex_training_batch() == "sexref",
        age_bins=lookup(dpath="sampling/age_bins", within=config),
        confidence=lookup(dpath="sampling/sex_confidence", within=config),
        min_accuracy=lookup(dpath="sampling/sex_min_accuracy", within=config),
        seed=lookup(dpath="seed", within=config),
        identity_threshold=lookup(dpath="split/identity_threshold", within=config),
        linkage=lookup(dpath="split/linkage", within=config),
    script:
        "../scripts/train_sex_classifier.py"
