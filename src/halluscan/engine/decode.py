"""The one decode loop and its one stop rule, for batched generation and for streaming one answer.

:func:`decode` runs a batch of prompts token by token (greedy, or sampled with a seeded
generator) through a feed. The eager feed (CPU) runs the prompts' common prefix once, and
finished rows leave the batch and the KV cache at once, so a batch costs what its rows need; the
static feed (a batch on a GPU, :mod:`halluscan.engine.static`) keeps one shape for CUDA graphs.
With ``layers`` it captures the residual stream of every token it feeds, and yields after each
forward pass, so a caller can store the states (generation) or score them as they appear
(streaming).

The stop rule (:class:`StopRule`): a row ends at an eos token, at ``max_new_tokens``, or at the
end of its first sentence or line (:func:`find_stop`). The token that reveals the end (the
space after a full stop) is past the answer; it is fed only while other rows still decode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from halluscan.engine.inputs import prefill_prefix, shared_prefix_len, suffix_inputs
from halluscan.engine.static import StaticFeed, choose_decoder, compiled_step
from halluscan.models.hooks import capture
from halluscan.models.loading import LoadedModel
from halluscan.models.sites import RESIDUAL, cache_kwargs
from halluscan.records import GenerateOptions

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace, unless the
# word before the dot is an abbreviation or an initial ("St. Louis", "U.S. dollar").
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
_ABBREV = re.compile(r"(?:(?:^|[\s.(])[A-Za-z]|\b(?:St|Mt|Ft|Dr|Mr|Mrs|Ms|No|vs|etc))\.$")


def find_stop(text: str, mode: str) -> int | None:
    """Character offset where the answer ends in ``text`` (exclusive), or None if not yet."""
    if mode == "none":
        return None
    body = len(text) - len(text.lstrip())
    nl = text.find("\n", body)
    cut = nl if nl >= 0 else None
    if mode == "sentence":
        for m in _SENTENCE_END.finditer(text, body):
            if _ABBREV.search(text[: m.start() + 1]):
                continue
            cut = m.end() if cut is None else min(cut, m.end())
            break
    return cut


def token_start(prev: str, cur: str) -> int:
    """Where the token that turned decoded text ``prev`` into ``cur`` starts in ``cur``."""
    return min(len(prev), len(cur)) if cur.startswith(prev) else len(prev)


def token_starts(tokenizer: object, ids: Sequence[int]) -> tuple[list[int], str]:
    """Start offset of each token in the decoded text (by decoding prefixes), and the text."""
    starts, prev = [], ""
    for i in range(len(ids)):
        decode = tokenizer.decode  # type: ignore[attr-defined]
        cur = decode(ids[: i + 1], clean_up_tokenization_spaces=False)
        starts.append(token_start(prev, cur))
        prev = cur
    return starts, prev


@dataclass
class Row:
    """One sequence being decoded: its response tokens so far and whether (and why) it ended."""

    ids: list[int] = field(default_factory=list)
    # log p of each token in ``ids`` (the model's softmax)
    logprobs: list[float] = field(default_factory=list)
    # entropy of the distribution each was drawn from
    entropies: list[float] = field(default_factory=list)
    text: str = ""  # the decoded response so far
    # where each token starts in ``text`` (as token_starts)
    starts: list[int] = field(default_factory=list)
    done: bool = False
    stopped_by: str = "length"  # "sentence", "line", "eos" or "length"
    cut: int | None = None  # char offset where the answer ends

    @property
    def in_answer(self) -> bool:
        """Whether the latest token starts before the answer's end (else it is cut off)."""
        return self.cut is None or self.starts[-1] < self.cut


