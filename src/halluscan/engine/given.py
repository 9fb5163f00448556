"""Given answers, teacher-forced off the question's own KV cache: the data of the given-answer bank.

Both answers of a question (gold and distractor, :mod:`halluscan.data.pairs`) follow the same
prompt, so the prompt runs once and its KV cache is forked: :func:`fork_answers` copies the
cache of a prefilled batch, two rows per question, and feeds only the answers' tokens, capturing
every residual layer at the answer's named positions. During a study this happens inside the
generation pass, right after each batch's prompts are prefilled (:func:`collect_during`), so the
prompts are not run again; :func:`collect_given` does the same for answers still missing (a run
resumed after its generation, a GPU batch on the static decoder), prefilling their prompts first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from halluscan.data.pairs import GivenAnswer
from halluscan.engine.decode import EagerFeed
from halluscan.engine.extract import gatherer
from halluscan.engine.inputs import fork_cache
from halluscan.models.hooks import StopForward, capture, to_host_async
from halluscan.models.loading import LoadedModel
from halluscan.models.sites import RESIDUAL, cache_kwargs
from halluscan.positions import GIVEN_POSITIONS, resolve, token_span
from halluscan.records import GenerateOptions, JsonObject, Span
from halluscan.store import ActivationStore, ChunkSink, ChunkWriter, NewChunk


@dataclass(frozen=True)
class Forced:
    """One given answer ready to feed.

    Its tokens and, per position, its index in them (None: absent).
    """

    answer: GivenAnswer
    ids: list[int]
    cols: dict[str, int | None]

    def id(self) -> str:
        """Its id in the store (the question's id and which answer it is)."""
        return self.answer.item_id

    def record(self) -> JsonObject:
        """Its store record (``qid`` is the answer's id; ``question_id`` the CV group)."""
        a = self.answer
        return {
            "qid": a.item_id,
            "question_id": a.qid,
            "relation": a.relation,
            "question": a.question,
            "response": a.response,
            "false": a.false,
            "kind": a.what,
            "n_tokens": len(self.ids),
            "positions": self.cols,
        }


def forced(lm: LoadedModel, answers: Sequence[GivenAnswer]) -> list[Forced]:
    """Tokenise each answer's response as ``halluscan score --answer`` does, and find its positions.

    Only the tokens up to the last position read are kept: a causal model's states there do not
    depend on what follows (the closing full stop), so feeding it would cost time and change
    nothing.
    """
    from halluscan.engine.decode import token_starts

    out = []
    for a in answers:
        ids = list(lm.tokenizer(a.response, add_special_tokens=False).input_ids)
        starts, text = token_starts(lm.tokenizer, ids)
        exact = token_span(Span(0, len(a.answer)), starts, len(text))
        cols = {p: resolve(p, 0, len(ids), exact) for p in GIVEN_POSITIONS}
        last = max((c for c in cols.values() if c is not None), default=len(ids) - 1)
        out.append(Forced(a, ids[: last + 1], cols))
    return out


@torch.inference_mode()
def fork_answers(
    lm: LoadedModel,
    feed: EagerFeed,
    batch: Sequence[Sequence[Forced]],
    dtype: torch.dtype,
    rows: list[int],
) -> tuple[torch.Tensor, np.ndarray, Any]:
    """Feed ``batch[i]``, the answers to row ``rows[i]`` of a prefilled ``feed``, off its KV cache.

    Answers of about one length go through together (little padding: most answers are 2-4
    tokens; see :func:`_groups`), each group off a fork of the cache that leaves the feed's own
    cache as it was. Returns
    ``[answer, layer, position, H]`` (being copied to the host), the validity mask
    ``[answer, position]`` and the copy's ready event, answers in order (row by row).
    """
    flat = [(r, f) for r, answers in zip(rows, batch, strict=True) for f in answers]
    valid = np.array([[f.cols[p] is not None for p in GIVEN_POSITIONS] for _, f in flat])
    out: torch.Tensor | None = None
    for group in _groups([len(f.ids) for _, f in flat]):
        acts = _feed_group(lm, feed, [flat[i] for i in group], dtype)
        if out is None:
            out = acts.new_zeros(len(flat), *acts.shape[1:])
        out[torch.tensor(group, device=acts.device)] = acts
    assert out is not None
    keep = torch.from_numpy(valid).to(out.device)[:, None, :, None]
    out = torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))
    host, ready = to_host_async(out.contiguous())
    return host, valid, ready


# one more forward pass costs about as much as this many padding tokens (CPU, small model)
PASS_COST_TOKENS = 32


