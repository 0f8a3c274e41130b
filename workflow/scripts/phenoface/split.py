"""Train/test split that keeps every person on one side.

The paper trains on a random half of the face chips and tests on the other
half. Two photographs of one person on both sides would let the classifier
recognise the person instead of the phenotype, so rows are grouped before
splitting: by ``subject_id`` where the sheet gives one, and by identity
clusters of dlib's 128-d face descriptor (same person when the Euclidean
distance is below 0.6). A row belongs to the union of both groupings, so an
unlabelled second photograph of a labelled subject is still kept with it.

Identity clusters use complete (or average) linkage: single linkage at 0.6
chains look-alikes into one giant cluster once a cohort has thousands of
faces, which would leave nothing to stratify. The groups are then split with
scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`,
stratified by group (case/control) x sex x age bin.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import radius_neighbors_graph

from .errors import PhenofaceError
from .sampling import label_ages

log = logging.getLogger(__name__)

LINKAGES = ("complete", "average", "single")
SPLITS = ("train", "test")
MAX_FOLDS = 20


def identity_clusters(
    descriptors: np.ndarray, threshold: float = 0.6, linkage: str = "complete"
) -> np.ndarray:
    """Cluster face descriptors into putative identities.

    Parameters
    ----------
    descriptors : ndarray of shape (n, d)
        dlib face descriptors (128-d).
    threshold : float
        Distance below which two faces are taken to be the same person.
    linkage : {"complete", "average", "single"}
        Agglomerative linkage, cut at ``threshold``. ``complete`` keeps every
        pair inside a cluster within ``threshold``; ``single`` is connected
        components and chains look-alikes together.

    Returns
    -------
    ndarray of shape (n,), int
        Cluster label per row, ``0 .. n_clusters - 1``, numbered in order of
        each cluster's first row.

    Notes
    -----
    Any cluster of any of these linkages cut at ``threshold`` lies inside one
    connected component of the ``threshold`` radius graph, so the components
    are found first (sparse, fast) and the linkage runs within each; the
    result is exact and memory stays bounded by the largest component.
    """
    if linkage not in LINKAGES:
        raise PhenofaceError(
            f"split linkage {linkage!r} is not one of {', '.join(LINKAGES)}; fix split.linkage in the config"
        )
    if threshold <= 0:
        raise PhenofaceError(f"split identity_threshold must be > 0, got {threshold}")
    points = np.asarray(descriptors, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"descriptors must be 2-d, got shape {points.shape}")
    n_rows = points.shape[0]
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(points)):
        bad = np.flatnonzero(~np.all(np.isfinite(points), axis=1))
        raise PhenofaceError(
            f"face descriptors of rows {bad[:10].tolist()} are not finite; re-run extract_features"
        )

    # Strictly-below semantics: dlib calls faces the same person when distance < threshold.
    radius = np.nextafter(threshold, 0.0)
    graph = radius_neighbors_graph(points, radius=radius, mode="connectivity", include_self=False)
    n_components, component = connected_components(graph, directed=False)
    if linkage == "single":
        raw = component
    else:
        raw = np.empty(n_rows, dtype=np.int64)
        next_label = 0
        for comp in range(n_components):
            members = np.flatnonzero(component == comp)
            if members.size == 1:
                raw[members] = next_label
                next_label += 1
                continue
            tree = hierarchy.linkage(pdist(points[members]), method=linkage)
            sub = hierarchy.fcluster(tree, t=radius, criterion="distance")
            raw[members] = sub - 1 + next_label
            next_label += int(sub.max())
    # Renumber by first appearance so labels do not depend on component order.
    _, first_index, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    return order[inverse].astype(np.int64)


def cluster_report(labels: np.ndarray) -> dict[str, Any]:
    """Summarise a clustering's size distribution.

    Returns
    -------
    dict
        ``n_rows``, ``n_clusters``, ``largest``, ``n_singletons`` and
        ``histogram`` (cluster size as a string -> number of clusters).
    """
    labels = np.asarray(labels)
    sizes = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    sizes = sizes[sizes > 0]
    histogram = Counter(int(s) for s in sizes)
    return {
        "n_rows": int(labels.size),
        "n_clusters": int(sizes.size),
        "largest": int(sizes.max()) if sizes.size else 0,
        "n_singletons": int(histogram.get(1, 0)),
        "histogram": {str(size): histogram[size] for size in sorted(histogram)},
    }


def identity_groups(subject_ids: Sequence[Any], clusters: np.ndarray) -> np.ndarray:
    """Merge subject ids and descriptor clusters into one grouping.

    Two rows share a group when they share a non-empty ``subject_id`` or an
    identity cluster, transitively.

    Returns
    -------
    ndarray of shape (n,), int
        Group label per row, numbered by first appearance.
    """
    clusters = np.asarray(clusters)
    n_rows = clusters.size
    subjects = pd.Series(list(subject_ids), dtype="object")
    if len(subjects) != n_rows:
        raise ValueError(f"{len(subjects)} subject ids for {n_rows} cluster labels")
    named = _has_subject(subjects)
    subject_codes = np.full(n_rows, -1, dtype=np.int64)
    subject_codes[named.to_numpy()] = pd.factorize(subjects[named].astype(str).str.strip())[0]

    # Bipartite graph rows -- (cluster nodes, subject nodes); components are the groups.
    n_clusters = int(clusters.max()) + 1 if n_rows else 0
    n_subjects = int(subject_codes.max()) + 1 if n_rows else 0
    rows = np.arange(n_rows)
    has_subject = subject_codes >= 0
    edges_from = np.concatenate([rows, rows[has_subject]])
    edges_to = np.concatenate([n_rows + clusters, n_rows + n_clusters + subject_codes[has_subject]])
    size = n_rows + n_clusters + n_subjects
    graph = coo_matrix((np.ones(edges_from.size), (edges_from, edges_to)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    raw = component[:n_rows]
    _, first_index, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    return order[inverse].astype(np.int64)


def _has_subject(subjects: pd.Series) -> pd.Series:
    """True where a subject id is given (not missing, not blank)."""
    return subjects.notna() & (subjects.astype(str).str.strip() != "")


def split_strata(cohort: pd.DataFrame, age_bins: Sequence[int]) -> pd.Series:
    """The stratification label of each row: ``group|sex|age bin``."""
    sex = cohort["sex"].astype("object").where(cohort["sex"].notna(), "NA").astype(str)
    age = label_ages(cohort["age"], age_bins)
    return cohort["group"].astype(str) + "|" + sex + "|" + pd.Series(age, index=cohort.index)


def _folds_for(test_fraction: float) -> tuple[int, int]:
    """(n_splits, n_test_folds) so that n_test_folds / n_splits ~= test_fraction."""
    if not 0 < test_fraction < 1:
        raise PhenofaceError(f"split test_fraction must be strictly between 0 and 1, got {test_fraction}")
    fraction = Fraction(test_fraction).limit_denominator(MAX_FOLDS)
    if fraction.numerator == 0:
        fraction = Fraction(1, MAX_FOLDS)
    if fraction.numerator == fraction.denominator:
        fraction = Fraction(MAX_FOLDS - 1, MAX_FOLDS)
    return fraction.denominator, fraction.numerator


def split_cohort(
    cohort: pd.DataFrame,
    descriptors: np.ndarray,
    test_fraction: float = 0.5,
    threshold: float = 0.6,
    age_bins: Sequence[int] = (0, 10, 20, 30, 40, 50, 60, 70),
    seed: int = 42,
    linkage: str = "complete",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Split a cohort into train and test halves, grouped by person and stratified.

    Parameters
    ----------
    cohort : DataFrame
        Columns ``image_id``, ``group`` (case/control), ``age``, ``sex`` and
        optionally ``subject_id``; one row per image.
    descriptors : ndarray of shape (n, 128)
        Face descriptors aligned with ``cohort``'s rows.
    test_fraction : float
        Share of rows to put in the test set (the paper: 0.5). Realised as
        ``k`` of ``n`` grouped folds with ``n <= 20``.
    threshold, linkage
        Identity clustering, see :func:`identity_clusters`.
    age_bins : sequence of int
        Left edges of the age bins used for stratification.
    seed : int
        Seed of the split.

    Returns
    -------
    table : DataFrame
        ``cohort`` with columns ``identity_group`` (int) and ``split``
        (``train``/``test``) added.
    report : dict
        Identity cluster sizes, merged group sizes and the split's counts
        and stratum balance.
    """
    missing = {"image_id", "group", "age", "sex"} - set(cohort.columns)
    if missing:
        raise PhenofaceError(
            f"cohort table lacks column(s) {sorted(missing)}; re-run sample_matched_controls"
        )
    descriptors = np.asarray(descriptors)
    if descriptors.shape[0] != len(cohort):
        raise PhenofaceError(
            f"{descriptors.shape[0]} face descriptors for {len(cohort)} cohort rows; "
            "features must be aligned with the cohort (re-run extract_features)"
        )
    bad_groups = sorted(set(cohort["group"].astype(str)) - {"case", "control"})
    if bad_groups:
        raise PhenofaceError(f"cohort group values {bad_groups} are not case/control")

    n_splits, n_test_folds = _folds_for(test_fraction)
    clusters = identity_clusters(descriptors, threshold=threshold, linkage=linkage)
    subjects = cohort["subject_id"] if "subject_id" in cohort.columns else [None] * len(cohort)
    groups = identity_groups(subjects, clusters)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    if n_groups < n_splits:
        raise PhenofaceError(
            f"only {n_groups} distinct people in the cohort, too few for a test fraction of "
            f"{test_fraction} ({n_splits} grouped folds); add images or raise split.identity_threshold"
        )

    strata = split_strata(cohort, age_bins)
    stratum_codes = pd.factorize(strata)[0]
    largest_stratum = int(np.bincount(stratum_codes).max())
    if largest_stratum < n_splits:
        # scikit-learn refuses a stratified split when every stratum is smaller than the folds.
        raise PhenofaceError(
            f"every stratum (group x sex x age bin) holds fewer than {n_splits} images (the largest "
            f"{largest_stratum}), too few for a test fraction of {test_fraction} ({n_splits} grouped "
            "folds); set split.test_fraction nearer 0.5 or use wider sampling.age_bins"
        )
    random_state = int(np.random.default_rng(seed).integers(0, 2**31 - 1))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    is_test = np.zeros(len(cohort), dtype=bool)
    with warnings.catch_warnings():
        # Rare strata smaller than n_splits are expected; their imbalance shows in the report.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(cohort)), stratum_codes, groups)):
            if fold < n_test_folds:
                is_test[test_index] = True

    table = cohort.copy()
    table["identity_group"] = groups
    table["split"] = np.where(is_test, "test", "train")
    report = {
        "test_fraction": test_fraction,
        "n_splits": n_splits,
        "n_test_folds": n_test_folds,
        "threshold": threshold,
        "linkage": linkage,
        "seed": seed,
        "identity_clusters": cluster_report(clusters),
        "identity_groups": cluster_report(groups),
        "n_rows_with_subject_id": int(_has_subject(pd.Series(list(subjects), dtype="object")).sum()),
        **split_balance(table, strata),
    }
    clusters_info = report["identity_clusters"]
    log.info(
        "identity clusters (%s linkage, threshold %.3g): %d clusters over %d rows, largest %d, %d singletons",
        linkage,
        threshold,
        clusters_info["n_clusters"],
        clusters_info["n_rows"],
        clusters_info["largest"],
        clusters_info["n_singletons"],
    )
    if clusters_info["largest"] > max(10, 0.01 * len(cohort)):
        log.warning(
            "largest identity cluster holds %d images: check for duplicates or lower "
            "split.identity_threshold",
            clusters_info["largest"],
        )
    log.info("split: %s", report["counts"])
    return table, report


