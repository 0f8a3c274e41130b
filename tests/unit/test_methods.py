"""Methods text: written from the config used and the versions recorded, with numbered references."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from phenoface.methods import REFERENCES, methods_html, methods_markdown, number_citations, stage_paragraphs

PROVENANCE = {
    "code": {"commit": "0123456789abcdef0123"},
    "python": "3.11.7",
    "packages": {
        "snakemake": "9.27.1",
        "dlib-bin": "20.0.1.post1",
        "keras": "3.15.1",
        "scikit-learn": "1.9.1",
    },
}


@pytest.fixture()
def default_config(repo_root: Path) -> dict:
    """The shipped config/config.yaml (it lists every key)."""
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


def test_default_methods_name_every_stage_setting_and_version(default_config: dict) -> None:
    """Values of the default config and the recorded versions appear in their paragraphs."""
    text = methods_markdown(default_config, PROVENANCE)
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == ["Software and reproducibility", "Face detection, landmarks, alignment and masking",
                        "Control sampling", "Features and classifier", "Train/test split", "Evaluation",
                        "Explanation", "Average faces and morphometry", "References"]  # fmt: skip
    assert "commit 0123456789ab" in text and "Snakemake 9.27.1" in text and "dlib 20.0.1.post1" in text
    assert "match the cases on age and sex" in text and "sex x age bins (0-9, 10-19" in text and "70+" in text
    assert "128 ReLU units with L2 penalty 0.001, dropout 0.25" in text and "5 epochs" in text
    assert "50% held out" in text and "complete-linkage" in text and "distance of 0.6" in text
    assert "2000 replicates" in text and "repeated 5 times" in text
    assert "block level2_block3" in text and "up to 200 held-out images" in text
    assert "2000 permutations" in text and "master seed 42" in text
    assert "MediaPipe's face-landmark network" in text and "not the fully convolutional" in text


def test_references_are_numbered_in_order_and_all_listed(default_config: dict) -> None:
    """Citations run 1..n in order of first use and each number has its reference, key ones included."""
    text = methods_markdown(default_config, PROVENANCE)
    body, references = text.split("## References")
    cited = [int(n) for group in re.findall(r"\[([\d,]+)\]", body) for n in group.split(",")]
    first_use = list(dict.fromkeys(cited))
    assert first_use == list(range(1, len(first_use) + 1))
    listed = re.findall(r"^(\d+)\. ", references, flags=re.MULTILINE)
    assert [int(n) for n in listed] == first_use
    for author in ("Liang B", "King DE", "DeLong ER", "Wilson EB", "Selvaraju RR", "Adebayo J", "Coetzee V",
                   "Lugaresi C", "Kazemi V", "Benjamini Y"):  # fmt: skip
        assert author in references


def test_text_follows_the_config_actually_used(default_config: dict) -> None:
    """Another mask, no repeats, age-only matching and an external set change the sentences."""
    config = copy.deepcopy(default_config)
    config["preprocess"]["mask_method"] = "landmark_hull"
    config["evaluation"].update(repeats=0, external=["a.csv"])
    config["sampling"]["match_on"] = ["age"]
    text = methods_markdown(config, PROVENANCE)
    assert "convex hull of the 68 landmarks" in text and "MediaPipe" not in text
    assert "repeated" not in text and "1 external labelled set(s)" in text
    assert "match the cases on age:" in text and "sex x age" not in text


def test_adjacent_citations_merge_and_unknown_keys_fail() -> None:
    """``{a}{b}`` becomes one bracket; an unknown key raises instead of printing a broken citation."""
    numbered, cited = number_citations([("t", "x {king2009}{delong1988} y {king2009}")])
    assert numbered == [("t", "x [1,2] y [1]")] and cited == ["king2009", "delong1988"]
    with pytest.raises(KeyError, match="nosuch"):
        number_citations([("t", "{nosuch}")])


def test_every_paragraph_cites_only_known_references(default_config: dict) -> None:
    """No paragraph of the default text leaves a raw ``{key}`` behind."""
    for _, text in number_citations(stage_paragraphs(default_config, PROVENANCE))[0]:
        assert "{" not in text and "}" not in text
    assert set(re.findall(r"\{(\w+)\}", str(stage_paragraphs(default_config, PROVENANCE)))) <= set(REFERENCES)


def test_html_methods_escape_and_list_references(default_config: dict) -> None:
    """The HTML page holds the same paragraphs and an ordered reference list."""
    html = methods_html(default_config, PROVENANCE)
    assert html.count("<h2>") == 9 and '<ol class="refs">' in html and "DeLong ER" in html


def test_sex_inference_is_described_only_where_it_ran(default_config: dict) -> None:
    """The sampling paragraph explains inferred sex with its thresholds only when the run inferred it."""
    assert "recorded sex" not in methods_markdown(default_config, PROVENANCE)
    text = methods_markdown(default_config, PROVENANCE, sex_inferred=True)
    assert "without a recorded sex were given one by a logistic regression" in text
    assert "trained on the cases that passed quality control" in text
    assert "probability of at least 0.95" in text and "fell below 0.9 were matched on age alone" in text
