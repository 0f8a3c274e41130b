# Feature extraction with the frozen dlib face-recognition ResNet (Keras 3).


rule convert_backbone:
    input:
        dat=DLIB_MODEL_PATHS["resnet"],
    output:
        weights="resources/backbone/dlib_resnet.weights.h5",
        sha256="resources/backbone/dlib_resnet.sha256",
    log:
        "logs/convert_backbone.log",
    benchmark:
        "benchmarks/convert_backbone.tsv"
    conda:
        "../../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/convert_backbone.py"


rule extract_features:
    input:
        qc="results/preprocess/{batch}/{shard}.tsv",
        weights="resources/backbone/dlib_resnet.weights.h5",
    output:
        features="results/features/{batch}/{shard}.npz",
    log:
        "logs/extract_features/{batch}/{shard}.log",
    benchmark:
        "benchmarks/extract_features/{batch}/{shard}.tsv"
    conda:
        "../../envs/features.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        gpu=config["features"]["gpu"],
    params:
        source=lookup(dpath="features/input", within=config),
        batch_size=lookup(dpath="features/batch_size", within=config),
    script:
        "../scripts/extract_features.py"


rule merge_features:
    input:
        shards=get_feature_shards,
    output:
        features="results/features/features.npz",
    log:
        "logs/merge_features.log",
    benchmark:
        "benchmarks/merge_features.tsv"
    conda:
        "../../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/merge_features.py"


rule collect_external_sheet:
    input:
        sheet=get_external_sheet,
        qc=get_sheet_qc_tables,
        shards=get_sheet_feature_shards,
    output:
        features="results/external/{name}/features.npz",
        labels="results/external/{name}/labels.csv",
        qc="results/external/{name}/qc.tsv",
    log:
        "logs/collect_external_sheet/{name}.log",
    benchmark:
        "benchmarks/collect_external_sheet/{name}.tsv"
    conda:
        "../../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        kind="external",
    script:
        "../scripts/collect_sheet_features.py"


rule collect_reference_sheet:
    input:
        sheet=branch(
            config["audit"]["reference_sheet"] is not None,
            then=config["audit"]["reference_sheet"],
        ),
        qc=get_sheet_qc_tables,
        shards=get_sheet_feature_shards,
    output:
        features="results/reference/features.npz",
        labels="results/reference/labels.csv",
        qc="results/reference/qc.tsv",
    log:
        "logs/collect_reference_sheet.log",
    benchmark:
        "benchmarks/collect_reference_sheet.tsv"
    conda:
        "../../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        # A function, not the string: --lint flags a string param that prefixes an input
        # path, and a reference sheet is often named reference*.csv.
        kind=lambda wildcards: "reference",
    script:
        "../scripts/collect_sheet_features.py"
