"""Sex inferred from the face, for reference-pool rows whose sheet gives none.

MegaAge, the paper's reference set, has ages but no sex. To match on age x
sex against such a pool:

1. :func:`fit_sex_classifier` trains a seeded logistic regression on the
   frozen network's 128-d descriptors of every ``ok`` labelled image (the
   cases, or the sheet named by ``sampling.sex_reference``).
2. :func:`cross_validated_p_female` and :func:`accuracy_by_bin` estimate its
   accuracy honestly: person-grouped cross-validation (subject ids and
   identity clusters, as the train/test split), overall and per age bin.
   A bin whose accuracy among confident predictions is below
   ``sampling.sex_min_accuracy`` (or rests on fewer than
   :data:`MIN_CONFIDENT` confident predictions) is matched on age alone
   wherever the pool has rows without sex (:func:`age_only_bins`).
3. Pool rows without sex are ranked within their age bin
   (:func:`infer_pool`); each candidate round takes, per bin, only as many
   of them as the shortfall needs after the expected share of confident
   predictions of each sex (:func:`plan_unknown_candidates`). Labelled rows
   come first in a stratum, rows of inferred sex after them.
4. Only predictions whose probability reaches ``sampling.sex_confidence``
   are used; the others are counted as ``sex_uncertain`` and never drawn.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .cohort import SEXES
from .errors import PhenofaceError
from .features import read_feature_shards
from .io import write_npz
from .qc import NOT_NEEDED, OK
from .runtime import make_rng
from .sampling import age_bin_labels, label_ages

LOGGER = logging.getLogger(__name__)

#: A bin's accuracy estimate needs at least this many confident out-of-fold predictions.
MIN_CONFIDENT = 10
#: Cross-validation folds (fewer when there are fewer person groups of a sex).
N_FOLDS = 5
#: Pseudo-rows of the prior in the per-bin share of confident predictions of a sex.
PRIOR_WEIGHT = 4.0
#: Columns of results/cohort/sex_inference.csv.
REPORT_COLUMNS = [
    "age_bin",
    "n",
    "n_female",
    "accuracy",
    "n_confident",
    "share_confident",
    "accuracy_confident",
    "pool_without_sex",
    "matched_on",
]
OVERALL = "all"


@dataclass(frozen=True)
class SexClassifier:
    """A fitted standardise + logistic-regression model of P(female | descriptor)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def p_female(self, descriptors: np.ndarray) -> np.ndarray:
        """Probability that each face is female."""
        z = (np.asarray(descriptors, dtype=np.float64) - self.mean) / self.scale
        return expit(z @ self.coef + self.intercept)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model's arrays to an ``.npz`` (atomically)."""
        write_npz(
            path, mean=self.mean, scale=self.scale, coef=self.coef, intercept=np.array([self.intercept])
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> SexClassifier:
        """Read a model written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as arrays:
            return cls(arrays["mean"], arrays["scale"], arrays["coef"], float(arrays["intercept"][0]))


def sex_pipeline(seed: int) -> Pipeline:
    """The unfitted model: standardised descriptors into a seeded logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))


def _female(sex: Sequence[str]) -> np.ndarray:
    """1 for ``F``, 0 for ``M``; raises on anything else."""
    values = pd.Series(list(sex), dtype=object).astype(str)
    if not values.isin(SEXES).all():
        raise PhenofaceError("sex classifier: every training row needs sex M or F")
    return values.eq("F").to_numpy(dtype=int)


def check_training_set(sex: Sequence[str], groups: np.ndarray, source: str) -> None:
    """Raise unless both sexes have at least two person groups to learn and test on."""
    female = _female(sex)
    groups = np.asarray(groups)
    for value, name in ((1, "female"), (0, "male")):
        n_groups = len(np.unique(groups[female == value]))
        if n_groups < 2:
            raise PhenofaceError(
                f"sex inference: the {source} give {n_groups} {name} person(s) with a face that passed QC; "
                "at least 2 of each sex are needed to train and check the classifier. Name a larger labelled "
                "sheet in sampling.sex_reference, or set sampling.infer_sex: false."
            )


