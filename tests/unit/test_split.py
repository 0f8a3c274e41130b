"""Tests for phenoface.split: identity clustering and the grouped, stratified split."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from phenoface.errors import PhenofaceError
from phenoface.split import (
    align_features,
    cluster_report,
    identity_clusters,
    identity_groups,
    split_balance,
    split_cohort,
    split_strata,
)

AGE_BINS = [0, 10, 20, 30, 40, 50, 60, 70]


def _line_of_faces(n_points: int, spacing: float, dim: int = 128) -> np.ndarray:
    """Descriptors on a straight line, consecutive points ``spacing`` apart."""
    points = np.zeros((n_points, dim))
    points[:, 0] = np.arange(n_points) * spacing
    return points


def _cohort(n_people: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A synthetic cohort: people with 1-3 images, some with subject ids, some without.

    People are far apart in descriptor space (distance ~ 1.4), a person's
    images are 0.1 apart; only half of the people have a ``subject_id``.
    """
    rng = np.random.default_rng(seed)
    rows, descriptors = [], []
    for person in range(n_people):
        centre = rng.normal(size=128)
        centre /= np.linalg.norm(centre)
        group = "case" if person % 2 == 0 else "control"
        sex = "F" if (person // 2) % 2 == 0 else "M"
        age = int(rng.integers(18, 80))
        subject = f"S{person:04d}" if person % 4 < 2 else ""
        for image in range(int(rng.integers(1, 4))):
            noise = rng.normal(size=128)
            descriptors.append(centre + 0.1 * noise / np.linalg.norm(noise))
            rows.append(
                {
                    "image_id": f"p{person:04d}_{image}",
                    "group": group,
                    "age": age,
                    "sex": sex,
                    "subject_id": subject,
                    "stratum": f"{sex}|{age // 10 * 10}",
                    "person": person,
                }
            )
    return pd.DataFrame(rows), np.asarray(descriptors)


def test_complete_linkage_does_not_chain_a_line_of_faces():
    """A line of faces 0.5 apart stays in pairs under complete linkage, while single linkage chains it."""
    points = _line_of_faces(12, 0.5)
    complete = identity_clusters(points, threshold=0.6, linkage="complete")
    single = identity_clusters(points, threshold=0.6, linkage="single")
    assert len(np.unique(single)) == 1
    assert np.bincount(complete).max() == 2
    assert len(np.unique(complete)) == 6


def test_complete_linkage_clusters_have_all_pairs_below_threshold():
    """Every pair inside a complete-linkage cluster is closer than the threshold."""
    rng = np.random.default_rng(3)
    points = rng.normal(scale=0.25, size=(80, 8))
    labels = identity_clusters(points, threshold=0.6, linkage="complete")
    for label in np.unique(labels):
        members = points[labels == label]
        distances = np.linalg.norm(members[:, None] - members[None], axis=-1)
        assert distances.max() < 0.6
    assert len(np.unique(labels)) < len(points)


def test_identity_clusters_join_same_person_and_separate_others():
    """Two photographs 0.1 apart share a cluster; a third face 1.0 away does not."""
    points = np.zeros((3, 128))
    points[1, 0] = 0.1
    points[2, 1] = 1.0
    labels = identity_clusters(points, threshold=0.6)
    assert labels.tolist() == [0, 0, 1]


def test_identity_threshold_is_strict():
    """Faces exactly at the threshold distance are different people (dlib: same iff < 0.6)."""
    points = np.zeros((2, 4))
    points[1, 0] = 0.6
    assert identity_clusters(points, threshold=0.6).tolist() == [0, 1]


def test_unknown_linkage_is_a_user_error():
    """An unknown linkage name raises PhenofaceError naming the config key."""
    with pytest.raises(PhenofaceError, match="split.linkage"):
        identity_clusters(np.zeros((2, 4)), linkage="ward")


def test_cluster_report_counts_sizes():
    """The report gives cluster count, largest size, singletons and a size histogram."""
    report = cluster_report(np.array([0, 0, 0, 1, 2, 2, 3]))
    assert report == {
        "n_rows": 7,
        "n_clusters": 4,
        "largest": 3,
        "n_singletons": 2,
        "histogram": {"1": 2, "2": 1, "3": 1},
    }


def test_identity_groups_merge_subject_ids_and_clusters():
    """Rows sharing a subject id or a cluster end in one group, transitively; blanks are ignored."""
    subjects = ["A", "", "A", None, "B", ""]
    clusters = np.array([0, 1, 2, 2, 3, 4])
    groups = identity_groups(subjects, clusters)
    # row0-row2 via subject A, row2-row3 via cluster 2; rows 1, 4, 5 alone.
    assert groups.tolist() == [0, 1, 0, 0, 2, 3]


def test_split_keeps_subjects_and_identity_clusters_on_one_side():
    """No subject id and no identity cluster appears in both train and test."""
    cohort, descriptors = _cohort(300)
    table, _ = split_cohort(cohort, descriptors, seed=1)
    named = table[table["subject_id"] != ""]
    assert named.groupby("subject_id")["split"].nunique().max() == 1
    assert table.groupby("identity_group")["split"].nunique().max() == 1
    # Unlabelled people are found by their descriptors alone.
    assert table.groupby("person")["split"].nunique().max() == 1
    assert table["identity_group"].nunique() == 300


def test_split_is_half_and_half_and_stratified():
    """The default split puts ~50% of rows in test with equal group x sex shares on both sides."""
    cohort, descriptors = _cohort(400)
    table, report = split_cohort(cohort, descriptors, seed=7)
    share = (table["split"] == "test").mean()
    assert abs(share - 0.5) < 0.03
    assert report["counts"]["test"] == int((table["split"] == "test").sum())
    shares = pd.crosstab(table["group"] + table["sex"], table["split"], normalize="columns")
    assert (shares["train"] - shares["test"]).abs().max() < 0.03
    assert report["max_group_sex_share_gap"] < 0.03


def test_split_honours_test_fraction():
    """A test fraction of 0.3 puts about 30% of rows in test."""
    cohort, descriptors = _cohort(400)
    table, report = split_cohort(cohort, descriptors, test_fraction=0.3, seed=2)
    assert (report["n_splits"], report["n_test_folds"]) == (10, 3)
    assert abs((table["split"] == "test").mean() - 0.3) < 0.04


def test_split_is_reproducible_from_the_seed():
    """The same seed gives the same split; another seed a different one."""
    cohort, descriptors = _cohort(200)
    first, _ = split_cohort(cohort, descriptors, seed=5)
    again, _ = split_cohort(cohort, descriptors, seed=5)
    other, _ = split_cohort(cohort, descriptors, seed=6)
    assert first["split"].tolist() == again["split"].tolist()
    assert first["split"].tolist() != other["split"].tolist()


def test_split_keeps_cohort_rows_and_adds_columns():
    """The output is the cohort, row for row, plus identity_group and split."""
    cohort, descriptors = _cohort(50)
    table, report = split_cohort(cohort, descriptors, seed=0)
    assert list(table.columns) == list(cohort.columns) + ["identity_group", "split"]
    assert table["image_id"].tolist() == cohort["image_id"].tolist()
    assert set(table["split"]) == {"train", "test"}
    assert report["identity_clusters"]["n_rows"] == len(cohort)


def test_split_rejects_misaligned_descriptors():
    """Descriptors with a different row count than the cohort raise PhenofaceError."""
    cohort, descriptors = _cohort(20)
    with pytest.raises(PhenofaceError, match="aligned"):
        split_cohort(cohort, descriptors[:-1])


def test_split_rejects_cohort_of_one_person():
    """A cohort with fewer people than folds cannot be split and says so."""
    cohort, descriptors = _cohort(1)
    cohort = pd.concat([cohort] * 2, ignore_index=True)
    cohort["image_id"] = [f"i{k}" for k in range(len(cohort))]
    descriptors = np.concatenate([descriptors] * 2)
    with pytest.raises(PhenofaceError, match="distinct people"):
        split_cohort(cohort, descriptors)


def test_align_features_orders_rows_and_names_missing_ids():
    """Feature rows are returned in cohort order; a missing image id is named in the error."""
    assert align_features(["b", "a"], ["a", "b", "c"]).tolist() == [1, 0]
    with pytest.raises(PhenofaceError, match="zz"):
        align_features(["a", "zz"], ["a", "b"])


def test_split_entry_script_writes_table_and_report(tmp_path):
    """split_cohort.run reads cohort.csv + features.npz (any row order) and writes both outputs."""
    import json

    import split_cohort as entry

    cohort, descriptors = _cohort(60)
    cohort.drop(columns="person").to_csv(tmp_path / "cohort.csv", index=False)
    order = np.random.default_rng(0).permutation(len(cohort))
    np.savez(
        tmp_path / "features.npz",
        image_id=cohort["image_id"].to_numpy(dtype=str)[order],
        pooled=np.zeros((len(cohort), 256), np.float32),
        descriptor=descriptors[order].astype(np.float32),
    )
    outputs = {
        "table": tmp_path / "split" / "cohort_split.csv",
        "report": tmp_path / "split" / "clusters.json",
    }
    inputs = {"cohort": tmp_path / "cohort.csv", "features": tmp_path / "features.npz"}
    params = SimpleNamespace(
        test_fraction=0.5, identity_threshold=0.6, linkage="complete", age_bins=AGE_BINS, seed=3
    )
    entry.run(inputs, outputs, params)
    table = pd.read_csv(outputs["table"], keep_default_na=False, dtype={"subject_id": str})
    report = json.loads(outputs["report"].read_text())
    assert table["image_id"].tolist() == cohort["image_id"].tolist()
    assert table["subject_id"].tolist() == cohort["subject_id"].tolist()  # blanks stay blank
    assert table["identity_group"].nunique() == 60  # descriptors were re-aligned to cohort order
    assert report["counts"]["train"] + report["counts"]["test"] == len(cohort)


def test_split_table_readers_keep_ids_as_text_and_rows_in_order(tmp_path):
    """read_split_table keeps zero-padded ids as text; feature_rows/training_half follow the table's order."""
    from phenoface.split import feature_rows, read_split_table, training_half

    table_path = tmp_path / "cohort_split.csv"
    table_path.write_text(
        "image_id,group,sex,subject_id,split\n007,case,F,,train\n003,control,M,,test\n001,case,M,,train\n"
    )
    npz_path = tmp_path / "features.npz"
    np.savez(
        npz_path,
        image_id=np.array(["001", "003", "007"]),
        pooled=np.arange(6, dtype=np.float64).reshape(3, 2),
    )
    table = read_split_table(table_path)
    assert list(table["image_id"]) == ["007", "003", "001"] and table["subject_id"].tolist() == ["", "", ""]
    rows = feature_rows(npz_path, table["image_id"], "pooled")
    assert rows.dtype == np.float32 and rows.tolist() == [[4, 5], [2, 3], [0, 1]]
    features, train = training_half(table, npz_path, "pooled")
    assert list(train["image_id"]) == ["007", "001"] and features.tolist() == [[4, 5], [0, 1]]
    with pytest.raises(PhenofaceError, match="not found; run split_cohort"):
        read_split_table(tmp_path / "missing.csv")
    with pytest.raises(PhenofaceError, match="no training rows"):
        training_half(table.assign(split="test"), npz_path, "pooled")


def _age_layered_cohort(per_stratum: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """One image per person; every group x sex cell spread over four age bins, ``per_stratum`` each.

    Rows are sorted by age within each group x sex cell, so a split that
    stratified by group x sex only would leave the age bins to chance.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for group in ("case", "control"):
        for sex in ("F", "M"):
            for age_bin in (20, 30, 40, 50):
                for _ in range(per_stratum):
                    rows.append({"group": group, "sex": sex, "age": age_bin + int(rng.integers(0, 10))})
    cohort = pd.DataFrame(rows)
    cohort["image_id"] = [f"i{k:04d}" for k in range(len(cohort))]
    centres = rng.normal(size=(len(cohort), 128))
    return cohort, centres / np.linalg.norm(centres, axis=1, keepdims=True)


def test_split_is_stratified_by_age_bin_within_group_and_sex():
    """Every group x sex x age-bin stratum of 10 people is split 5/5 (within one), not only group x sex."""
    cohort, descriptors = _age_layered_cohort(10)
    table, report = split_cohort(cohort, descriptors, age_bins=AGE_BINS, seed=3)
    table["age_bin"] = table["age"] // 10 * 10
    per_stratum = table.groupby(["group", "sex", "age_bin"])["split"].apply(
        lambda s: int((s == "test").sum())
    )
    assert len(per_stratum) == 16
    assert per_stratum.between(4, 6).all(), per_stratum.to_dict()
    assert sorted(report["strata"]) == sorted(
        f"{g}|{s}|{b}-{b + 9}" for g in ("case", "control") for s in ("F", "M") for b in (20, 30, 40, 50)
    )


def test_split_strata_use_the_configured_age_bins():
    """Coarser age bins give coarser strata: with bins 0-39 and 40+ a stratum holds both 20s and 30s."""
    cohort, descriptors = _age_layered_cohort(6)
    _, report = split_cohort(cohort, descriptors, age_bins=[0, 40], seed=3)
    assert sorted(report["strata"]) == sorted(
        f"{g}|{s}|{b}" for g in ("case", "control") for s in ("F", "M") for b in ("0-39", "40+")
    )
    assert all(sum(counts.values()) == 12 for counts in report["strata"].values())


def test_feature_and_split_readers_name_the_file_and_the_fix(tmp_path):
    """A cohort id missing from the npz names that npz; a table without split, or without train rows, says what to re-run."""
    from phenoface.split import feature_rows, read_split_table, training_half

    npz_path = tmp_path / "features.npz"
    np.savez(npz_path, image_id=np.array(["001", "003"]), pooled=np.zeros((2, 2)))
    with pytest.raises(PhenofaceError) as caught:
        feature_rows(npz_path, ["001", "009"], "pooled")
    assert str(caught.value) == (
        f"1 cohort image(s) have no row in {npz_path}, e.g. ['009']; re-run extract_features for the current cohort"
    )
    no_split = tmp_path / "cohort.csv"
    no_split.write_text("image_id,group\n001,case\n")
    with pytest.raises(PhenofaceError) as caught:
        read_split_table(no_split)
    assert str(caught.value) == f"{no_split} has no 'split' column; re-run split_cohort"
    table = pd.DataFrame({"image_id": ["001", "003"], "split": ["test", "train"]}, index=[5, 9])
    features, train = training_half(table, npz_path, "pooled")
    assert list(train.columns) == ["image_id", "split"] and train.index.tolist() == [0]
    with pytest.raises(PhenofaceError) as caught:
        training_half(table.assign(split="test"), npz_path, "pooled")
    assert str(caught.value) == "the split table has no training rows; check split.test_fraction"


def test_feature_rows_refuse_pickled_ids(tmp_path):
    """An npz whose ids are pickled Python objects is refused (np.load without allow_pickle)."""
    from phenoface.split import feature_rows

    npz_path = tmp_path / "features.npz"
    np.savez(npz_path, image_id=np.array(["001", None], dtype=object), pooled=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="allow_pickle"):
        feature_rows(npz_path, ["001"], "pooled")


def _people_on_a_line(n_rows: int, group: str = "case") -> tuple[pd.DataFrame, np.ndarray]:
    """``n_rows`` one-image people of one stratum, 1-d descriptors 1.0 apart (all distinct people)."""
    cohort = pd.DataFrame(
        {"image_id": [f"i{k:05d}" for k in range(n_rows)], "group": group, "age": 34, "sex": "F"}
    )
    return cohort, np.arange(n_rows, dtype=np.float64)[:, None]


def test_identity_clusters_default_threshold_is_dlibs():
    """Without a threshold, faces 0.5 apart are one person and faces 1.0 apart are two (dlib's 0.6)."""
    points = np.array([[0.0], [0.5], [3.0], [4.0]])
    assert identity_clusters(points).tolist() == [0, 0, 1, 2]


def test_identity_clusters_edge_inputs():
    """No rows give an empty integer labelling, one row gets label 0, and bad inputs are refused with the fix."""
    empty = identity_clusters(np.zeros((0, 128)))
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert identity_clusters(np.zeros((1, 128))).tolist() == [0]
    for threshold in (0, -0.6):
        with pytest.raises(PhenofaceError) as caught:
            identity_clusters(np.zeros((2, 4)), threshold=threshold)
        assert str(caught.value) == f"split identity_threshold must be > 0, got {threshold}"
    with pytest.raises(ValueError) as caught:
        identity_clusters(np.zeros(4))
    assert str(caught.value) == "descriptors must be 2-d, got shape (4,)"
    with pytest.raises(PhenofaceError) as caught:
        identity_clusters(np.zeros((2, 4)), linkage="ward")
    assert str(caught.value) == (
        "split linkage 'ward' is not one of complete, average, single; fix split.linkage in the config"
    )


def test_identity_clusters_name_the_first_ten_non_finite_rows():
    """NaN, inf or missing (None) descriptor values are refused, naming up to ten bad rows."""
    points = np.zeros((14, 3)).tolist()
    for row in range(1, 12):
        points[row][row % 3] = np.nan if row % 2 else np.inf
    points[12][0] = None
    with pytest.raises(PhenofaceError) as caught:
        identity_clusters(points)
    assert str(caught.value) == (
        f"face descriptors of rows {list(range(1, 11))} are not finite; re-run extract_features"
    )


def test_single_linkage_labels_every_row():
    """Single linkage gives one label per row: two chains of faces far apart are two people."""
    points = np.concatenate([_line_of_faces(5, 0.5, dim=2), _line_of_faces(5, 0.5, dim=2) + 10.0])
    labels = identity_clusters(points, threshold=0.6, linkage="single")
    assert labels.tolist() == [0] * 5 + [1] * 5


def test_cluster_report_of_nothing_and_of_gapped_labels():
    """No labels give an all-zero report; unused label numbers are not clusters, and no singletons count 0."""
    assert cluster_report([]) == {
        "n_rows": 0,
        "n_clusters": 0,
        "largest": 0,
        "n_singletons": 0,
        "histogram": {},
    }
    assert cluster_report(np.array([0, 0, 2, 2, 2])) == {
        "n_rows": 5,
        "n_clusters": 2,
        "largest": 3,
        "n_singletons": 0,
        "histogram": {"2": 1, "3": 1},
    }


def test_identity_groups_edge_inputs():
    """No rows give no groups; long numeric subject ids next to a missing one stay distinct people."""
    assert identity_groups([], identity_clusters(np.zeros((0, 4)))).tolist() == []
    # As floats, 10**17 and 10**17 + 1 would be the same number, hence the same person.
    subjects = [10**17, 10**17 + 1, None, 10**17]
    assert identity_groups(subjects, np.arange(4)).tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError) as caught:
        identity_groups(["A", "B", "C"], np.arange(2))
    assert str(caught.value) == "3 subject ids for 2 cluster labels"


def test_align_features_messages_list_five_ids_and_default_source():
    """Duplicate and missing ids are counted and the first five named, with the source ('features') and the fix."""
    with pytest.raises(PhenofaceError) as caught:
        align_features(["a"], ["a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f", "g", "g"])
    assert str(caught.value) == (
        "features has duplicate image ids ['b', 'c', 'd', 'e', 'f']; re-run extract_features"
    )
    with pytest.raises(PhenofaceError) as caught:
        align_features(list("abcdefgh"), ["a", "b"])
    assert str(caught.value) == (
        "6 cohort image(s) have no row in features, e.g. ['c', 'd', 'e', 'f', 'g']; "
        "re-run extract_features for the current cohort"
    )
    rows = align_features([], ["a"])
    assert rows.dtype == np.int64 and np.zeros((1, 3))[rows].shape == (0, 3)


def test_split_strata_label_missing_sex_and_keep_the_index():
    """A stratum is group|sex|age bin, with missing sex as NA, aligned on the cohort's own index."""
    cohort = pd.DataFrame(
        {"group": ["control", "case", "case"], "sex": [None, "M", np.nan], "age": [34, 71, 5]},
        index=[10, 11, 15],
    )
    strata = split_strata(cohort, AGE_BINS)
    assert strata.to_dict() == {10: "control|NA|30-39", 11: "case|M|70+", 15: "case|NA|0-9"}


def test_split_balance_counts_shares_and_gap():
    """Counts, test share, group x sex shares (4 decimals, missing sex as NA), the largest gap and strata."""
    table = pd.DataFrame(
        {
            "group": ["case", "case", "case", "case", "control"],
            "sex": ["F", "F", "M", "F", None],
            "split": ["train", "train", "train", "test", "test"],
        }
    )
    strata = pd.Series(["a", "a", "b", "a", "c"])
    balance = split_balance(table, strata)
    assert balance == {
        "counts": {"train": 3, "test": 2},
        "test_share": 0.4,
        "group_sex_shares": {
            "case|F": {"train": 0.6667, "test": 0.5},
            "case|M": {"train": 0.3333, "test": 0.0},
            "control|NA": {"train": 0.0, "test": 0.5},
        },
        "max_group_sex_share_gap": pytest.approx(0.5),
        "strata": {"a": {"train": 2, "test": 1}, "b": {"train": 1, "test": 0}, "c": {"train": 0, "test": 1}},
    }


def test_split_balance_of_a_one_sided_or_empty_table():
    """A split side with no rows counts 0 everywhere; an empty table gives zeros, not NaN or an error."""
    one_test_row = pd.DataFrame({"group": ["case"], "sex": ["F"], "split": ["test"]})
    assert split_balance(one_test_row, pd.Series(["a"])) == {
        "counts": {"train": 0, "test": 1},
        "test_share": 1.0,
        "group_sex_shares": {"case|F": {"train": 0.0, "test": 1.0}},
        "max_group_sex_share_gap": 1.0,
        "strata": {"a": {"train": 0, "test": 1}},
    }
    empty = pd.DataFrame({"group": [], "sex": [], "split": []}, dtype=str)
    assert split_balance(empty, pd.Series([], dtype=str)) == {
        "counts": {"train": 0, "test": 0},
        "test_share": 0.0,
        "group_sex_shares": {},
        "max_group_sex_share_gap": 0.0,
        "strata": {},
    }


def test_split_rejects_bad_cohorts_with_the_fix():
    """Missing columns, misaligned descriptors, unknown groups and out-of-range fractions name what to do."""
    cohort, descriptors = _people_on_a_line(4)
    with pytest.raises(PhenofaceError) as caught:
        split_cohort(cohort.drop(columns=["sex", "age"]), descriptors)
    assert str(caught.value) == "cohort table lacks column(s) ['age', 'sex']; re-run sample_matched_controls"
    with pytest.raises(PhenofaceError) as caught:
        split_cohort(cohort, np.zeros((3, 128)))
    assert str(caught.value) == (
        "3 face descriptors for 4 cohort rows; features must be aligned with the cohort (re-run extract_features)"
    )
    with pytest.raises(PhenofaceError) as caught:
        split_cohort(cohort.assign(group=["case", "patient", "control", "Case"]), descriptors)
    assert str(caught.value) == "cohort group values ['Case', 'patient'] are not case/control"
    for fraction in (0, 1, 1.5, -0.5):
        with pytest.raises(PhenofaceError) as caught:
            split_cohort(cohort, descriptors, test_fraction=fraction)
        assert str(caught.value) == f"split test_fraction must be strictly between 0 and 1, got {fraction}"


def test_split_needs_as_many_people_as_folds():
    """Two people fill the two folds of a half split, one on each side; an empty cohort has 0 people."""
    cohort, descriptors = _people_on_a_line(2)
    table, _ = split_cohort(cohort, descriptors)
    assert sorted(table["split"]) == ["test", "train"]
    with pytest.raises(PhenofaceError) as caught:
        split_cohort(cohort.iloc[:0], descriptors[:0])
    assert str(caught.value) == (
        "only 0 distinct people in the cohort, too few for a test fraction of 0.5 (2 grouped folds); "
        "add images or raise split.identity_threshold"
    )


def test_split_extreme_test_fractions_use_one_and_nineteen_of_twenty_folds():
    """A fraction that rounds to 0 or 1 in twentieths tests 1 or 19 of 20 folds; the default seed is 42."""
    cohort, descriptors = _people_on_a_line(40)
    cohort["group"] = ["case", "control"] * 20
    for fraction, test_folds in ((0.01, 1), (0.99, 19)):
        table, report = split_cohort(cohort, descriptors, test_fraction=fraction)
        assert (report["n_splits"], report["n_test_folds"]) == (20, test_folds)
        assert report["test_fraction"] == fraction and report["seed"] == 42
        # 20 cases and 20 controls over 20 folds: one of each per fold.
        assert report["counts"] == {"train": 40 - 2 * test_folds, "test": 2 * test_folds}


def test_split_report_and_log_follow_threshold_linkage_and_subject_ids(caplog):
    """The report and log carry the clustering settings and sizes; a subject id joins faces that look unalike."""
    # Rows 0-2 are a chain 0.7 apart: one person under single linkage at 0.8, not at 0.6 or under complete.
    # Rows 3 and 4 look unalike but share a subject id.
    cohort = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(8)],
            "group": ["case", "case", "case", "control", "control", "case", "control", "case"],
            "age": [34, 34, 34, 36, 36, 31, 52, 33],
            "sex": ["F", "F", "F", "M", "M", "F", "F", "F"],
            "subject_id": ["", "", "", "S1", "S1", "", None, ""],
        }
    )
    descriptors = np.array([0.0, 0.7, 1.4, 10.0, 20.0, 30.0, 40.0, 50.0])[:, None]
    caplog.set_level("INFO", logger="phenoface.split")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, report = split_cohort(cohort, descriptors, threshold=0.8, linkage="single", seed=11)
    assert not [w for w in caught if "least populated" in str(w.message)]
    assert table["identity_group"].tolist() == [0, 0, 0, 1, 1, 2, 3, 4]
    assert {key: report[key] for key in ("test_fraction", "n_splits", "n_test_folds")} == {
        "test_fraction": 0.5,
        "n_splits": 2,
        "n_test_folds": 1,
    }
    assert (report["threshold"], report["linkage"], report["seed"]) == (0.8, "single", 11)
    assert report["identity_clusters"] == cluster_report(np.array([0, 0, 0, 1, 2, 3, 4, 5]))
    assert report["identity_groups"] == {
        "n_rows": 8,
        "n_clusters": 5,
        "largest": 3,
        "n_singletons": 3,
        "histogram": {"1": 3, "2": 1, "3": 1},
    }
    assert report["n_rows_with_subject_id"] == 2
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "phenoface.split"]
    assert messages == [
        (
            "INFO",
            "identity clusters (single linkage, threshold 0.8): 6 clusters over 8 rows, largest 3, 5 singletons",
        ),
        ("INFO", f"split: {report['counts']}"),
    ]


