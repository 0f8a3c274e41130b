# Feature extraction with the frozen dlib face-recognition ResNet (Keras 3).


rule convert_backbone:
    input:
        dat=get_dlib_model("resnet"),
    output:
        weights="resources/backbone/dlib_resnet.weights.h5",
        sha256="resources/backbone/dlib_resnet.sha256",
    log:
        "logs/convert_backbone.log",
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
        source=config["features"]["input"],
        batch_size=config["features"]["batch_size"],
    script:
        "../scripts/extract_features.py"


rule merge_features:
    input:
        shards=get_feature_shards,
    output:
        features="results/features/features.npz",
    log:
        "logs/merge_features.log",
    conda:
        "../../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/merge_features.py"
