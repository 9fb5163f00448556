"""Which locator a study uses: the model's own extraction where it works, else the rule.

``--locator auto`` (the default) asks the model to extract its own exact answers from a pilot
sample of its answers before the study starts (:mod:`halluscan.engine.selfextract`); when at
least ``SUCCESS`` of them are spans of their responses, the model locates every answer of the
study (``self``), else the class-blind rule does (``class-blind``). The choice never looks at a
grade. ``self`` runs the extraction on every answer without a pilot.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from halluscan.analyses.locator import SelfExtraction
from halluscan.engine.generate import generate
from halluscan.engine.selfextract import self_extract
from halluscan.grade import Grader, spans_overlap
from halluscan.models.loading import LoadedModel
from halluscan.records import Example, GenerateOptions, Question

PILOT = 64  # answers in the pilot
SUCCESS = 0.9  # the share of extractions the model needs to locate a study's answers
SELF, RULE = "self", "class-blind"


def pilot(
    lm: LoadedModel,
    grader: Grader,
    questions: Sequence[Question],
    opts: GenerateOptions,
    seed: int,
) -> SelfExtraction:
    """The model's extraction on a seeded sample of ``PILOT`` answers, against the rule's spans.

    The grades only split the success rate by class afterwards; they do not decide anything.
    """
    qs = random.Random(seed).sample(list(questions), min(PILOT, len(questions)))
    gens = [g for batch, _, _ in generate(lm, qs, replace(opts, token_stats=False)) for g in batch]
    by_id = {q.qid: q for q in qs}
    found = self_extract(lm, [(by_id[g.qid].question, g.response) for g in gens], opts.batch_size)
    grades = [grader.grade(by_id[g.qid], g) for g in gens]
    ok = [span is not None for _, span in found]
    agree = [
        spans_overlap(span, gr.exact_span)
        for (_, span), gr in zip(found, grades, strict=True)
        if span is not None
    ]
    share = float(np.mean(ok)) if ok else 0.0
    return SelfExtraction(
        len(gens),
        by_class([gr.correct for gr in grades], ok),
        float(np.mean(agree)) if agree else None,
        share >= SUCCESS,
        True,
        SUCCESS,
    )


def by_class(correct: Sequence[bool], ok: Sequence[bool]) -> dict[str, float]:
    """The share of ``ok`` among the correct and among the wrong answers."""
    out = {}
    for name, want in (("correct", True), ("wrong", False)):
        mine = [o for c, o in zip(correct, ok, strict=True) if c is want]
        if mine:
            out[name] = float(np.mean(mine))
    return out


def of_study(examples: Sequence[Example]) -> SelfExtraction:
    """How the extraction did on every answer of a study it located."""
    ok = [e.locator == SELF for e in examples]
    agree = [e.rule_agrees for e in examples if e.locator == SELF and e.rule_agrees is not None]
    return SelfExtraction(
        len(examples),
        by_class([e.correct for e in examples], ok),
        float(np.mean(agree)) if agree else None,
        True,
        False,
        SUCCESS,
    )