def fit_sex_classifier(descriptors: np.ndarray, sex: Sequence[str], seed: int) -> SexClassifier:
    """Fit P(female) on labelled descriptors (standardised logistic regression, seeded)."""
    model = sex_pipeline(seed).fit(np.asarray(descriptors, dtype=np.float64), _female(sex))
    scaler, regression = model[0], model[1]
    return SexClassifier(
        scaler.mean_.copy(), scaler.scale_.copy(), regression.coef_[0].copy(), float(regression.intercept_[0])
    )


def cross_validated_p_female(
    descriptors: np.ndarray, sex: Sequence[str], groups: np.ndarray, seed: int
) -> np.ndarray:
    """Out-of-fold P(female) of every labelled row, folds grouped by person.

    A person's photos are never on both sides of a fold, so the estimate is
    not flattered by recognising the person. Folds are stratified by sex
    (scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`).
    """
    female = _female(sex)
    groups = np.asarray(groups)
    n_folds = min(N_FOLDS, *(len(np.unique(groups[female == value])) for value in (0, 1)))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    points = np.asarray(descriptors, dtype=np.float64)
    out = np.full(len(female), np.nan)
    for train, test in folds.split(points, female, groups):
        out[test] = sex_pipeline(seed).fit(points[train], female[train]).predict_proba(points[test])[:, 1]
    return out


def is_confident(p_female: np.ndarray, confidence: float) -> np.ndarray:
    """True where the probability of the predicted sex reaches ``confidence``."""
    p_female = np.asarray(p_female, dtype=float)
    return np.maximum(p_female, 1.0 - p_female) >= confidence


def predicted_sex(p_female: np.ndarray) -> np.ndarray:
    """``F`` where P(female) >= 0.5, else ``M``."""
    return np.where(np.asarray(p_female, dtype=float) >= 0.5, "F", "M").astype(object)


def accuracy_by_bin(
    ages: Sequence[int],
    sex: Sequence[str],
    p_female: np.ndarray,
    age_bins: Sequence[int],
    confidence: float,
) -> pd.DataFrame:
    """Accuracy of out-of-fold predictions per age bin and overall.

    Returns
    -------
    pandas.DataFrame
        One row per age bin of ``age_bins`` (all bins, empty ones with
        ``n`` 0 and NaN rates) and a last row ``all``: ``n``, ``n_female``,
        ``accuracy`` (all predictions), ``n_confident``, ``share_confident``
        and ``accuracy_confident`` (predictions at or above ``confidence``).
    """
    truth = pd.Series(list(sex), dtype=object).astype(str).to_numpy()
    correct = predicted_sex(p_female) == truth
    confident = is_confident(p_female, confidence)
    bins = label_ages(ages, age_bins)
    rows = []
    for label in age_bin_labels(age_bins) + [OVERALL]:
        inside = np.ones(len(truth), bool) if label == OVERALL else bins == label
        n, n_confident = int(inside.sum()), int((inside & confident).sum())
        rows.append(
            {
                "age_bin": label,
                "n": n,
                "n_female": int((inside & (truth == "F")).sum()),
                "accuracy": float(correct[inside].mean()) if n else math.nan,
                "n_confident": n_confident,
                "share_confident": n_confident / n if n else math.nan,
                "accuracy_confident": float(correct[inside & confident].mean()) if n_confident else math.nan,
            }
        )
    return pd.DataFrame(rows)


def decide_matching(
    report: pd.DataFrame, pool: pd.DataFrame, age_bins: Sequence[int], min_accuracy: float
) -> pd.DataFrame:
    """Add ``pool_without_sex`` and ``matched_on`` to an :func:`accuracy_by_bin` table.

    A bin is matched on ``age`` alone when the pool has rows without sex
    there and the bin's accuracy among confident predictions is below
    ``min_accuracy`` or rests on fewer than :data:`MIN_CONFIDENT`
    predictions; otherwise on ``age, sex``.
    """
    unknown = pool["sex"].fillna("").astype(str).eq("")
    counts = pd.Series(label_ages(pool.loc[unknown, "age"], age_bins)).value_counts()
    out = report.copy()
    out["pool_without_sex"] = [
        int(unknown.sum()) if label == OVERALL else int(counts.get(label, 0)) for label in out["age_bin"]
    ]
    trusted = (out["n_confident"] >= MIN_CONFIDENT) & (out["accuracy_confident"] >= min_accuracy)
    age_only = ~trusted & (out["pool_without_sex"] > 0) & (out["age_bin"] != OVERALL)
    out["matched_on"] = np.where(age_only, "age", "age, sex")
    return out[REPORT_COLUMNS]