def _groups(lengths: list[int]) -> list[list[int]]:
    """Indices grouped by length.

    A group takes in the next length while the padding costs less than a pass.
    """
    groups: list[list[int]] = []
    for width in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == width]
        if groups and sum(width - lengths[i] for i in groups[-1]) < PASS_COST_TOKENS:
            groups[-1] += rows
        else:
            groups.append(rows)
    return groups


def _feed_group(
    lm: LoadedModel, feed: EagerFeed, group: list[tuple[int, Forced]], dtype: torch.dtype
) -> torch.Tensor:
    """``[answer, layer, position, H]`` of answers (right-padded), each after its prompt."""
    model = lm.model
    dev = feed.ids.device
    sel = torch.tensor([r for r, _ in group], device=dev)
    width = max(len(f.ids) for _, f in group)
    ids = torch.full((len(group), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    # right padding: an answer's tokens never see the pads after them
    for i, (_, f) in enumerate(group):
        ids[i, : len(f.ids)], mask[i, : len(f.ids)] = torch.tensor(f.ids), 1
    ids, mask = ids.to(dev), mask.to(dev)
    cols = torch.tensor([[f.cols[p] or 0 for p in GIVEN_POSITIONS] for _, f in group])
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.cat([feed.mask[sel], mask], dim=1),
        "position_ids": feed.pos[sel, -1:] + 1 + torch.arange(ids.shape[1], device=dev),
    }
    layers = list(range(lm.n_layers + 1))
    with capture(model, {RESIDUAL: layers}, gatherer(cols), dtype=dtype, stop_early=True) as cap:
        try:
            model(**inputs, **cache_kwargs(model, fork_cache(feed.cache, sel)), use_cache=True)
        except StopForward:
            pass
        return cap.stacked(RESIDUAL, host=False)


def pairs_by_question(items: Sequence[Forced]) -> dict[str, list[Forced]]:
    """The forced answers of each question id, in order (gold first)."""
    out: dict[str, list[Forced]] = {}
    for f in items:
        out.setdefault(f.answer.qid, []).append(f)
    return out


def _store(
    writer: ChunkSink,
    lm: LoadedModel,
    feed: EagerFeed,
    batch: list[list[Forced]],
    dtype: torch.dtype,
    rows: list[int],
) -> None:
    """Feed ``batch`` (answers to prompt rows ``rows`` of ``feed``).

    Queue them as one store chunk.
    """
    acts, valid, ready = fork_answers(lm, feed, batch, dtype, rows)
    writer.put(NewChunk({RESIDUAL: acts}, valid, [f.record() for row in batch for f in row], ready))


@dataclass(frozen=True)
class GivenFeed:
    """Given answers to feed off each batch's prompt cache, and where their chunks go."""

    items: Sequence[Forced]
    sink: ChunkSink


@dataclass(frozen=True)
class GivenWork:
    """A study's given answers and the store that keeps their activations."""

    items: Sequence[Forced]
    store: ActivationStore

    def left(self) -> list[Forced]:
        """The given answers not stored yet."""
        return self.store.left_to_do(self.items, key=Forced.id)


def collect_during(
    lm: LoadedModel, items: Sequence[Forced], writer: ChunkSink, dtype: torch.dtype
) -> Callable[[list[str], EagerFeed], None]:
    """A callback for the generation pass.

    After a batch's prompts are prefilled, store their given answers.
    """
    by_q = pairs_by_question(items)

    def on_prefill(qids: list[str], feed: EagerFeed) -> None:
        # a question without a distractor has none
        keep = [i for i, q in enumerate(qids) if q in by_q]
        if not keep:
            return
        _store(writer, lm, feed, [by_q[qids[i]] for i in keep], dtype, keep)

    return on_prefill


def collect_given(
    lm: LoadedModel,
    items: Sequence[Forced],
    store: ActivationStore,
    opts: GenerateOptions,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store the given answers not yet in ``store`` (their prompts prefilled here).

    How many were stored.
    """
    left = {f.id() for f in store.left_to_do(items, key=Forced.id)}
    by_q = {
        q: [f for f in fs if f.id() in left]
        for q, fs in pairs_by_question(items).items()
        if any(f.id() in left for f in fs)
    }
    if not by_q:
        return 0
    prompts = {
        q: lm.prompt_ids(fs[0].answer.question, opts.system_prompt) for q, fs in by_q.items()
    }
    order = sorted(by_q, key=lambda q: (len(prompts[q]), q))
    dtype = getattr(torch, opts.capture_dtype)
    with ChunkWriter(store, progress) as writer, torch.inference_mode():
        for b in range(0, len(order), opts.batch_size):
            qids = order[b : b + opts.batch_size]
            feed = EagerFeed(lm, [prompts[q] for q in qids], opts)
            feed.prefill()
            _store(writer, lm, feed, [by_q[q] for q in qids], dtype, list(range(len(qids))))
    return sum(len(fs) for fs in by_q.values())
