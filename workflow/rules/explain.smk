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
        layer=lookup(dpath="explain/layer", within=config),
        max_images=lookup(dpath="explain/max_images", within=config),
        n_examples=lookup(dpath="explain/n_examples", within=config),
        gradcam_batch_size=lookup(dpath="explain/batch_size", within=config),
        source=lookup(dpath="features/input", within=config),
        threshold=lookup(dpath="evaluation/threshold", within=config),
        units=lookup(dpath="training/units", within=config),
        dropout=lookup(dpath="training/dropout", within=config),
        l2=lookup(dpath="training/l2", within=config),
        learning_rate=lookup(dpath="training/learning_rate", within=config),
        batch_size=lookup(dpath="training/batch_size", within=config),
        epochs=lookup(dpath="training/epochs", within=config),
        standardize=lookup(dpath="training/standardize", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/explain_classifier.py"