def _warnings_for_cluster(n_rows: int, largest: int, caplog) -> list[str]:
    """Warnings split_cohort logs for ``n_rows`` people of whom ``largest`` rows share one descriptor."""
    cohort, descriptors = _people_on_a_line(n_rows - largest + 1)
    cohort = pd.concat([cohort.iloc[[0] * (largest - 1)], cohort], ignore_index=True)
    cohort["image_id"] = [f"i{k:05d}" for k in range(n_rows)]
    descriptors = np.concatenate([descriptors[[0] * (largest - 1)], descriptors])
    caplog.clear()
    _, report = split_cohort(cohort, descriptors)
    assert report["identity_clusters"]["largest"] == largest
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_split_warns_when_the_largest_cluster_exceeds_10_images_or_1_percent(caplog):
    """11 images of one person warn in a cohort of 40, but not in one of 1100, where 1% of rows is 11."""
    assert _warnings_for_cluster(40, 11, caplog) == [
        "largest identity cluster holds 11 images: check for duplicates or lower split.identity_threshold"
    ]
    assert _warnings_for_cluster(40, 10, caplog) == []
    assert _warnings_for_cluster(1100, 11, caplog) == []


def test_strata_smaller_than_the_folds_get_an_error_that_says_what_to_change():
    """20 folds (test fraction 0.05) over strata of 10 images: a clear error, not scikit-learn's."""
    n_rows = 40
    cohort = pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(n_rows)],
            "group": ["case", "control"] * (n_rows // 2),
            "age": [30] * (n_rows // 2) + [50] * (n_rows // 2),
            "sex": ["F"] * n_rows,
        }
    )
    descriptors = np.random.default_rng(0).normal(size=(n_rows, 128)) * 10
    with pytest.raises(PhenofaceError) as raised:
        split_cohort(cohort, descriptors, test_fraction=0.05)
    assert str(raised.value) == (
        "every stratum (group x sex x age bin) holds fewer than 20 images (the largest 10), too few "
        "for a test fraction of 0.05 (20 grouped folds); set split.test_fraction nearer 0.5 or use "
        "wider sampling.age_bins"
    )
    # The boundary: a stratum of exactly 20 images is enough for 20 folds.
    boundary = cohort.assign(group=["case"] * (n_rows // 2) + ["control"] * (n_rows // 2))
    table, report = split_cohort(boundary, descriptors, test_fraction=0.05)
    assert report["n_splits"] == 20
    assert report["counts"] == {"train": 38, "test": 2}
