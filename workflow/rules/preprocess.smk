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
        models=get_mask_model(),
    output:
        qc="results/preprocess/{batch}/{shard}.tsv",
        chips=directory("results/preprocess/{batch}/{shard}"),
    log:
        "logs/preprocess_images/{batch}/{shard}.log",
    benchmark:
        "benchmarks/preprocess_images/{batch}/{shard}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        members=get_shard_members,
        settings=config["preprocess"],
        landmark_model=get_dlib_model("landmarks"),
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
        contact_sheet=faces_in_report(
            "results/qc/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="2. Quality control",
        ),
    log:
        "logs/summarize_preprocessing.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        seed=config["seed"],
        size=config["preprocess"]["contact_sheet_size"],
    script:
        "../scripts/summarize_preprocessing.py"