def age_only_bins(report: pd.DataFrame) -> list[str]:
    """Age bins of a sex-inference report that are matched on age alone."""
    rows = report.loc[(report["age_bin"] != OVERALL) & (report["matched_on"] == "age")]
    return rows["age_bin"].astype(str).tolist()


def warn_age_only(report: pd.DataFrame, case_bins: Sequence[str], min_accuracy: float) -> list[str]:
    """Log one warning per case-holding bin matched on age alone; return those bins."""
    bins = [label for label in age_only_bins(report) if label in set(case_bins)]
    indexed = report.set_index("age_bin")
    for label in bins:
        row = indexed.loc[label]
        LOGGER.warning(
            "age bin %s is matched on age alone, not sex: sex inferred from the face is not accurate enough "
            "there (accuracy among confident predictions %s on %d labelled image(s), %d confident; "
            "sampling.sex_min_accuracy %.2f, at least %d confident needed)",
            label,
            "n/a" if pd.isna(row["accuracy_confident"]) else f"{row['accuracy_confident']:.3f}",
            int(row["n"]),
            int(row["n_confident"]),
            min_accuracy,
            MIN_CONFIDENT,
        )
    return bins


def infer_pool(
    ranked_pool: pd.DataFrame,
    age_bins: Sequence[int],
    seed: int,
    predictions: pd.DataFrame,
    confidence: float,
) -> pd.DataFrame:
    """The ranked pool with inferred sex for rows the sheet leaves without one.

    Parameters
    ----------
    ranked_pool : pandas.DataFrame
        Output of :func:`phenoface.sampling.rank_pool` (with the same
        ``age_only_bins``): rows without sex in sex-matched bins carry
        reason ``no_sex``.
    age_bins : sequence of int
        Left edges of the age bins.
    seed : int
        Seed of the ranks of the rows without sex within their age bin.
    predictions : pandas.DataFrame
        ``image_id`` and ``p_female`` of the pool rows featurised so far.
    confidence : float
        ``sampling.sex_confidence``.

    Returns
    -------
    pandas.DataFrame
        ``ranked_pool`` plus ``age_bin``, ``sex_rank`` (rank of a row without
        sex within its age bin, 0 otherwise), ``sex_source`` (``sheet``,
        ``inferred`` or ``""``), ``sex_probability`` (probability of the
        inferred sex; NaN otherwise) and ``sex_uncertain``. Rows without sex
        whose age lies in the bins become eligible; a confident prediction
        gives the row its sex, its stratum and a rank after every labelled
        row of that stratum; the others keep an empty stratum, so they are
        never drawn.
    """
    out = ranked_pool.copy()
    out["age_bin"] = label_ages(out["age"], age_bins)
    unknown = out["reason"].eq("no_sex") & out["age_bin"].isin(age_bin_labels(age_bins))
    out.loc[unknown, ["eligible", "reason"]] = [True, ""]
    out["eligible"] = out["eligible"].astype(bool)

    order = out.loc[unknown, ["image_id", "age_bin"]].sort_values("image_id", kind="stable")
    order = order.assign(_key=make_rng(seed).permutation(len(order))).sort_values(["age_bin", "_key"])
    out["sex_rank"] = 0
    out.loc[order.index, "sex_rank"] = order.groupby("age_bin", sort=False).cumcount() + 1

    p_female = out["image_id"].map(predictions.set_index("image_id")["p_female"]).where(unknown)
    known = p_female.notna()
    sure = known & pd.Series(is_confident(p_female.fillna(0.5), confidence), index=out.index)
    sex = pd.Series(predicted_sex(p_female.fillna(0.5)), index=out.index)
    out["sex_source"] = np.where(out["sex"].fillna("").astype(str).ne(""), "sheet", "")
    out["sex_probability"] = np.where(known, np.maximum(p_female, 1 - p_female), np.nan)
    out["sex_uncertain"] = known & ~sure
    out.loc[sure, "sex"] = sex[sure]
    out.loc[sure, "sex_source"] = "inferred"
    out.loc[sure, "stratum"] = sex[sure] + "|" + out.loc[sure, "age_bin"]
    labelled = out.loc[out["sex_source"].eq("sheet")].groupby("stratum")["rank"].max()
    out.loc[sure, "rank"] = (
        out.loc[sure, "stratum"].map(labelled).fillna(0).astype(int) + out.loc[sure, "sex_rank"]
    )
    out["rank"] = out["rank"].astype(int)
    LOGGER.info(
        "pool rows without sex: %d in the bins, %d featurised, %d confident (%d F, %d M), %d uncertain",
        int(unknown.sum()),
        int(known.sum()),
        int(sure.sum()),
        int((sure & sex.eq("F")).sum()),
        int((sure & sex.eq("M")).sum()),
        int(out["sex_uncertain"].sum()),
    )
    return out


