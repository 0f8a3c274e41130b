"""The whole workflow on a small UTKFace proxy study: features, split, training, evaluation, report."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from phenoface.model import load_model, predict_head
from phenoface.split import identity_clusters
from phenoface.stats import auc_delong

from . import report_browser
from .conftest import REPO, Workflow, write_sheet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy_sheets(
    utkface_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path, Path]:
    """Cases: 60 adult women; pool: 150 adult men (sex is the 'phenotype'; matched on age).

    Plus an external labelled sheet (12 other women as cases, 12 other men as
    controls) and a reference sheet (12 other men).
    """
    folder = tmp_path_factory.mktemp("sheets")
    meta = pd.read_csv(utkface_dir / "metadata.csv", keep_default_na=False)
    adults = meta[(meta["age"] >= 20) & (meta["age"] < 60) & (meta["in_dev_set"] == "")]

    def rows(table: pd.DataFrame) -> list[dict]:
        return [{"image": str(utkface_dir / r.image), "age": r.age, "sex": r.sex} for r in table.itertuples()]

    women = adults[adults["sex"] == "F"]
    men = adults[adults["sex"] == "M"]
    external = [dict(r, group="case") for r in rows(women.iloc[60:72])]
    external += [dict(r, group="control") for r in rows(men.iloc[150:162])]
    return (
        write_sheet(folder / "cases.csv", rows(women.head(60))),
        write_sheet(folder / "pool.csv", rows(men.head(150))),
        write_sheet(folder / "external.csv", external),
        write_sheet(folder / "reference.csv", rows(men.iloc[162:174])),
    )


@pytest.fixture(scope="module")
def full_study(proxy_sheets, mediapipe_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Workflow:
    """The proxy study run through every target once; the tests of this module read it."""
    cases, pool, external, reference = proxy_sheets
    flow = Workflow(
        tmp_path_factory.mktemp("study") / "full",
        {
            "cases": str(cases),
            "reference_pool": str(pool),
            "sampling": {"match_on": ["age"], "allow_shortfall": True},
            "evaluation": {"repeats": 2, "n_bootstrap": 200, "external": [str(external)]},
            "audit": {"reference_sheet": str(reference)},
        },
        mediapipe_cache,
    )
    flow.run("all")
    return flow


def test_end_to_end_is_complete_and_reproducible(full_study: Workflow) -> None:
    """All targets build; features cover every ok chip; metrics are sane and identical on a rerun."""
    flow = full_study
    qc = pd.read_csv(flow.path("results/qc/preprocess.tsv"), sep="\t", keep_default_na=False)
    features = np.load(flow.path("results/features/features.npz"))
    ok_ids = sorted(qc.loc[qc["status"] == "ok", "image_id"])
    assert list(features["image_id"]) == ok_ids
    assert features["pooled"].shape == (len(ok_ids), 256) and features["pooled"].dtype == np.float32
    assert features["descriptor"].shape == (len(ok_ids), 128)
    assert np.all(features["pooled"] >= 0)  # average of ReLU outputs

    split = pd.read_csv(flow.path("results/split/cohort_split.csv"), keep_default_na=False)
    assert set(split["split"]) == {"train", "test"}
    # identity_group must be the descriptors' own clustering (recomputed here), and no group spans both sides.
    descriptors = dict(zip(features["image_id"], features["descriptor"]))
    clusters = identity_clusters(np.stack([descriptors[i] for i in split["image_id"]]), threshold=0.6)
    pairs = pd.DataFrame({"group": split["identity_group"], "cluster": clusters}).drop_duplicates()
    assert len(pairs) == split["identity_group"].nunique() == len(set(clusters))
    sides = split.groupby("identity_group")["split"].nunique()
    assert (sides == 1).all()

    metrics_path = flow.path("results/evaluation/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    predictions = pd.read_csv(flow.path("results/evaluation/predictions.csv"))
    test = predictions[predictions["split"] == "test"]
    assert metrics["auc"] == pytest.approx(roc_auc_score(test["y_true"], test["prob"]), abs=1e-9)
    assert metrics["accuracy"] == pytest.approx(((test["prob"] >= 0.5) == test["y_true"]).mean())
    delong = auc_delong(test["y_true"], test["prob"])
    assert (metrics["auc_ci_low"], metrics["auc_ci_high"]) == pytest.approx(
        (delong.ci_low, delong.ci_high), abs=1e-9
    )
    assert metrics["n_test"] == len(test) == int((split["split"] == "test").sum())
    assert metrics["auc"] > 0.8  # sex from a face is easy even for 60 cases
    assert set(metrics["baselines"]) >= {"descriptor", "age_sex", "image_statistics"}
    assert isinstance(metrics["warnings"], list)
    assert metrics["repeats"]["n"] == 2
    external_qc = pd.read_csv(flow.path("results/external/external/qc.tsv"), sep="\t", keep_default_na=False)
    assert len(external_qc) == 24
    scored = metrics["external"]["external"]
    assert scored["n"] == int((external_qc["status"] == "ok").sum()) and scored["auc"] > 0.8
    reference_audit = metrics["baselines"]["reference_sheet"]
    assert reference_audit["status"] == "ok"
    # Recomputed from the model: reference images (label 1) against the held-out pool controls (label 0).
    head = load_model(flow.path("results/training/head.keras"))
    with np.load(flow.path("results/reference/features.npz")) as reference_features:
        reference_probs = predict_head(head, reference_features["pooled"])
    control_probs = test.loc[test["y_true"] == 0, "prob"].to_numpy()
    labels = np.r_[np.zeros(len(control_probs)), np.ones(len(reference_probs))]
    expected = roc_auc_score(labels, np.r_[control_probs, reference_probs])
    assert reference_audit["auc"] == pytest.approx(expected, abs=1e-4)
    assert max(expected, 1 - expected) < 0.9  # men vs men: not separable by sex
    assert predictions["prob"].between(0, 1).all()

    # Grad-CAM explains the very model that was evaluated, on held-out images.
    maps = np.load(flow.path("results/explain/gradcam.npz"))
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    assert set(maps["image_id"]) == test_ids  # fewer than explain.max_images per group
    assert maps["cam"].shape == (len(test_ids), 150, 150)
    assert float(maps["cam"].max()) == pytest.approx(1.0, abs=1e-3) and float(maps["cam"].min()) >= 0
    evaluated = predictions.set_index("image_id").loc[list(maps["image_id"]), "prob"].to_numpy()
    np.testing.assert_allclose(maps["probability"], evaluated, atol=1e-4)
    sanity = json.loads(flow.path("results/explain/sanity.json").read_text())
    assert sanity["n_explained"] == len(test_ids)
    assert sanity["randomized_head_spearman_abs"]["median"] < 0.9
    region_tests = pd.read_csv(flow.path("results/explain/region_tests.csv"))
    assert len(region_tests) == 3 * 7
    assert set(region_tests["comparison"]) == {"own class", "case evidence, both groups"}
    for _, table in region_tests.groupby("map"):
        assert table["share_case"].sum() == pytest.approx(1.0)
        assert table["area_share"].sum() == pytest.approx(1.0)

    # Morphometry covers exactly the cohort (cases are women, controls men: sex subsets are one-sided).
    cohort = pd.read_csv(flow.path("results/cohort/cohort.csv"), keep_default_na=False)
    morphometry = json.loads(flow.path("results/faces/morphometry.json").read_text())
    n_case = int((cohort["group"] == "case").sum())
    assert morphometry["n"]["case"]["all"] == n_case
    assert morphometry["n"]["control"]["all"] == len(cohort) - n_case
    landmark_tests = pd.read_csv(flow.path("results/faces/landmark_tests.csv"), keep_default_na=False)
    assert (landmark_tests["subset"] == "all").sum() == 68
    averages = np.load(flow.path("results/faces/average_faces.npz"))
    assert int(averages["n"].sum()) == len(cohort)
    assert averages["mean_chip"].shape == (len(averages["n"]), 150, 150, 3)

    # provenance.json read back: the run's config, the hashes of what it read, the code and packages.
    record = json.loads(flow.path("results/provenance.json").read_text())
    config = yaml.safe_load(flow.config_path.read_text(encoding="utf-8"))
    assert record["config"]["cases"] == config["cases"] and record["config"]["evaluation"]["repeats"] == 2
    sources = {"cases_sheet": config["cases"], "pool_sheet": config["reference_pool"]}
    sources["image_checks"] = flow.path("results/qc/image_checks.tsv")
    for name, path in sources.items():
        assert record["files"][name]["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    head_commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    assert record["code"]["commit"] == (head_commit.stdout.strip() if head_commit.returncode == 0 else None)
    assert record["packages"]["keras"] == importlib.metadata.version("keras")

    seeded = [
        "results/explain/region_tests.csv",
        "results/explain/sanity.json",
        "results/faces/morphometry.json",
    ]
    # Training again from the same split and seed, and what follows it (evaluation, Grad-CAM), gives
    # the same bytes; so does the permutation test. The split itself is a unit-tested pure function.
    paths = [str(metrics_path), *seeded]
    before = {path: flow.path(path).read_bytes() for path in paths}
    written = {path: flow.path(path).stat().st_mtime_ns for path in paths}
    flow.run("all", "--forcerun", "train_classifier", "compare_landmarks")
    assert all(flow.path(path).stat().st_mtime_ns > written[path] for path in paths)  # really re-run
    assert {path: flow.path(path).read_bytes() for path in paths} == before


def test_unknown_gradcam_layer_fails_before_any_job(make_workflow, proxy_sheets) -> None:
    """A misspelt explain.layer stops the dry run with a message listing the valid block names."""
    cases, pool, _, _ = proxy_sheets
    flow = make_workflow(
        "badlayer", {"cases": str(cases), "reference_pool": str(pool), "explain": {"layer": "level2_blok3"}}
    )
    process = flow.run("-n", "all", check=False)
    output = process.stdout + process.stderr
    assert process.returncode != 0
    assert "explain.layer is 'level2_blok3'" in output
    assert "level2_block3" in output and "preprocess_images" not in output


def build_report(flow: Workflow, show_faces: bool) -> Path:
    """``snakemake --report`` of the finished study with ``report.show_faces`` set; the HTML path."""
    config = yaml.safe_load(flow.config_path.read_text(encoding="utf-8"))
    config["report"] = {"show_faces": show_faces}
    config_path = flow.path(f"config_faces_{show_faces}.yaml")
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    report = flow.path(f"report_faces_{show_faces}.html")
    command = flow.command("--report", str(report))
    command[command.index(str(flow.config_path))] = str(config_path)
    process = subprocess.run(command, capture_output=True, text=True, env=flow.env(), cwd=flow.workdir)
    assert process.returncode == 0, process.stderr[-4000:]
    return report


def face_images(flow: Workflow) -> dict[str, str]:
    """sha256 -> path of every file showing an individual face: inputs, chips, contact sheet, examples."""
    qc = pd.read_csv(flow.path("results/qc/preprocess.tsv"), sep="\t", keep_default_na=False)
    paths = [Path(p) for p in qc["path"]]
    for column in ("chip", "masked_chip"):
        paths += [flow.path(p) for p in qc[column] if p]
    paths += [flow.path("results/qc/contact_sheet.png"), flow.path("results/explain/examples.png")]
    return report_browser.file_hashes(paths)


def json_warnings(flow: Workflow) -> list[str]:
    """Every sentence in a ``warnings`` list of any JSON file under results/ (read independently)."""

    def walk(record) -> list[str]:
        if isinstance(record, dict):
            own = record.get("warnings")
            found = [str(w) for w in own] if isinstance(own, list) else []
            return found + [w for key, value in record.items() if key != "warnings" for w in walk(value)]
        if isinstance(record, list):
            return [w for item in record for w in walk(item)]
        return []

    return [
        w for path in sorted(flow.path("results").rglob("*.json")) for w in walk(json.loads(path.read_text()))
    ]


def test_report_opens_on_the_summary_and_embeds_no_face(
    full_study: Workflow, chromium: Path, tmp_path: Path
) -> None:
    """In Chromium: no page error or network request; the summary first, with the AUC and every JSON
    warning; every declared result listed and shown; no individual face in any embedded file."""
    report = build_report(full_study, show_faces=False)
    visit = report_browser.visit_report(report, tmp_path / "screenshots_no_faces", chromium)
    assert visit.page_errors == [] and visit.console_errors == [] and visit.requests == []
    assert visit.categories[0] == "1. Summary" and visit.listed["1. Summary"] == [
        "results/report/summary.html"
    ]
    listed = {path for paths in visit.listed.values() for path in paths}
    assert listed == report_browser.declared_results(False, full_study.workdir)
    assert len(visit.screenshots) == len(listed) + 1 and all(
        shot.stat().st_size > 0 for shot in visit.screenshots
    )

    summary = report_browser.normalise(visit.texts["results/report/summary.html"])
    metrics = json.loads(full_study.path("results/evaluation/metrics.json").read_text())
    headline = (
        f"held-out auc {metrics['auc']:.2f} (95% ci {metrics['auc_ci_low']:.2f}–{metrics['auc_ci_high']:.2f})"
    )
    assert headline in summary and headline in report_browser.normalise(visit.landing)
    warnings = json_warnings(full_study)
    assert len(warnings) >= 1  # the proxy study raises some (small subsets, shortcut audits)
    missing = [w for w in warnings if report_browser.normalise(w) not in summary]
    assert missing == []
    shown = re.search(r"(\d+) warning\(s\)\.", summary)
    assert shown and int(shown.group(1)) >= len(warnings)  # plus sampling's, from balance/shortfall
    assert f"{shown.group(1)} warning(s) (" in report_browser.normalise(visit.landing)
    for text in ("methods.html", "model_card.html"):
        assert visit.texts[f"results/report/{text}"].strip()
    assert "DeLong ER" in visit.texts["results/report/methods.html"]

    embedded = report_browser.embedded_payloads(report.read_text(encoding="utf-8"))
    faces = face_images(full_study)
    assert len(faces) > 100 and set(embedded) & set(faces) == set()
    for page in ("summary", "methods", "model_card"):
        assert "data:image" not in full_study.path(f"results/report/{page}.html").read_text()


def test_report_with_show_faces_embeds_contact_sheet_and_examples(
    full_study: Workflow, chromium: Path, tmp_path: Path
) -> None:
    """With report.show_faces: true the contact sheet and Grad-CAM examples are listed, shown and embedded."""
    report = build_report(full_study, show_faces=True)
    visit = report_browser.visit_report(report, tmp_path / "screenshots_faces", chromium)
    assert visit.page_errors == [] and visit.requests == []
    listed = {path for paths in visit.listed.values() for path in paths}
    assert listed == report_browser.declared_results(True, full_study.workdir)
    assert {"results/qc/contact_sheet.png", "results/explain/examples.png"} <= listed
    embedded = report_browser.embedded_payloads(report.read_text(encoding="utf-8"))
    shown = report_browser.file_hashes(
        [full_study.path("results/qc/contact_sheet.png"), full_study.path("results/explain/examples.png")]
    )
    assert set(shown) <= set(embedded)
