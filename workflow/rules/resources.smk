# Pretrained networks the workflow downloads. Local rule: cluster nodes often
# have no network, so it runs on the submit host.


rule fetch_mediapipe_models:
    output:
        face_landmark="resources/mediapipe/face_landmark.tflite",
        selfie="resources/mediapipe/selfie_segmentation.tflite",
    log:
        "logs/fetch_mediapipe_models.log",
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../scripts/fetch_mediapipe_models.py"
