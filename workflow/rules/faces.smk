# Average faces (the paper's Figure 3) and landmark morphometry of cases
# versus their matched controls, from the chips and landmark records that
# preprocessing wrote for the cohort's images.


rule build_average_faces:
    input:
        cohort="results/cohort/cohort.csv",
        qc="results/qc/preprocess.tsv",
    output:
        figure=report(
            "results/faces/average_faces.png",
            caption="../report/average_faces.rst",
            category="7. Average faces",
        ),
        npz="results/faces/average_faces.npz",
        landmarks="results/faces/landmarks_mean.csv",
    log:
        "logs/build_average_faces.log",
    benchmark:
        "benchmarks/build_average_faces.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=lookup(dpath="faces/input", within=config),
        min_group_size=lookup(dpath="faces/min_group_size", within=config),
        show_faces=lookup(dpath="report/show_faces", within=config),
    script:
        "../scripts/build_average_faces.py"


rule compare_landmarks:
    input:
        cohort="results/cohort/cohort.csv",
        qc="results/qc/preprocess.tsv",
    output:
        landmark_tests="results/faces/landmark_tests.csv",
        shape_indices="results/faces/shape_indices.csv",
        shape_tests="results/faces/shape_tests.csv",
        comparison_png=report(
            "results/faces/landmark_comparison.png",
            caption="../report/landmark_comparison.rst",
            category="7. Average faces",
        ),
        indices_png=report(
            "results/faces/shape_indices.png",
            caption="../report/shape_indices.rst",
            category="7. Average faces",
        ),
        summary="results/faces/morphometry.json",
    log:
        "logs/compare_landmarks.log",
    benchmark:
        "benchmarks/compare_landmarks.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        seed=lookup(dpath="seed", within=config),
        n_permutations=lookup(dpath="faces/n_permutations", within=config),
        min_group_size=lookup(dpath="faces/min_group_size", within=config),
    script:
        "../scripts/compare_landmarks.py"
