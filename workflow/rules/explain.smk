# Guided Grad-CAM of the trained classifier on held-out images, region shares
# of the attribution, and sanity checks of what the maps can show.


rule explain_classifier:
    input:
        model="results/training/model.keras",
        split="results/split/cohort_split.csv",
        qc="results/qc/preprocess.tsv",
        features="results/features/features.npz",
    output:
        maps="results/explain/gradcam.npz",
        regions="results/explain/regions.csv",
        region_tests="results/explain/region_tests.csv",
        sanity="results/explain/sanity.json",
        group_png=report(
            "results/explain/group_maps.png",
            caption="../report/group_maps.rst",
            category="6. Explanation",
        ),
        regions_png=report(
            "results/explain/region_shares.png",
            caption="../report/region_shares.rst",
            category="6. Explanation",
        ),
        examples_png=faces_in_report(
            "results/explain/examples.png",
            caption="../report/gradcam_examples.rst",
            category="6. Explanation",
        ),
    log:
        "logs/explain_classifier.log",
    benchmark:
        "benchmarks/explain_classifier.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        gpu=config["explain"]["gpu"],
    params:
        explain=config["explain"],
        source=config["features"]["input"],
        threshold=config["evaluation"]["threshold"],
        training=config["training"],
        seed=config["seed"],
    script:
        "../scripts/explain_classifier.py"