def expected_sex_shares(inferred_pool: pd.DataFrame, report: pd.DataFrame, age_bin: str) -> dict[str, float]:
    """Expected share of featurised rows without sex in ``age_bin`` that come out confident, per sex.

    The prior is the bin's cross-validated share of confident predictions
    (the overall share where the bin has no estimate), split evenly between
    the sexes; it weighs as :data:`PRIOR_WEIGHT` rows against the rows of
    the bin already predicted in earlier rounds.
    """
    indexed = report.set_index("age_bin")
    prior = indexed.loc[age_bin, "share_confident"] if age_bin in indexed.index else math.nan
    if pd.isna(prior) or prior <= 0:
        prior = indexed.loc[OVERALL, "share_confident"]
    prior = float(prior) if pd.notna(prior) and prior > 0 else 0.5
    seen = inferred_pool.loc[(inferred_pool["sex_rank"] > 0) & inferred_pool["sex_probability"].notna()]
    seen = seen.loc[seen["age_bin"] == age_bin]
    inferred = seen["sex_source"].eq("inferred")
    return {
        sex: (float((inferred & seen["sex"].eq(sex)).sum()) + PRIOR_WEIGHT * prior / 2)
        / (len(seen) + PRIOR_WEIGHT)
        for sex in SEXES
    }


def plan_unknown_candidates(
    inferred_pool: pd.DataFrame,
    needed: pd.Series,
    tried_status: pd.DataFrame,
    labelled_candidates: pd.DataFrame,
    report: pd.DataFrame,
    oversample: float,
) -> pd.DataFrame:
    """Rows without sex to preprocess in the next round, per age bin.

    Per sex-matched bin, the shortfall of each sex is what the stratum still
    needs after its ``ok`` rows (labelled or confidently inferred) and the
    expected yield of this round's labelled candidates (one ``ok`` per
    ``oversample``). The bin takes, in ``sex_rank`` order, ``oversample``
    times the largest shortfall divided by that sex's expected confident
    share (:func:`expected_sex_shares`) of its untried rows without sex.

    Returns
    -------
    pandas.DataFrame
        The picked rows of ``inferred_pool`` with ``stratum`` ``?|<bin>`` and
        ``rank`` = their ``sex_rank``; empty when no bin is short.
    """
    tried = set(tried_status.loc[tried_status["status"].astype(str) != NOT_NEEDED, "image_id"])
    ok = set(tried_status.loc[tried_status["status"].astype(str) == OK, "image_id"])
    pool_ok = inferred_pool["image_id"].isin(ok) & inferred_pool["stratum"].ne("")
    labelled_counts = labelled_candidates["stratum"].value_counts()
    untried = inferred_pool.loc[(inferred_pool["sex_rank"] > 0) & ~inferred_pool["image_id"].isin(tried)]
    picks = []
    for age_bin, rows in untried.groupby("age_bin", sort=True):
        shares = expected_sex_shares(inferred_pool, report, str(age_bin))
        rows_needed = 0.0
        for sex in SEXES:
            stratum = f"{sex}|{age_bin}"
            short = (
                int(needed.get(stratum, 0))
                - int((pool_ok & inferred_pool["stratum"].eq(stratum)).sum())
                - labelled_counts.get(stratum, 0) / oversample
            )
            if short > 0:
                rows_needed = max(rows_needed, short / shares[sex])
        if rows_needed <= 0:
            continue
        take = rows.sort_values("sex_rank").head(int(math.ceil(round(oversample * rows_needed, 9))))
        LOGGER.info(
            "age bin %s: %d row(s) without sex to featurise (expected confident share F %.2f, M %.2f; %d left)",
            age_bin,
            len(take),
            shares["F"],
            shares["M"],
            len(rows) - len(take),
        )
        picks.append(take.assign(stratum=f"?|{age_bin}", rank=take["sex_rank"]))
    if not picks:
        return inferred_pool.iloc[0:0].copy()
    return pd.concat(picks)


