"""Several sampled answers per question (temperature > 0, seeded).

For sampling consistency and answer choice.
"""

from __future__ import annotations

from collections.abc import Sequence

from halluscan import progress
from halluscan.engine.generate import generate
from halluscan.models.loading import LoadedModel
from halluscan.records import GenerateOptions, Generation, Question

Key = tuple[str, int]  # (question id, sample index)


def sample_answers(
    lm: LoadedModel,
    qs: Sequence[Question],
    samples: int,
    opts: GenerateOptions,
    quiet: bool = True,
) -> dict[Key, Generation]:
    """``samples`` answers per question, drawn with ``opts``, keyed by (question id, k).

    Nothing is captured: only the answers are needed. Each batch draws from its own generator,
    seeded with the options' seed and the batch, so the draw is the same on every run.
    """
    rep = [q for q in qs for _ in range(samples)]
    gens: dict[Key, Generation] = {}
    count: dict[str, int] = {}
    bar = progress.bar(len(rep), f"sample answers ({samples} per question)", "answer", quiet)
    for batch, _, _ in generate(lm, rep, opts, progress=bar.update):
        for g in batch:
            k = count.get(g.qid, 0)
            count[g.qid] = k + 1
            gens[(g.qid, k)] = g
    bar.close()
    return gens