class StopRule:
    """When a row ends.

    Eos, or the end of its first sentence / line (``mode``: sentence, line, none).
    """

    def __init__(self, lm: LoadedModel, mode: str):
        self.tokenizer, self.mode = lm.tokenizer, mode
        self.eos = set(lm.eos_ids())

    def advance(
        self,
        rows: Sequence[Row],
        tokens: Sequence[int],
        stats: Sequence[tuple[float, float]] | None = None,
    ) -> bool:
        """Append this step's tokens (and their ``(logprob, entropy)``) to unfinished rows.

        True if any took one.
        """
        took = False
        for i, (r, t) in enumerate(zip(rows, tokens, strict=True)):
            if r.done:
                continue
            if t in self.eos:
                r.done, r.stopped_by = True, "eos"
                continue
            r.ids.append(t)
            if stats is not None:
                r.logprobs.append(stats[i][0])
                r.entropies.append(stats[i][1])
            took = True
            text = self.tokenizer.decode(r.ids, clean_up_tokenization_spaces=False)
            r.starts.append(token_start(r.text, text))
            r.text = text
            cut = find_stop(text, self.mode)
            if cut is not None:
                r.done, r.cut = True, cut
                # find_stop cuts before "\n"
                r.stopped_by = "line" if text[cut : cut + 1] == "\n" else self.mode
        return took


def token_stats(
    logits: torch.Tensor, tokens: torch.Tensor
) -> tuple[list[int], list[tuple[float, float]]]:
    """The tokens, each one's log-probability and its distribution's entropy (one transfer)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(1, tokens[:, None])[:, 0]
    ent = -(logp.exp() * logp).sum(-1)
    rows = torch.stack([tokens.double(), lp.double(), ent.double()], dim=1).tolist()
    return [int(t) for t, _, _ in rows], [(a, b) for _, a, b in rows]


def pick(logits: torch.Tensor, temperature: float, rng: torch.Generator | None) -> torch.Tensor:
    """Greedy (temperature 0) or sampled next tokens for a batch of logits [B, V]."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=rng).squeeze(1).to(logits.device)


@dataclass
class Step:
    """What one forward pass of :func:`decode` fed.

    ``index`` -1 is the prompt, else a response token.
    """

    index: int
    active: torch.Tensor  # the batch rows fed (the order of ``states``)
    # [row, layer, k, H]: the last ``tail`` prompt tokens, or k = 1 token
    states: torch.Tensor | None


class EagerFeed:
    """Feeds a batch through a dynamic KV cache.

    The shared prefix runs once, finished rows leave.
    """

    shrinks = True

    def __init__(self, lm: LoadedModel, prompts: Sequence[Sequence[int]], opts: GenerateOptions):
        from transformers import DynamicCache

        model = self.model = lm.model
        dev = next(model.parameters()).device
        n_pre = (
            shared_prefix_len(prompts, min(len(p) for p in prompts) - opts.tail)
            if opts.share_prefix
            else 0
        )
        empty = DynamicCache(config=model.config)
        self.cache = prefill_prefix(model, prompts[0][:n_pre], len(prompts)) if n_pre else empty
        ids, mask, pos, _ = suffix_inputs(prompts, n_pre, lm.tokenizer.pad_token_id)
        self.ids, self.mask, self.pos = ids.to(dev), mask.to(dev), pos.to(dev)

    def prefill(self) -> torch.Tensor:
        """Run the prompts (after the shared prefix); the logits of their last tokens ``[B, V]``."""
        inputs = {"input_ids": self.ids, "attention_mask": self.mask, "position_ids": self.pos}
        out = self.model(
            **inputs, **cache_kwargs(self.model, self.cache), use_cache=True, logits_to_keep=1
        )
        return out.logits[:, -1]

    def drop(self, sel: torch.Tensor) -> None:
        """Keep only the rows ``sel`` (in the cache too)."""
        self.cache.batch_select_indices(sel)
        self.mask, self.pos = self.mask[sel], self.pos[sel]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; the next logits ``[B, V]``."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        self.pos = self.pos[:, -1:] + 1
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.pos,
            **cache_kwargs(self.model, self.cache),
            use_cache=True,
        )
        return out.logits[:, -1]


