"""What a sceptic tries first: the cheap signals a probe must beat, on its own examples and folds.

Every control is scored on exactly the test examples the probe is scored on, fold by fold, so
the probe's gain over it is a paired difference per fold with a Student-t interval:

- **token identity**: a probe on layer 0 (the embedding output) at the probe's position, and one
  on layer 0 at every exact-answer position together;
- **the response text alone**: a logistic regression on its words and word pairs
  (scikit-learn's vectoriser, fitted on each training fold), with no model at all;
- **the locator's rule**, alone and with the relation: which rule found the exact answer
  can tell the classes apart when a rule only ever fires for one of them;
- **text + rule + relation**: all three in one regression, the strongest cheap control;
- **the relation prior**: each relation's training rate of wrong answers;
- **fixed scores** (log-probabilities, p(True), sampling consistency): each oriented on the
  training fold (the sign that ranks its training examples better), never on the test fold.

Pure maths on arrays and records; the study's stage gathers the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from halluscan.analyses.summary import OMIT, Interval, mean_ci
from halluscan.probes.sweep import GAIN_BOUNDS, auc_rows

Split = tuple[np.ndarray, np.ndarray]  # (train rows, test rows) of one fold, sklearn's form
FitScore = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (train rows, test rows) -> test scores

TEXT_ONLY, RULE, RULE_RELATION, CHEAP = "text", "rule", "rule+relation", "text+rule+relation"


@dataclass(frozen=True)
class Compared:
    """One signal against the probe on the same folds: its AUC, and the probe's paired gain."""

    kind: str  # "control" or "baseline"
    auc: float | None
    ci95: Interval | None
    n: int
    gain: float | None
    gain_ci95: Interval | None
    probe_clear: bool  # the gain's interval clears zero
    orientation: str | None = field(default=None, metadata=OMIT)  # fixed scores: how oriented


def fold_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """AUC of ``scores`` for ``y`` (NaN with one class, or with no finite score)."""
    ok = np.isfinite(scores)
    return float(auc_rows(scores[ok][None], y[ok])[0]) if ok.any() else float("nan")


def compare(
    probe: np.ndarray, per_fold: np.ndarray, n: int, kind: str, orientation: str | None = None
) -> Compared:
    """A signal's per-fold AUCs against the probe's on the same folds."""
    auc, ci = mean_ci(per_fold)
    gain, gain_ci = mean_ci(probe - per_fold, GAIN_BOUNDS)
    clear = bool(gain_ci is not None and gain_ci[0] > 0)
    return Compared(kind, auc, ci, n, gain, gain_ci, clear, orientation)


def oriented(score: np.ndarray, y: np.ndarray, splits: Sequence[Split]) -> tuple[np.ndarray, str]:
    """A fixed score's per-fold test AUC, each fold oriented on its own training rows.

    Returns the AUCs and the orientation: ``higher = wrong``, ``lower = wrong``, or ``mixed``
    when the folds disagreed (a sign of no signal).
    """
    aucs, signs = [], []
    for tr, te in splits:
        sign = -1.0 if fold_auc(score[tr], y[tr]) < 0.5 else 1.0
        signs.append(sign)
        aucs.append(fold_auc(sign * score[te], y[te]))
    names = {1.0: "higher = wrong", -1.0: "lower = wrong"}
    orientation = names[signs[0]] if len(set(signs)) == 1 else "mixed"
    return np.array(aucs), orientation


def fitted(fit_score: FitScore, y: np.ndarray, splits: Sequence[Split]) -> np.ndarray:
    """A fitted control's per-fold test AUC: fitted on each training fold, scored on its test."""
    return np.array([fold_auc(fit_score(tr, te), y[te]) for tr, te in splits])


def text_model(
    texts: Sequence[str], y: np.ndarray, categories: Sequence[Sequence[str]] | None = None
) -> FitScore:
    """Words and word pairs of ``texts`` (and one-hot ``categories``) into a logistic regression.

    The vocabulary is the training fold's alone. With ``texts`` empty strings throughout, only
    the categories speak.
    """
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    docs = np.asarray(texts, dtype=object)
    cats = np.asarray(categories, dtype=object) if categories is not None else None

    def fit_score(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        parts_tr, parts_te = [], []
        if any(d.strip() for d in docs[tr]):
            vec = CountVectorizer(ngram_range=(1, 2), binary=True)
            parts_tr.append(vec.fit_transform(docs[tr]))
            parts_te.append(vec.transform(docs[te]))
        if cats is not None:
            enc = OneHotEncoder(handle_unknown="ignore")
            parts_tr.append(enc.fit_transform(cats[tr]))
            parts_te.append(enc.transform(cats[te]))
        if not parts_tr:
            return np.zeros(len(te))
        xtr, xte = csr_matrix(hstack(parts_tr)), csr_matrix(hstack(parts_te))
        model = LogisticRegression(C=1.0, max_iter=2000).fit(xtr, y[tr])
        return np.asarray(model.decision_function(xte))

    return fit_score


def category_model(categories: Sequence[Sequence[str]], y: np.ndarray) -> FitScore:
    """The training rate of wrong answers per category combination (the overall rate if new)."""
    keys = np.array(["\x1f".join(c) for c in categories], dtype=object)

    def fit_score(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        prior = float(y[tr].mean())
        rate = {k: float(y[tr][keys[tr] == k].mean()) for k in set(keys[tr])}
        return np.array([rate.get(k, prior) for k in keys[te]])

    return fit_score
