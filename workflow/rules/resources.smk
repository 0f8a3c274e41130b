# Pretrained networks the workflow downloads. Local rule: cluster nodes often
# have no network, so it runs on the submit host.


rule fetch_mediapipe_models:
    output:
        face_landmark="resources/mediapipe/face_landmark.tflite",
        selfie="resources/mediapipe/selfie_segmentation.tflite",
    log:
        "logs/fetch_mediapipe_models.log",
    benchmark:
        "benchmarks/fetch_mediapipe_models.tsv"
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=500,
    script:
        "../scripts/fetch_mediapipe_models.py"


# dlib's models under a stable name (checked by sha256), so no rule names a
# path inside the installed environment.
rule place_dlib_models:
    output:
        landmarks=DLIB_MODEL_PATHS["landmarks"],
        resnet=DLIB_MODEL_PATHS["resnet"],
    log:
        "logs/place_dlib_models.log",
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../scripts/place_dlib_models.py"