def make_feed(
    lm: LoadedModel, prompts: Sequence[Sequence[int]], opts: GenerateOptions
) -> EagerFeed | StaticFeed:
    """The feed of ``opts.decoder``.

    ``auto``: compiled static decoding for a batch on one GPU, else eager.

    """
    kind = choose_decoder(opts, lm, len(prompts))
    if kind == "eager":
        return EagerFeed(lm, prompts, opts)
    return StaticFeed(lm, prompts, opts, compiled_step(lm.model) if kind == "compiled" else None)


@torch.inference_mode()
def decode(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    opts: GenerateOptions,
    rows: Sequence[Row],
    layers: list[int] | None = None,
    rng: torch.Generator | None = None,
    feed: EagerFeed | StaticFeed | None = None,
    on_prefill: Callable[[EagerFeed], None] | None = None,
    site: str = RESIDUAL,
) -> Iterator[Step]:
    """Decode ``prompts`` into ``rows`` (one each), yielding after the prompt and each fed token.

    ``on_prefill(feed)`` runs once the prompts are in an eager feed's KV cache, before the first
    token is decoded (the given answers fork from it there); this decode's capture is paused
    meanwhile.
    With ``layers``, the states of ``site`` at those layers are captured.
    """
    feed = feed or make_feed(lm, prompts, opts)
    dev = next(lm.model.parameters()).device
    rule = StopRule(lm, opts.stop)
    tail = min(opts.tail, feed.ids.shape[1])
    active = torch.arange(len(rows))
    keep_tail = lambda h: h[:, h.shape[1] - tail :]  # noqa: E731 (tail 0 keeps nothing)
    dtype = getattr(torch, opts.capture_dtype)
    grab = (
        capture(lm.model, {site: layers}, keep_tail, dtype=dtype)
        if layers is not None
        else nullcontext()
    )
    with grab as cap:
        logits = feed.prefill()
        states = cap.stacked(site, host=False) if cap is not None else None
        if on_prefill is not None and isinstance(feed, EagerFeed):
            _paused(cap, lambda: on_prefill(feed))
        yield Step(-1, active, states)
        if cap is not None:
            cap.select = lambda h: h[:, -1:]
        for step in range(opts.max_new_tokens):
            cand = pick(logits, opts.temperature, rng)
            took = _take(rows, active, rule, logits, cand, opts.token_stats)
            if took is None:
                break
            # Rows that just took a token are fed once more so that its activations exist; the
            # others have finished and leave the batch (a static batch feeds them too, unread).
            keep = torch.tensor(took)
            if feed.shrinks and not bool(keep.all()):
                sel = keep.nonzero().squeeze(1).to(dev)
                feed.drop(sel)
                active, cand = active[keep], cand[sel]
            logits = feed.step(cand)
            yield Step(step, active, cap.stacked(site, host=False) if cap is not None else None)
            if all(r.done for r in rows):
                break


def _paused(cap: Any, work: Callable[[], None]) -> None:
    """Run ``work`` with the capture ``cap`` (if any) paused: its forward passes go unrecorded."""
    if cap is not None:
        cap.paused = True
    try:
        work()
    finally:
        if cap is not None:
            cap.paused = False


def _take(
    rows: Sequence[Row],
    active: torch.Tensor,
    rule: StopRule,
    logits: torch.Tensor,
    cand: torch.Tensor,
    stats_on: bool,
) -> list[bool] | None:
    """Let the stop rule give each live row its candidate; which rows took one (None: stop)."""
    live = [rows[i] for i in active.tolist()]
    before = [len(r.ids) for r in live]
    tokens, stats = token_stats(logits, cand) if stats_on else (cand.tolist(), None)
    if not rule.advance(live, tokens, stats):
        return None
    took = [len(r.ids) > n for r, n in zip(live, before, strict=True)]
    answering = any(r.in_answer for r, t in zip(live, took, strict=True) if t)
    if all(r.done for r in rows) and not answering:
        return None  # every row has ended and no new token is part of an answer: nothing to feed
    return took
