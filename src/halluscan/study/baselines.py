"""The study's baseline and error-type stages: the model calls they need, then the pure maths.

The log-prob scores come from the generation pass (no model call); p(True) asks the model
about each answer; sampling draws ``--samples`` answers per question and grades them. The
scores go to :func:`halluscan.analyses.baselines.compare`, the sampled grades to
:mod:`halluscan.analyses.errortypes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from halluscan import progress
from halluscan.analyses import errortypes
from halluscan.analyses.baselines import Scores, consistency_scores
from halluscan.engine.ptrue import ORDERS, p_true
from halluscan.engine.sampling import Key, sample_answers
from halluscan.positions import Cell
from halluscan.records import Example, Generation, Grade
from halluscan.store import ActivationStore
from halluscan.study.arrays import store_features
from halluscan.study.context import StudyContext

SAMPLING_TEMPERATURE = 1.0


@dataclass(frozen=True)
class Sampled:
    """A study's sampled answers and their grades, keyed by (question id, sample index)."""

    generations: dict[Key, Generation]
    grades: dict[Key, Grade]


def p_true_scores(ctx: StudyContext, examples: Sequence[Example]) -> Scores:
    """1 - p(True) per example, for each order of the options and for their mean.

    The proposed answer is the located exact answer, else the whole response.
    """
    items = [(e.question, e.exact_text or e.response) for e in examples]
    out = {}
    bar = progress.bar(2 * len(items), "p(True)", "answer", ctx.config.quiet)
    for order in ORDERS:
        out[f"p_true_{order}"] = 1.0 - p_true(
            ctx.lm, items, order, ctx.config.batch_size, bar.update
        )
    bar.close()
    out["p_true_mean"] = (out["p_true_true_first"] + out["p_true_false_first"]) / 2
    return out


def sample(ctx: StudyContext, examples: Sequence[Example]) -> Sampled:
    """``--samples`` answers per question at temperature 1, and their grades."""
    by_id = {q.qid: q for q in ctx.dataset.questions}
    qs = [by_id[e.qid] for e in examples]
    opts = replace(
        ctx.generation, temperature=SAMPLING_TEMPERATURE, seed=ctx.config.seed, token_stats=False
    )
    gens = sample_answers(ctx.lm, qs, ctx.config.samples, opts, ctx.config.quiet)
    return Sampled(gens, {key: ctx.grader.grade(by_id[key[0]], g) for key, g in gens.items()})


def consistency(ctx: StudyContext, examples: Sequence[Example], sampled: Sampled) -> np.ndarray:
    """The sampling-consistency baseline.

    How many samples' exact answers disagree with the greedy one.
    """
    located = {key: g.exact_text for key, g in sampled.grades.items()}
    return consistency_scores(examples, located, ctx.config.samples)


def error_types(
    ctx: StudyContext,
    store: ActivationStore,
    examples: list[Example],
    sampled: Sampled,
    cell: Cell,
) -> errortypes.ErrorTypes:
    """Each question's error types from its samples, and a probe per type at the best cell."""
    cfg = ctx.config
    types = errortypes.question_types(examples, sampled.grades, cfg.samples)
    features = store_features(store, ctx.site)
    probed = errortypes.probe_types(
        features, examples, types, cell, cfg.folds, cfg.seed, cfg.probe_c
    )
    return errortypes.ErrorTypes(cfg.samples, probed)
