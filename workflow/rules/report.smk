rule record_provenance:
    input:
        unpack(get_provenance_files),
    output:
        record="results/provenance.json",
    log:
        "logs/record_provenance.log",
    benchmark:
        "benchmarks/record_provenance.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        config=get_recorded_config(),
    script:
        "../scripts/record_provenance.py"


# The report's own pages: the study summary (first category), methods text,
# model card and every result table rendered as a table. No individual faces.


rule summarize_study:
    input:
        metrics="results/evaluation/metrics.json",
        table1="results/cohort/table1.csv",
        balance="results/cohort/balance.csv",
        shortfall="results/cohort/shortfall.csv",
        sex_report=get_sex_report(),
        qc="results/qc/preprocess.tsv",
        provenance="results/provenance.json",
        records=get_stage_records(),
    output:
        summary=report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="1. Summary",
        ),
        landing="results/report/summary_landing.html",
    log:
        "logs/summarize_study.log",
    benchmark:
        "benchmarks/summarize_study.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/summarize_study.py"


rule write_methods:
    input:
        provenance="results/provenance.json",
        sex_report=get_sex_report(),
    output:
        markdown="results/report/methods.md",
        html=report(
            "results/report/methods.html",
            caption="../report/methods.rst",
            category="8. Methods",
        ),
        model_card=report(
            "results/report/model_card.html",
            caption="../report/model_card.rst",
            category="9. Model card and limits",
        ),
    log:
        "logs/write_methods.log",
    benchmark:
        "benchmarks/write_methods.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../scripts/write_methods.py"


rule render_report_tables:
    input:
        qc_status="results/qc/preprocess.tsv",
        table1="results/cohort/table1.csv",
        balance="results/cohort/balance.csv",
        baselines="results/evaluation/baselines.csv",
        subgroups="results/evaluation/metrics_by_subgroup.csv",
        region_tests="results/explain/region_tests.csv",
        landmark_tests="results/faces/landmark_tests.csv",
        shape_tests="results/faces/shape_tests.csv",
    output:
        qc_status=report(
            "results/report/tables/qc_status.html",
            caption="../report/tables/qc_status.rst",
            category="2. Quality control",
        ),
        table1=report(
            "results/report/tables/table1.html",
            caption="../report/tables/table1.rst",
            category="3. Cohort",
        ),
        balance=report(
            "results/report/tables/balance.html",
            caption="../report/tables/balance.rst",
            category="3. Cohort",
        ),
        baselines=report(
            "results/report/tables/baselines.html",
            caption="../report/tables/baselines.rst",
            category="5. Evaluation",
        ),
        subgroups=report(
            "results/report/tables/subgroups.html",
            caption="../report/tables/subgroups.rst",
            category="5. Evaluation",
        ),
        region_tests=report(
            "results/report/tables/region_tests.html",
            caption="../report/tables/region_tests.rst",
            category="6. Explanation",
        ),
        landmark_tests=report(
            "results/report/tables/landmark_tests.html",
            caption="../report/tables/landmark_tests.rst",
            category="7. Average faces",
        ),
        shape_tests=report(
            "results/report/tables/shape_tests.html",
            caption="../report/tables/shape_tests.rst",
            category="7. Average faces",
        ),
    log:
        "logs/render_report_tables.log",
    benchmark:
        "benchmarks/render_report_tables.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/render_report_tables.py"
