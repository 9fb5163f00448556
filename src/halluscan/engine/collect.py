"""The study's collection stage: generate answers, grade them, locate the exact answer, store activations.

Activations come from the generation pass itself (see :mod:`halluscan.engine.generate`); each
example's named positions are picked out of its captured states and written with its
:class:`~halluscan.records.Example` record, one store chunk per batch. Questions already in the
store are skipped, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from halluscan.engine.decode import EagerFeed
from halluscan.engine.generate import batch_order, generate
from halluscan.engine.given import Forced, collect_during
from halluscan.engine.store import ActivationStore
from halluscan.engine.writer import ChunkWriter
from halluscan.models.hooks import to_host_async
from halluscan.models.loading import LoadedModel
from halluscan.positions import resolve, token_span
from halluscan.records import Example, GenerateOptions, Generation, Grade, Question
from halluscan.settings import StudySettings


def gather_batch(
    gens: list[Generation], grades: list[Grade], states: torch.Tensor, tail: int, positions: list[str]
) -> tuple[torch.Tensor, np.ndarray, list[dict[str, int | None]], Any]:
    """Pick each example's named positions out of its captured states -> [B, layer, pos, H] on the host.

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
        exact = token_span(gr.exact_span, g.token_starts, len(g.response)) if gr.exact_span else None
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
    acts = torch.where(keep, picked, torch.zeros((), dtype=states.dtype, device=dev)).transpose(1, 2)
    host, ready = to_host_async(acts.contiguous())
    return host, valid, all_idx, ready


def collect(
    settings: StudySettings,
    lm: LoadedModel,
    qs: list[Question],
    store: ActivationStore,
    given: tuple[list[Forced], ActivationStore] | None = None,
) -> float:
    """Generate, grade, locate and store activations for the questions not yet in the store.

    ``given`` (the given answers and their store): each batch's given answers are fed off its
    prompts' KV cache right after the prefill (on the eager decoder). Returns the seconds that took.
    """
    cfg = settings.config
    done = store.stored_ids()
    todo = [q for q in qs if q.qid not in done]
    by_id = {q.qid: q for q in qs}
    layers = list(range(lm.n_layers + 1))
    bar = tqdm(total=len(qs), initial=len(qs) - len(todo), desc="generate+extract", unit="q", disable=cfg.quiet)
    forked = [0.0]
    with ChunkWriter(store) as writer, ChunkWriter(given[1]) if given else nullcontext() as given_writer:
        opts = replace(settings.generation, capture_dtype=cfg.store_dtype)  # captured as the store keeps it
        hook = None
        if given is not None and given_writer is not None:
            done = given[1].stored_ids()
            todo_given = [f for f in given[0] if f.answer.item_id not in done]
            fork = collect_during(lm, todo_given, given_writer, getattr(torch, cfg.store_dtype))

            def hook(qids: list[str], feed: EagerFeed) -> None:
                t = time.perf_counter()
                fork(qids, feed)
                forked[0] += time.perf_counter() - t

        for gens, states, tail in generate(lm, todo, opts, layers, progress=bar.update, on_prefill=hook):
            acts, valid, examples, ready = batch_chunk(settings, by_id, gens, states, tail)
            writer.put({cfg.site: acts}, valid, [e.to_json() for e in examples], ready)
            bar.set_postfix(acc=f"{np.mean([e.correct for e in examples]):.2f}")
    bar.close()
    return forked[0]


def batch_chunk(
    settings: StudySettings, by_id: dict[str, Question], gens: list[Generation], states: torch.Tensor | None, tail: int
) -> tuple[torch.Tensor, np.ndarray, list[Example], Any]:
    """Grade and locate one generated batch and pick its positions: the arrays, mask, examples and ready event."""
    assert states is not None
    grades = [settings.grader.grade(by_id[g.qid], g) for g in gens]
    acts, valid, idx, ready = gather_batch(gens, grades, states, tail, list(settings.config.positions))
    examples = [Example.of(by_id[g.qid], g, gr, ix) for g, gr, ix in zip(gens, grades, idx, strict=True)]
    return acts, valid, examples, ready


def batches(lm: LoadedModel, qs: list[Question], opts: GenerateOptions) -> list[list[Question]]:
    """The batches :func:`~halluscan.engine.generate.generate` makes of ``qs``: sorted by prompt length."""
    prompts = [lm.prompt_ids(q.question, opts.system_prompt) for q in qs]
    return [[qs[i] for i in idx] for idx in batch_order(prompts, opts.batch_size)]
