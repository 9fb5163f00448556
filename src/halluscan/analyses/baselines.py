"""The cheap signals a probe must beat that come from the model itself, as scores per example.

Each baseline is a score per example, higher meaning "more likely wrong" as given (each is
oriented again on the training folds when it is compared, :mod:`.controls`):

- **log-probability** (from the generation pass, no second forward): the mean, min and max
  log-probability of the greedy tokens, and their mean entropy, over the whole response and over
  the located exact-answer tokens (8 scores; LLMsKnow's ``logprob_detection.py`` reads the same
  quantities): minus the log-probability, and the entropy itself;
- **p(True)** (:mod:`halluscan.engine.ptrue`): one minus the probability the model gives to
  "the proposed answer is true", for each order of the options and their mean;
- **sampling consistency**: one minus the share of K answers sampled at temperature 1 whose
  exact answer agrees with the greedy one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from halluscan.positions import token_span
from halluscan.records import Example
from halluscan.text import normalize

SPANS = ("response", "exact_answer")
STATS = ("logprob_mean", "logprob_min", "logprob_max", "entropy_mean")
# baseline name -> a score per example, higher = more likely wrong (NaN: none)
Scores = dict[str, np.ndarray]


def _tokens(e: Example, span: str) -> slice | None:
    """The response tokens a baseline reads.

    All, or the exact answer's (None when it was not located).
    """
    if span == "response":
        return slice(0, len(e.token_logprobs))
    if e.exact_span is None or not e.token_starts:
        return None
    hit = token_span(e.exact_span, e.token_starts, len(e.response))
    return slice(hit[0], hit[1] + 1) if hit else None


def logprob_scores(examples: Sequence[Example]) -> Scores:
    """The 8 log-probability baselines per example; higher = more likely wrong (NaN: undefined)."""
    out = {f"{stat}_{span}": np.full(len(examples), np.nan) for span in SPANS for stat in STATS}
    for i, e in enumerate(examples):
        for span in SPANS:
            sl = _tokens(e, span)
            lp, ent = (
                np.asarray(e.token_logprobs[sl] if sl else ()),
                np.asarray(e.token_entropies[sl] if sl else ()),
            )
            if lp.size == 0:
                continue
            out[f"logprob_mean_{span}"][i] = -lp.mean()
            out[f"logprob_min_{span}"][i] = -lp.min()
            out[f"logprob_max_{span}"][i] = -lp.max()
            out[f"entropy_mean_{span}"][i] = ent.mean()
    return out


def consistency_scores(
    examples: Sequence[Example], samples: dict[tuple[str, int], str | None], k: int
) -> np.ndarray:
    """1 - the share of the ``k`` samples whose exact answer agrees with the greedy one.

    ``samples[(qid, i)]`` is sample i's located exact answer (None: none located, which agrees
    with nothing). A greedy answer without a located exact answer is compared by its whole text.
    """
    out = np.full(len(examples), np.nan)
    for j, e in enumerate(examples):
        greedy = normalize(e.exact_text or e.response)
        agree = [samples.get((e.qid, i)) for i in range(k)]
        out[j] = 1.0 - float(np.mean([a is not None and normalize(a) == greedy for a in agree]))
    return out
