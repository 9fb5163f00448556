"""The collection loop: generate answers, grade them, locate the exact answer, and put store chunks.

Activations come from the generation pass itself (see :mod:`halluscan.engine.generate`); each
example's named positions are picked out of its captured states and put, with its
:class:`~halluscan.records.Example` record, into a chunk sink: one chunk per batch. One process
puts them into the store's writer; a Ray worker (:mod:`halluscan.cluster.worker`) runs the very
same loop and sends its chunks back. The caller says which batches are left to do (a resumed
run skips the questions its store holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from halluscan.engine.decode import EagerFeed
from halluscan.engine.generate import batch_order, generate
from halluscan.engine.given import GivenFeed, collect_during
from halluscan.engine.selfextract import self_extract
from halluscan.grade import Grader, spans_overlap
from halluscan.models.hooks import to_host_async
from halluscan.models.loading import LoadedModel
from halluscan.models.sites import first_layer
from halluscan.positions import fallback_token, resolve, token_span
from halluscan.records import Example, GenerateOptions, Generation, Grade, Question
from halluscan.store import ChunkSink, NewChunk


@dataclass(frozen=True)
class CollectJob:
    """What turns questions into store chunks, the same on every worker.

    ``generation`` captures in the store's dtype, at the study's batch size; ``site`` is where
    the states are read, ``positions`` which of them are kept.
    """

    generation: GenerateOptions
    grader: Grader
    positions: tuple[str, ...]
    site: str
    self_extract: bool = False  # the model extracts its exact answers (else the grader's rule)


@dataclass(frozen=True)
class Picked:
    """One batch's chunk.

    Activations ``[B, layer, position, H]`` (being copied to the host), and its rows.
    """

    acts: torch.Tensor
    valid: np.ndarray  # [B, position]
    examples: list[Example]
    ready: Any  # the copy's CUDA event (None on the CPU)


def gather_batch(
    gens: list[Generation],
    grades: list[Grade],
    states: torch.Tensor,
    tail: int,
    positions: Sequence[str],
) -> tuple[torch.Tensor, np.ndarray, list[dict[str, int | None]], Any]:
    """Pick each example's named positions out of its states -> [B, layer, pos, H] on the host.

    The picking runs where the states are (the GPU during a GPU run); one copy, started here and
    finished when the returned event (None on the CPU) is reached, brings the batch to the host.
    A position that does not exist for an example is zero and not valid.
    """
    b = states.shape[0]
    cols = torch.zeros(b, len(positions), dtype=torch.long)
    valid = np.zeros((b, len(positions)), dtype=bool)
    all_idx = []
    for i, (g, gr) in enumerate(zip(gens, grades, strict=True)):
        p, r = len(g.prompt_ids), len(g.response_ids)
        exact = (
            token_span(gr.exact_span, g.token_starts, len(g.response)) if gr.exact_span else None
        )
        # no exact answer: read at the answer's last token instead, and say so (Example)
        exact = exact or fallback_token(g.response, g.token_starts)
        idx = {name: resolve(name, p, r, exact) for name in positions}
        for j, name in enumerate(positions):
            k = idx[name]
            col = None if k is None else (k - (p - tail) if k < p else tail + k - p)
            if col is not None and 0 <= col < states.shape[2]:
                cols[i, j], valid[i, j] = col, True
            else:
                idx[name] = None
        all_idx.append(idx)
    dev = states.device
    rows = torch.arange(b, device=dev)[:, None]
    picked = states[rows, :, cols.to(dev)]  # [B, pos, layer, H]
    keep = torch.from_numpy(valid).to(dev)[:, :, None, None]
    acts = torch.where(keep, picked, torch.zeros((), dtype=states.dtype, device=dev)).transpose(
        1, 2
    )
    host, ready = to_host_async(acts.contiguous())
    return host, valid, all_idx, ready


def batch_chunk(
    lm: LoadedModel,
    job: CollectJob,
    by_id: dict[str, Question],
    gens: list[Generation],
    states: torch.Tensor | None,
    tail: int,
) -> Picked:
    """Locate and grade one generated batch and pick its positions.

    With ``job.self_extract`` the model extracts each exact answer first (one batched pass).
    """
    assert states is not None
    qs = [by_id[g.qid] for g in gens]
    agrees: list[bool | None] = [None] * len(gens)
    if job.self_extract:
        items = [(q.question, g.response) for q, g in zip(qs, gens, strict=True)]
        found = self_extract(lm, items, job.generation.batch_size)
        grades = [
            job.grader.grade(q, g, (span, "self" if span else "none"))
            for q, g, (_, span) in zip(qs, gens, found, strict=True)
        ]
        agrees = [
            spans_overlap(gr.exact_span, job.grader.locate(q, g.response)[0])
            if gr.exact_span
            else None
            for q, g, gr in zip(qs, gens, grades, strict=True)
        ]
    else:
        grades = [job.grader.grade(q, g) for q, g in zip(qs, gens, strict=True)]
    acts, valid, idx, ready = gather_batch(gens, grades, states, tail, job.positions)
    examples = [
        replace(Example.of(q, g, gr, ix), rule_agrees=a)
        for q, g, gr, ix, a in zip(qs, gens, grades, idx, agrees, strict=True)
    ]
    return Picked(acts, valid, examples, ready)


def batches(lm: LoadedModel, qs: Sequence[Question], opts: GenerateOptions) -> list[list[Question]]:
    """The batches of ``qs`` a study runs: sorted by prompt length, sized by rows and tokens.

    At most ``opts.batch_size`` rows, and fewer for long prompts (see :func:`batch_order`).
    """
    prompts = [lm.prompt_ids(q.question, opts.system_prompt) for q in qs]
    order = batch_order(prompts, opts.batch_size, opts.max_new_tokens)
    return [[qs[i] for i in idx] for idx in order]


def collect(
    lm: LoadedModel,
    job: CollectJob,
    work: Sequence[Sequence[Question]],
    sink: ChunkSink,
    given: GivenFeed | None = None,
    progress: Callable[[list[Example]], None] | None = None,
) -> float:
    """Generate, grade, locate and put one chunk per batch of ``work`` into ``sink``.

    ``given``: each batch's given answers are fed off its prompts' KV cache right after the
    prefill (on the eager decoder) and go to their own sink. ``progress(examples)`` runs after
    each batch. Returns the seconds the given answers took.
    """
    layers = list(range(first_layer(job.site), lm.n_layers + 1))
    forked = [0.0]
    hook = None
    if given is not None and given.items:
        fork = collect_during(
            lm, given.items, given.sink, getattr(torch, job.generation.capture_dtype)
        )

        def hook(qids: list[str], feed: EagerFeed) -> None:
            t = time.perf_counter()
            fork(qids, feed)
            forked[0] += time.perf_counter() - t

    for batch in work:
        sink.ready()  # a failed write or a full disk stops the run before the batch, not after
        opts = replace(job.generation, batch_size=len(batch))
        by_id = {q.qid: q for q in batch}
        for gens, states, tail in generate(lm, batch, opts, layers, on_prefill=hook, site=job.site):
            chunk = batch_chunk(lm, job, by_id, gens, states, tail)
            records = [e.to_json() for e in chunk.examples]
            sink.put(NewChunk({job.site: chunk.acts}, chunk.valid, records, chunk.ready))
            if progress is not None:
                progress(chunk.examples)
    return forked[0]
