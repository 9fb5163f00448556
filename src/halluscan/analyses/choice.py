"""Answer choice, the maths: pick one of a question's sampled answers three ways, and compare them.

The greedy answer (the study's own), a majority vote over the sampled exact answers, and the
sample the probe scores as least likely wrong; with the oracle (any sample right) and the mean
sample, and paired bootstrap intervals of the probe's gain. The study's choice stage
(:mod:`halluscan.study.choice`) samples and scores; this module only counts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from halluscan.analyses.summary import Interval
from halluscan.errors import HalluscanError
from halluscan.probes.sweep import auc_rows
from halluscan.records import JsonObject
from halluscan.text import normalize

WAYS = ("greedy", "majority", "probe", "oracle", "sample_mean")


@dataclass(frozen=True)
class Candidate:
    """One sampled answer.

    Whether it is right, its exact answer (or text), and the probe's view of it.
    """

    correct: bool
    text: str
    p_wrong: float
    located: bool  # its exact answer was found (the probe read it where it was trained)
    scored: bool = True  # False: an empty answer, which the probe cannot read (p_wrong 1)


@dataclass(frozen=True)
class Gain:
    """The probe's accuracy gain over another way of choosing, with a paired 95 % interval."""

    mean: float
    ci95: Interval


@dataclass(frozen=True)
class ChoiceResult:
    """What ``halluscan choose`` found on a study's held-out questions (``answer_choice.json``)."""

    n_questions: int
    samples: int
    temperature: float
    seed: int
    probe_layer: int
    samples_reused_from_study: bool
    n_train_examples: int
    accuracy: dict[str, float]
    probe_minus_greedy: Gain
    probe_minus_majority: Gain
    sample_auc: float | None
    provenance: JsonObject


def split_questions(qids: list[str], n_test: int, seed: int) -> tuple[set[str], set[str]]:
    """Held-out and training question ids (disjoint; the held-out ones drawn with ``seed``)."""
    uniq = sorted(set(qids))
    if not 0 < n_test < len(uniq):
        raise HalluscanError(
            f"--questions {n_test}: give between 1 and {len(uniq) - 1} held-out questions"
        )
    random.Random(seed).shuffle(uniq)
    return set(uniq[:n_test]), set(uniq[n_test:])


def majority(answers: list[str]) -> int:
    """Index of the first sample whose (normalised) answer is the most common one."""
    keys = [normalize(a) for a in answers]
    top = Counter(keys).most_common(1)[0][0]
    return keys.index(top)


def paired_interval(a: np.ndarray, b: np.ndarray, seed: int, n_boot: int = 2000) -> Interval:
    """95 % bootstrap interval of mean(a - b) over questions (paired)."""
    rng = np.random.default_rng(seed)
    d = a.astype(float) - b.astype(float)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def choices(
    greedy: Sequence[bool], candidates: Sequence[Sequence[Candidate]]
) -> dict[str, list[float]]:
    """Per question, whether each way of choosing (and the oracle, and the mean sample) is right.

    The probe picks among the samples whose exact answer was located (all when none was).
    """
    rows: dict[str, list[float]] = {k: [] for k in WAYS}
    for right_greedy, cands in zip(greedy, candidates, strict=True):
        right = [c.correct for c in cands]
        pool = [k for k, c in enumerate(cands) if c.located] or list(range(len(cands)))
        pick = min(pool, key=lambda k: cands[k].p_wrong)
        rows["greedy"].append(right_greedy)
        rows["majority"].append(right[majority([c.text for c in cands])])
        rows["probe"].append(right[pick])
        rows["oracle"].append(any(right))
        rows["sample_mean"].append(float(np.mean(right)))
    return rows


def gains(rows: dict[str, list[float]], seed: int) -> tuple[dict[str, float], Gain, Gain]:
    """Accuracy of each way, and the probe's gains over greedy decoding and the majority vote."""
    acc = {k: float(np.mean(v)) for k, v in rows.items()}
    arr = {k: np.array(v, dtype=float) for k, v in rows.items()}

    def gain(other: str, s: int) -> Gain:
        return Gain(acc["probe"] - acc[other], paired_interval(arr["probe"], arr[other], s))

    return acc, gain("greedy", seed), gain("majority", seed + 1)


def sample_auc(candidates: Sequence[Sequence[Candidate]]) -> float | None:
    """The probe's AUC over every scored sample (wrong vs right); None with one class only."""
    scored = [c for row in candidates for c in row if c.scored]
    y = np.array([0 if c.correct else 1 for c in scored])
    if not 0 < y.sum() < len(y):
        return None
    return float(auc_rows(np.array([c.p_wrong for c in scored])[None], y)[0])
