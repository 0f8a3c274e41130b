"""Methods text, ready to paste: one paragraph per stage, with references.

Written from the config a run actually used and the package versions it
recorded (both in ``results/provenance.json``), so the text says what was
done, not what the defaults are. Citations are keys in ``{braces}`` inside the
paragraph templates; they are numbered in order of first use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from phenoface.report_html import escape, page

#: Every reference a paragraph may cite, by key.
REFERENCES: dict[str, str] = {
    "liang2020": "Liang B, Yang N, He G, et al. Identification of the facial features of patients with cancer: "
    "a deep learning-based pilot study. J Med Internet Res. 2020;22(4):e17234.",
    "snakemake": "Mölder F, Jablonski KP, Letcher B, et al. Sustainable data analysis with Snakemake. "
    "F1000Research. 2021;10:33.",
    "king2009": "King DE. Dlib-ml: a machine learning toolkit. J Mach Learn Res. 2009;10:1755-1758.",
    "dalal2005": "Dalal N, Triggs B. Histograms of oriented gradients for human detection. Proc IEEE CVPR. "
    "2005:886-893.",
    "kazemi2014": "Kazemi V, Sullivan J. One millisecond face alignment with an ensemble of regression trees. "
    "Proc IEEE CVPR. 2014:1867-1874.",
    "sagonas2016": "Sagonas C, Antonakos E, Tzimiropoulos G, Zafeiriou S, Pantic M. 300 Faces In-the-Wild "
    "Challenge: database and results. Image Vis Comput. 2016;47:3-18.",
    "mediapipe": "Lugaresi C, Tang J, Nash H, et al. MediaPipe: a framework for building perception pipelines. "
    "arXiv:1906.08172. 2019.",
    "kartynnik2019": "Kartynnik Y, Ablavatski A, Grishchenko I, Grundmann M. Real-time facial surface geometry "
    "from monocular video on mobile GPUs. arXiv:1907.06724. 2019.",
    "he2016": "He K, Zhang X, Ren S, Sun J. Deep residual learning for image recognition. Proc IEEE CVPR. "
    "2016:770-778.",
    "kingma2015": "Kingma DP, Ba J. Adam: a method for stochastic optimization. ICLR. 2015. arXiv:1412.6980.",
    "austin2009": "Austin PC. Balance diagnostics for comparing the distribution of baseline covariates between "
    "treatment groups in propensity-score matched samples. Stat Med. 2009;28(25):3083-3107.",
    "delong1988": "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated "
    "receiver operating characteristic curves: a nonparametric approach. Biometrics. 1988;44(3):837-845.",
    "sun2014": "Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas under correlated "
    "receiver operating characteristic curves. IEEE Signal Process Lett. 2014;21(11):1389-1393.",
    "wilson1927": "Wilson EB. Probable inference, the law of succession, and statistical inference. J Am Stat "
    "Assoc. 1927;22(158):209-212.",
    "efron1993": "Efron B, Tibshirani RJ. An Introduction to the Bootstrap. New York: Chapman & Hall; 1993.",
    "pedregosa2011": "Pedregosa F, Varoquaux G, Gramfort A, et al. Scikit-learn: machine learning in Python. "
    "J Mach Learn Res. 2011;12:2825-2830.",
    "selvaraju2017": "Selvaraju RR, Cogswell M, Das A, Vedantam R, Parikh D, Batra D. Grad-CAM: visual "
    "explanations from deep networks via gradient-based localization. Proc IEEE ICCV. 2017:618-626.",
    "springenberg2015": "Springenberg JT, Dosovitskiy A, Brox T, Riedmiller M. Striving for simplicity: the all "
    "convolutional net. ICLR workshop. 2015. arXiv:1412.6806.",
    "adebayo2018": "Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity checks for saliency "
    "maps. Adv Neural Inf Process Syst. 2018;31:9505-9515.",
    "mann1947": "Mann HB, Whitney DR. On a test of whether one of two random variables is stochastically larger "
    "than the other. Ann Math Stat. 1947;18(1):50-60.",
    "benjamini1995": "Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and powerful "
    "approach to multiple testing. J R Stat Soc B. 1995;57(1):289-300.",
    "gower1975": "Gower JC. Generalized Procrustes analysis. Psychometrika. 1975;40(1):33-51.",
    "coetzee2009": "Coetzee V, Chen J, Perrett DI, Stephen ID. Deciphering faces: quantifiable visual cues to "
    "weight. Perception. 2009;38(11):1700-1711.",
}

MASK_TEXT = {
    "face_mesh": "the face region was kept by filling the face-oval contour of MediaPipe's face-landmark network "
    "{mediapipe}{kartynnik2019} run on the chip (face with forehead, without hair, ears or background), falling "
    "back to the convex hull of the 68 landmarks when the network's face-presence score was low",
    "portrait": "the person was separated from the background by MediaPipe selfie segmentation {mediapipe} "
    "(hair and neck kept)",
    "landmark_hull": "the background was masked outside the convex hull of the 68 landmarks, with the eyebrows "
    "lifted to cover the forehead",
    "none": "no background mask was applied",
}


def _join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def age_bins_text(bins: Sequence[int]) -> str:
    """Age bins from their left edges as text: ``0-9, 10-19 … and 70+``."""
    edges = list(bins)
    parts = [f"{low}-{high - 1}" for low, high in zip(edges, edges[1:])]
    return _join([*parts, f"{edges[-1]}+"]) if edges else "none"


def _controls_per_case(ratio: int) -> str:
    """``one control`` / ``3 controls``."""
    return "one control" if ratio == 1 else f"{ratio} controls"


def _upsampling(times: int) -> str:
    """How often the detector upsampled the image, in words."""
    return {0: "without upsampling", 1: "upsampled once", 2: "upsampled twice"}.get(
        times, f"upsampled {times} times"
    )


def _version(packages: Mapping[str, str | None], name: str) -> str:
    """`` 1.2.3`` of a recorded package, or an empty string when not recorded."""
    version = packages.get(name)
    return f" {version}" if version else ""


def stage_paragraphs(
    config: Mapping[str, Any], provenance: Mapping[str, Any], sex_inferred: bool = False
) -> list[tuple[str, str]]:
    """``(stage, paragraph)`` pairs with ``{key}`` citations, from the config used and the versions recorded.

    ``sex_inferred``: pool rows without sex were given one from the face (the
    run wrote results/cohort/sex_inference.csv); the sampling paragraph says how.
    """
    packages = provenance.get("packages", {})
    pre, sampling, features = config["preprocess"], config["sampling"], config["features"]
    split, training, evaluation = config["split"], config["training"], config["evaluation"]
    explain, faces, audit = config["explain"], config["faces"], config["audit"]
    commit = (provenance.get("code") or {}).get("commit") or "unknown"
    software = (
        f"The analysis followed Liang et al. {{liang2020}} and was run with the phenoface workflow "
        f"(commit {commit[:12]}) in Snakemake{_version(packages, 'snakemake')} {{snakemake}} under Python "
        f"{provenance.get('python', '3')}, with dlib{_version(packages, 'dlib-bin')} {{king2009}}, "
        f"TensorFlow{_version(packages, 'tensorflow-cpu')} with Keras{_version(packages, 'keras')}, "
        f"scikit-learn{_version(packages, 'scikit-learn')} {{pedregosa2011}}, SciPy{_version(packages, 'scipy')}, "
        f"pandas{_version(packages, 'pandas')}, NumPy{_version(packages, 'numpy')}, "
        f"OpenCV{_version(packages, 'opencv-python-headless')} and Pillow{_version(packages, 'pillow')}. "
        f"Every random choice derived from the master seed {config['seed']}; the configuration, input and "
        "model checksums and package versions are recorded in results/provenance.json."
    )
    multi = (
        "the highest-scoring face was kept"
        if pre["multi_face"] == "keep_best"
        else "images with several faces were excluded"
    )
    preprocessing = (
        "Faces were detected with dlib's histogram-of-oriented-gradients detector {dalal2005}{king2009} "
        f"({_upsampling(pre['upsample'])}, on the image padded by {pre['pad_fraction']:g} of its longer side); "
        f"when several faces were found {multi}, and faces narrower than {pre['min_face_size']} pixels were "
        "excluded. Sixty-eight landmarks were placed with dlib's ensemble-of-regression-trees shape predictor "
        "{kazemi2014}, trained on the iBUG 300-W data {sagonas2016}. Each face was aligned to an upright "
        f"{pre['chip_size']} x {pre['chip_size']} pixel chip (dlib's face-chip geometry, padding "
        f"{pre['chip_padding']:g}) and turned about its centre so that the eye centres were level; "
        f"{MASK_TEXT[pre['mask_method']]}. This mask is not the fully convolutional segmentation network of the "
        "original study, whose weights were not published. Every input image received one quality-control "
        "status (ok, unreadable, no face, too small, multiple faces, error)."
    )
    match_on = " and ".join(sampling["match_on"])
    strata = (
        "sex x " if "sex" in sampling["match_on"] else ""
    ) + f"age bins ({age_bins_text(sampling['age_bins'])} years)"
    shortfall = (
        "strata the pool could not fill were recorded and drawn as far as possible"
        if sampling["allow_shortfall"]
        else "a stratum the pool could not fill stopped the run"
    )
    matching = (
        f"Controls were drawn from the reference pool to match the cases on {match_on}: within strata of "
        f"{strata}, {_controls_per_case(sampling['ratio'])} per case were sampled without replacement with a seeded "
        "random generator among pool images that passed quality control (pool images were preprocessed in "
        f"rounds of {sampling['oversample']:g} candidates per control needed, up to {sampling['max_rounds']} "
        f"rounds); {shortfall}. Balance was assessed by standardized mean differences of age and sex "
        "{austin2009} and a chi-square test of group against stratum."
    )
    if sex_inferred:
        source = (
            "a labelled reference sheet"
            if sampling.get("sex_reference")
            else "the cases that passed quality control"
        )
        matching += (
            " Pool images without a recorded sex were given one by a logistic regression on the 128-dimensional "
            f"dlib descriptors {{pedregosa2011}}, trained on {source}; only predictions with a probability of at "
            f"least {sampling.get('sex_confidence', 0.95):g} were used, and age bins whose cross-validated accuracy "
            f"among such predictions fell below {sampling.get('sex_min_accuracy', 0.9):g} were matched on age alone."
        )
    standardize = (
        "standardised with the training half's mean and variance"
        if training["standardize"]
        else "used unstandardised, as in the original study"
    )
    model = (
        "Each chip ("
        + ("masked" if features["input"] == "masked" else "unmasked")
        + ") was passed through dlib's face-recognition ResNet {he2016}{king2009}, rebuilt in Keras with its "
        "weights frozen, and the 256-dimensional pooled features were taken as input to a classifier head "
        f"({standardize}): a fully connected layer of {training['units']} ReLU units with L2 penalty "
        f"{training['l2']:g}, dropout {training['dropout']:g}, and one sigmoid output unit with the same "
        f"penalty, trained with Adam {{kingma2015}} (learning rate {training['learning_rate']:g}, minibatches "
        f"of {training['batch_size']}, {training['epochs']} epochs) on binary cross-entropy, following the "
        "original study {liang2020}."
    )
    splitting = (
        f"The cohort was split into training and test sets with {split['test_fraction']:.0%} held out, "
        "stratified by group, sex and age bin and grouped by person, so that photographs of one person never "
        "fell on both sides: persons were given by subject identifiers where the sheets had them and "
        f"otherwise by {split['linkage']}-linkage clusters of the 128-dimensional dlib descriptors at a "
        f"Euclidean distance of {split['identity_threshold']:g}."
    )
    level = f"{evaluation['confidence']:.0%}"
    repeats = (
        f" Splitting and training were repeated {evaluation['repeats']} times with derived seeds, and the "
        "mean, standard deviation and range of the test AUC were reported."
        if evaluation["repeats"]
        else ""
    )
    external = (
        f" {len(evaluation['external'])} external labelled set(s) were preprocessed in the same way and scored "
        "by the trained model separately."
        if evaluation["external"]
        else ""
    )
    reference = (
        " A second healthy reference sheet was scored against held-out pool controls to test whether the model "
        "responds to the image source."
        if audit["reference_sheet"]
        else ""
    )
    evaluating = (
        "On the held-out set, discrimination was summarised by the area under the ROC curve (AUC) with a "
        f"{level} DeLong confidence interval {{delong1988}}{{sun2014}}, cross-checked by a stratified bootstrap "
        f"of {evaluation['n_bootstrap']} replicates {{efron1993}}; accuracy, sensitivity, specificity and "
        f"predictive values at a probability threshold of {evaluation['threshold']:g} with {level} Wilson "
        f"intervals {{wilson1927}}; the Brier score and a calibration curve in {evaluation['calibration_bins']} "
        "bins; and the same metrics by sex and age bin. On the same split, baselines were fitted: a logistic "
        "regression on the dlib descriptor, a model of the matched variables only, and a model of image "
        "statistics only (resolution, compression, brightness, contrast, saturation, sharpness and background "
        f"colour), whose AUC above {audit['warn_auc']:g} was taken as a sign of an acquisition shortcut."
        + reference
        + repeats
        + external
    )
    cap = f"up to {explain['max_images']}" if explain["max_images"] else "all"
    explaining = (
        f"The evaluated model was explained on {cap} held-out images per group with Grad-CAM "
        f"{{selvaraju2017}} at block {explain['layer']} and guided Grad-CAM (with guided backpropagation "
        "{springenberg2015}), each image for its own group's logit. The share of each map's mass in "
        "landmark-defined facial regions was compared between cases and controls with Mann-Whitney tests "
        "{mann1947} and Benjamini-Hochberg q-values {benjamini1995}, both for own-class evidence and for case "
        "evidence on both groups. Following Adebayo et al. {adebayo2018}, the maps were checked against maps "
        "from a randomly re-initialised head and from a head retrained on shuffled labels (Spearman "
        "correlation), and guided backpropagation was compared between the two classes."
    )
    averaged = "unmasked" if faces["input"] == "chip" else "masked"
    morphometry = (
        f"Average faces were computed per group and sex from the aligned {averaged} "
        f"chips (groups of fewer than {faces['min_group_size']} faces not shown). Landmark shapes were "
        "compared after generalized Procrustes superimposition {gower1975}: per-landmark shifts and the "
        "Procrustes distance between group mean shapes were tested with "
        f"{faces['n_permutations']} permutations of the group labels within matching strata, with "
        "Benjamini-Hochberg q-values {benjamini1995}. Three facial-adiposity indices after Coetzee et al. "
        "{coetzee2009} (width-to-height ratio, cheek-to-jaw width ratio, perimeter-to-area ratio), approximated "
        "on the dlib landmarks, were compared by group difference with a Welch confidence interval, Cohen's d, "
        "a within-stratum permutation p-value and an ordinary least squares difference adjusted for age (and "
        "sex)."
    )
    return [
        ("Software and reproducibility", software),
        ("Face detection, landmarks, alignment and masking", preprocessing),
        ("Control sampling", matching),
        ("Features and classifier", model),
        ("Train/test split", splitting),
        ("Evaluation", evaluating),
        ("Explanation", explaining),
        ("Average faces and morphometry", morphometry),
    ]


def number_citations(paragraphs: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """Replace ``{key}`` citations by ``[n]`` in order of first use; return the paragraphs and keys cited.

    Adjacent citations merge into one bracket (``[2,3]``). An unknown key raises ``KeyError``.
    """
    order: list[str] = []

    def number(key: str) -> int:
        if key not in REFERENCES:
            raise KeyError(f"unknown reference {key!r}")
        if key not in order:
            order.append(key)
        return order.index(key) + 1

    def replace(match: re.Match) -> str:
        keys = re.findall(r"\{(\w+)\}", match.group(0))
        return "[" + ",".join(str(number(key)) for key in keys) + "]"

    numbered = [(title, re.sub(r"(?:\{\w+\})+", replace, text)) for title, text in paragraphs]
    return numbered, order


def methods_markdown(
    config: Mapping[str, Any], provenance: Mapping[str, Any], sex_inferred: bool = False
) -> str:
    """The methods section as Markdown: a heading and paragraph per stage, then the references."""
    paragraphs, cited = number_citations(stage_paragraphs(config, provenance, sex_inferred))
    lines = ["# Methods", ""]
    for title, text in paragraphs:
        lines += [f"## {title}", "", text, ""]
    lines += ["## References", ""]
    lines += [f"{index}. {REFERENCES[key]}" for index, key in enumerate(cited, start=1)]
    return "\n".join(lines) + "\n"


def methods_html(config: Mapping[str, Any], provenance: Mapping[str, Any], sex_inferred: bool = False) -> str:
    """The same methods section as a self-contained HTML page."""
    paragraphs, cited = number_citations(stage_paragraphs(config, provenance, sex_inferred))
    body = [
        '<p class="caption">Generated from the configuration this run used and the package versions it recorded '
        "(results/provenance.json); also in results/report/methods.md. Edit before publishing.</p>"
    ]
    for title, text in paragraphs:
        body.append(f"<h2>{escape(title)}</h2><p>{escape(text)}</p>")
    body.append('<h2>References</h2><ol class="refs">')
    body += [f"<li>{escape(REFERENCES[key])}</li>" for key in cited]
    body.append("</ol>")
    return page("Methods", "\n".join(body))