def annotate_cohort(cohort: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Add ``sex_source`` (``sheet``/``inferred``/empty) and ``sex_probability`` to a cohort.

    Cases and labelled controls are ``sheet`` with an empty probability;
    controls of inferred sex take theirs from ``pool`` (the output of
    :func:`infer_pool`); a control without any sex (age-only bin) has both
    empty.
    """
    out = cohort.copy()
    out["sex_source"] = np.where(out["sex"].fillna("").astype(str).ne(""), "sheet", "")
    out["sex_probability"] = np.nan
    if "sex_source" in pool.columns:
        inferred = pool.loc[pool["sex_source"].eq("inferred")].set_index("image_id")
        hit = out["image_id"].isin(inferred.index) & out["group"].eq("control")
        out.loc[hit, "sex_source"] = "inferred"
        out.loc[hit, "sex_probability"] = out.loc[hit, "image_id"].map(inferred["sex_probability"]).round(4)
    return out


def counts_by_bin(
    cohort: pd.DataFrame, pool: pd.DataFrame, qc: pd.DataFrame, age_bins: Sequence[int]
) -> pd.DataFrame:
    """Per age bin: controls whose sex was inferred and QC-passing pool rows left uncertain.

    ``cohort`` comes from :func:`annotate_cohort`, ``pool`` from :func:`infer_pool`.

    Returns ``age_bin`` (the bins and ``Total``), ``control sex inferred`` and
    ``pool sex uncertain``, to sit beside Table 1.
    """
    labels = age_bin_labels(age_bins)
    inferred = cohort.loc[cohort["sex_source"].eq("inferred"), "age"]
    status = pool["image_id"].map(qc.loc[qc["sheet"] == "pool"].set_index("image_id")["status"])
    uncertain = pool.loc[pool["sex_uncertain"].astype(bool) & status.eq(OK), "age"]
    columns = {}
    for name, ages in (("control sex inferred", inferred), ("pool sex uncertain", uncertain)):
        counts = pd.Series(label_ages(ages, age_bins)).value_counts().reindex(labels, fill_value=0)
        columns[name] = [int(n) for n in counts] + [int(counts.sum())]
    return pd.DataFrame({"age_bin": labels + ["Total"], **columns})


def read_report(path: str | os.PathLike) -> pd.DataFrame:
    """Read results/cohort/sex_inference.csv (bin labels as text)."""
    return pd.read_csv(path, dtype={"age_bin": str, "matched_on": str})


def predict_pool(model_path: str | os.PathLike, feature_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """``image_id`` and ``p_female`` of every featurised row in ``feature_paths``."""
    features = read_feature_shards(feature_paths)
    p_female = (
        SexClassifier.load(model_path).p_female(features["descriptor"]) if len(features["image_id"]) else []
    )
    return pd.DataFrame(
        {"image_id": features["image_id"].astype(str), "p_female": np.asarray(p_female, float)}
    )