def split_balance(table: pd.DataFrame, strata: pd.Series) -> dict[str, Any]:
    """Counts per split and per stratum, and the largest train/test gap in group x sex shares."""
    counts = table["split"].value_counts().reindex(list(SPLITS), fill_value=0)
    per_stratum = pd.crosstab(strata.rename("stratum"), table["split"]).reindex(
        columns=list(SPLITS), fill_value=0
    )
    group_sex = (
        table["group"].astype(str)
        + "|"
        + table["sex"].astype("object").where(table["sex"].notna(), "NA").astype(str)
    )
    shares = pd.crosstab(group_sex, table["split"], normalize="columns").reindex(
        columns=list(SPLITS), fill_value=0.0
    )
    return {
        "counts": {name: int(counts[name]) for name in SPLITS},
        "test_share": float(counts["test"] / max(1, len(table))),
        "group_sex_shares": {
            str(key): {name: round(float(shares.loc[key, name]), 4) for name in SPLITS}
            for key in shares.index
        },
        "max_group_sex_share_gap": (
            float((shares["train"] - shares["test"]).abs().max()) if len(shares) else 0.0
        ),
        "strata": {
            str(key): {name: int(per_stratum.loc[key, name]) for name in SPLITS} for key in per_stratum.index
        },
    }


