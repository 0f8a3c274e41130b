checkpoint select_pool_candidates:
    input:
        cases=config["cases"],
        pool=config["reference_pool"],
        cases_qc=get_case_qc_tables,
        pool_qc=get_earlier_pool_qc_tables,
    output:
        candidates="results/sampling/candidates/round{round}.tsv",
    log:
        "logs/select_pool_candidates/round{round}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        age_bins=config["sampling"]["age_bins"],
        match_on=config["sampling"]["match_on"],
        ratio=config["sampling"]["ratio"],
        oversample=config["sampling"]["oversample"],
        seed=config["seed"],
        shard_size=config["preprocess"]["shard_size"],
    script:
        "../scripts/select_pool_candidates.py"


rule sample_matched_controls:
    input:
        qc="results/qc/preprocess.tsv",
        cases=config["cases"],
        pool=config["reference_pool"],
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
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        age_bins=config["sampling"]["age_bins"],
        match_on=config["sampling"]["match_on"],
        ratio=config["sampling"]["ratio"],
        allow_shortfall=config["sampling"]["allow_shortfall"],
        seed=config["seed"],
    script:
        "../scripts/sample_matched_controls.py"
