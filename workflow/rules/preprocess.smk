rule check_image_content:
    input:
        cases=config["cases"],
        pool=config["reference_pool"],
        others=list(get_validation_sheets()),
        images=list(SHEET_ROWS["path"]),
    output:
        table="results/qc/image_checks.tsv",
    log:
        "logs/check_image_content.log",
    benchmark:
        "benchmarks/check_image_content.tsv"
    priority: 10
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        others=get_validation_sheets(),
    script:
        "../scripts/check_image_content.py"


rule preprocess_images:
    input:
        images=get_shard_images,
        landmark_model=DLIB_MODEL_PATHS["landmarks"],
        mask_models=get_mask_model(),
    output:
        qc="results/preprocess/{batch}/{shard}.tsv",
        chips=directory("results/preprocess/{batch}/{shard}"),
    log:
        "logs/preprocess_images/{batch}/{shard}.log",
    benchmark:
        "benchmarks/preprocess_images/{batch}/{shard}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: get_preprocess_threads
    resources:
        # Measured: ~200 MB per process (dlib's landmark model); forked workers share
        # it, but Snakemake's benchmark and many schedulers add up each one's RSS.
        mem_mb=lambda wildcards, threads: 300 + 250 * threads,
    params:
        members=get_shard_members,
        upsample=lookup(dpath="preprocess/upsample", within=config),
        pad_fraction=lookup(dpath="preprocess/pad_fraction", within=config),
        retry_detection=lookup(dpath="preprocess/retry_detection", within=config),
        min_face_size=lookup(dpath="preprocess/min_face_size", within=config),
        multi_face=lookup(dpath="preprocess/multi_face", within=config),
        chip_size=lookup(dpath="preprocess/chip_size", within=config),
        chip_padding=lookup(dpath="preprocess/chip_padding", within=config),
        mask_method=lookup(dpath="preprocess/mask_method", within=config),
    script:
        "../scripts/preprocess_images.py"


rule summarize_preprocessing:
    input:
        cases=config["cases"],
        pool=config["reference_pool"],
        checks="results/qc/image_checks.tsv",
        qc=get_qc_tables,
    output:
        qc="results/qc/preprocess.tsv",
    log:
        "logs/summarize_preprocessing.log",
    benchmark:
        "benchmarks/summarize_preprocessing.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/summarize_preprocessing.py"


rule draw_contact_sheet:
    input:
        qc="results/qc/preprocess.tsv",
    output:
        contact_sheet=faces_in_report(
            "results/qc/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="2. Quality control",
        ),
    log:
        "logs/draw_contact_sheet.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        seed=lookup(dpath="seed", within=config),
        size=lookup(dpath="preprocess/contact_sheet_size", within=config),
    script:
        "../scripts/draw_contact_sheet.py"