def align_features(
    wanted_ids: Sequence[str], feature_ids: Sequence[str], source: str = "features"
) -> np.ndarray:
    """Row indices into ``feature_ids`` for each of ``wanted_ids``.

    Raises
    ------
    PhenofaceError
        When an id has no feature row, or a feature id appears twice.
    """
    feature_ids = [str(i) for i in feature_ids]
    position = {image_id: row for row, image_id in enumerate(feature_ids)}
    if len(position) != len(feature_ids):
        duplicated = [i for i, c in Counter(feature_ids).items() if c > 1]
        raise PhenofaceError(f"{source} has duplicate image ids {duplicated[:5]}; re-run extract_features")
    missing = [str(i) for i in wanted_ids if str(i) not in position]
    if missing:
        raise PhenofaceError(
            f"{len(missing)} cohort image(s) have no row in {source}, e.g. {missing[:5]}; "
            "re-run extract_features for the current cohort"
        )
    return np.array([position[str(i)] for i in wanted_ids], dtype=np.int64)


#: Columns of the split table read as text (ids, codes), whatever they look like.
SPLIT_TEXT_COLUMNS = {"image_id": str, "group": str, "sex": str, "subject_id": str, "split": str}


def read_split_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read the split table written by ``split_cohort`` (ids and codes as text).

    Raises
    ------
    PhenofaceError
        When the file is missing or has no ``split`` column.
    """
    if not Path(path).is_file():
        raise PhenofaceError(f"split table {path} not found; run split_cohort")
    table = pd.read_csv(path, dtype=SPLIT_TEXT_COLUMNS, keep_default_na=False)
    if "split" not in table.columns:
        raise PhenofaceError(f"{path} has no 'split' column; re-run split_cohort")
    return table


def feature_rows(npz_path: str | os.PathLike, image_ids: Sequence[str], key: str) -> np.ndarray:
    """Rows of array ``key`` of a features npz, in the order of ``image_ids`` (float32)."""
    with np.load(npz_path, allow_pickle=False) as data:
        rows = align_features(list(image_ids), data["image_id"].astype(str).tolist(), source=str(npz_path))
        return np.asarray(data[key], dtype=np.float32)[rows]


def training_half(
    split_table: pd.DataFrame, features_path: str | os.PathLike, key: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Features (``key``) and table rows of the training half, in table order."""
    train = split_table[split_table["split"] == "train"].reset_index(drop=True)
    if train.empty:
        raise PhenofaceError("the split table has no training rows; check split.test_fraction")
    return feature_rows(features_path, train["image_id"], key), train
