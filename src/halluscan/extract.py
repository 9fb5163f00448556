"""Teacher-forced extraction: activations at named positions of given token sequences.

Used for answers that already exist (no generation), for the extraction benchmark, and to
check that activations captured during generation equal those of a plain forward pass.
Sequences are sorted by length to cut padding and left-padded in batches; hooks gather only
the requested positions on the model's device; the forward pass stops after the last layer
that is needed (the final norm and the LM head never run). Each batch is one store chunk,
so a killed run resumes at the first batch that was not committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from halluscan.batching import left_pad, prefill_prefix, shared_prefix_len, suffix_inputs
from halluscan.errors import HalluscanError
from halluscan.models.hooks import StopForward, capture
from halluscan.store import ActivationStore, ChunkWriter


@dataclass(frozen=True)
class Item:
    """One sequence to extract: its id, token ids, and index per named position (None = absent)."""

    id: str
    ids: tuple[int, ...]
    positions: dict[str, int | None]
    record: dict[str, Any] = field(default_factory=dict)


def _gatherer(gather: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A selector that keeps ``gather[b]`` positions of row ``b``: [B, T, ...] -> [B, k, ...]."""
    rows = torch.arange(gather.shape[0], device=gather.device)[:, None]
    return lambda h: h[rows, gather]


@torch.inference_mode()
def forward_capture(
    model: Any,
    seqs: list[Sequence[int]],
    gather: torch.Tensor,
    sites: dict[str, list[int]],
    pad_id: int,
    share_prefix: bool = True,
) -> dict[str, torch.Tensor]:
    """One batch -> {site: [B, layer, k, *dims]} at ``gather`` [B, k] (sequence coordinates).

    With ``share_prefix`` the tokens that every sequence starts with (a system prompt, the
    chat template) run once and are reused from the KV cache, as long as no gathered position
    falls inside them. Attention weights come back as [B, layer, k, head, S] with keys in
    sequence coordinates (padding removed, shorter rows zero-filled at the end).
    """
    dev = next(model.parameters()).device
    n_pre = shared_prefix_len(seqs, min(int(gather.min()), min(len(s) for s in seqs) - 1)) if share_prefix else 0
    cache = prefill_prefix(model, seqs[0][:n_pre], len(seqs)) if n_pre else None
    ids, mask, pos, offs = suffix_inputs(seqs, n_pre, pad_id)
    cols = gather - n_pre + torch.tensor(offs)[:, None]
    with capture(model, sites, _gatherer(cols.to(dev)), stop_early=True) as cap:
        try:
            model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                  past_key_values=cache, use_cache=cache is not None, logits_to_keep=1)  # fmt: skip
        except StopForward:
            pass
        out = {s: cap.stacked(s) for s in sites}
    if "attn_weights" in out:  # keys: [prefix | pad | own tokens] -> [prefix | own tokens | zeros]
        w = out["attn_weights"]
        keys = torch.zeros_like(w)
        keys[..., :n_pre] = w[..., :n_pre]
        for r, o in enumerate(offs):
            keys[r, ..., n_pre : w.shape[-1] - o] = w[r, ..., n_pre + o :]
        out["attn_weights"] = keys
    return out


def check_items(items: Sequence[Item], names: Sequence[str]) -> None:
    """Raise a clear error for an item with a position the store does not have, or an index outside its tokens.

    Torch would wrap a negative index silently (and fail deep inside the model for one past the end).
    """
    for it in items:
        if not it.ids:
            raise HalluscanError(f"item {it.id!r} has no tokens; give at least one token id")
        for name, index in it.positions.items():
            if name not in names:
                raise HalluscanError(
                    f"item {it.id!r}: unknown position {name!r}; the store's positions are: {', '.join(names)}"
                )
            if index is None:
                continue
            if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < len(it.ids):
                raise HalluscanError(
                    f"item {it.id!r}: position {name!r} is {index!r}, not an index into its {len(it.ids)} tokens "
                    f"(0..{len(it.ids) - 1}); give an int index into its ids, or None when it is absent"
                )


def _or_last(index: int | None, item: Item) -> int:
    return len(item.ids) - 1 if index is None else index


def extract_to_store(
    model: Any,
    pad_id: int,
    items: Sequence[Item],
    store: ActivationStore,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Extract every item not yet in ``store``; returns how many were extracted now."""
    lay = store.layout
    done = store.stored_ids()
    todo = sorted((it for it in items if it.id not in done), key=lambda it: (len(it.ids), it.id))
    check_items(todo, lay["positions"])  # before the first chunk: a bad item stops the run with nothing written
    with ChunkWriter(store, progress) as writer:
        for b in range(0, len(todo), batch_size):
            writer.put(*_extract_batch(model, pad_id, todo[b : b + batch_size], lay))
    return len(todo)


def _extract_batch(
    model: Any, pad_id: int, batch: list[Item], lay: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], np.ndarray, list[dict[str, Any]]]:
    """Arrays, validity mask and records of one batch, laid out for the store."""
    names = lay["positions"]
    check_items(batch, names)
    sites = {s: spec["layers"] for s, spec in lay["sites"].items()}
    valid = np.array([[it.positions.get(n) is not None for n in names] for it in batch])
    # an absent position reads the last token (zeroed below), so it cannot block prefix sharing
    gather = torch.tensor([[_or_last(it.positions.get(n), it) for n in names] for it in batch], dtype=torch.long)
    got = forward_capture(model, [it.ids for it in batch], gather, sites, pad_id)
    for site, spec in lay["sites"].items():
        if site == "attn_weights":  # pad keys to the store's fixed width
            w = got[site]
            fixed = w.new_zeros(*w.shape[:-1], spec["dims"][-1])
            fixed[..., : min(w.shape[-1], fixed.shape[-1])] = w[..., : fixed.shape[-1]]
            got[site] = fixed
        keep = torch.from_numpy(valid).view(len(batch), 1, len(names), *[1] * (got[site].dim() - 3))
        got[site] = torch.where(keep, got[site], torch.zeros((), dtype=got[site].dtype))
    recs = [{"qid": it.id, "n_tokens": len(it.ids), "positions": it.positions, **it.record} for it in batch]
    return got, valid, recs


@torch.inference_mode()
def extract_positions(
    lm: Any,
    sequences: Sequence[Sequence[int]],
    indices: Sequence[Sequence[int]],
    layers: list[int] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """``[example, layer, k, hidden]`` residual at ``indices[i]`` (k per example, equal) of each sequence."""
    layers = list(range(lm.n_layers + 1)) if layers is None else sorted(layers)
    k = len(indices[0])
    if any(len(ix) != k for ix in indices):
        raise ValueError("every example needs the same number of indices")
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: dict[int, torch.Tensor] = {}
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        gather = torch.tensor([list(indices[i]) for i in idx], dtype=torch.long)
        got = forward_capture(
            lm.model, [sequences[i] for i in idx], gather, {"residual": layers}, lm.tokenizer.pad_token_id
        )
        for r, i in enumerate(idx):
            out[i] = got["residual"][r]
    return torch.stack([out[i] for i in range(len(sequences))])


def pool_tokens(x: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Average-pool a full ``[layer, token, hidden]`` tensor to ``[layer, n_tokens, hidden]`` bins."""
    return torch.nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), n_tokens).transpose(1, 2)


def full_layout(n_layers: int, hidden: int, n_tokens: int, dtype: str = "bfloat16") -> dict[str, Any]:
    """Store layout for whole ``[layer, token, hidden]`` tensors on a fixed grid of ``n_tokens``."""
    return {"positions": ["all"], "dtype": dtype,
            "sites": {"residual": {"layers": list(range(n_layers + 1)), "dims": [n_tokens, hidden]}}}  # fmt: skip


@torch.inference_mode()
def extract_full_to_store(
    model: Any,
    pad_id: int,
    items: Sequence[Item],
    store: ActivationStore,
    spans: dict[str, tuple[int, int]] | None = None,
    *,
    pool: bool = True,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store each item's whole residual tensor over ``spans[id]`` (default: all tokens).

    With ``pool`` the span is average-pooled to the layout's token grid (for detectors that
    need a fixed ``layers x tokens`` input); without it the span is kept as is, zero-padded
    to the grid width (longer spans are an error). The span length goes in each record.
    """
    spec = store.layout["sites"]["residual"]
    n_grid = spec["dims"][0]
    done = store.stored_ids()
    todo = sorted((it for it in items if it.id not in done), key=lambda it: (len(it.ids), it.id))
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        ids, mask, offs = left_pad([it.ids for it in batch], pad_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        dev = next(model.parameters()).device
        with capture(model, {"residual": spec["layers"]}, stop_early=True) as cap:
            try:
                model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=False)
            except StopForward:
                pass
            full = cap.stacked("residual")  # [B, layer, T, H]
        out = full.new_zeros(len(batch), full.shape[1], 1, n_grid, full.shape[-1])
        recs = []
        for r, it in enumerate(batch):
            a, e = (spans or {}).get(it.id, (0, len(it.ids)))
            x = full[r, :, offs[r] + a : offs[r] + e]  # [layer, span, H]
            if pool:
                out[r, :, 0] = pool_tokens(x, n_grid)
            elif x.shape[1] > n_grid:
                raise ValueError(f"{it.id}: span of {x.shape[1]} tokens is wider than the grid ({n_grid}); pool it")
            else:
                out[r, :, 0, : x.shape[1]] = x
            recs.append({"qid": it.id, "n_tokens": len(it.ids), "span": [a, e], "pooled": pool, **it.record})
        store.append({"residual": out}, np.ones((len(batch), 1), dtype=bool), recs)
        if progress is not None:
            progress(len(batch))
    return len(todo)


@torch.inference_mode()
def attention_received(
    model: Any, seqs: list[Sequence[int]], pad_id: int, layers: list[int] | None = None, query: int | None = None
) -> list[torch.Tensor]:
    """Per sequence, ``[layer, token]``: the attention each token receives, averaged over heads.

    By default a token's score is the mean over the *later* query positions of the weight they
    give it (the last token, with no later query, gets NaN); with ``query`` (e.g. -1) it is the
    weight from that one query position. Layers default to 1..L (block l's attention).
    """
    from halluscan.models.sites import blocks

    layers = list(range(1, len(blocks(model)) + 1)) if layers is None else layers
    out: list[torch.Tensor] = []
    for s in seqs:  # one at a time: full attention matrices, no padding to undo
        n = len(s)
        q = torch.arange(n)[None] if query is None else torch.tensor([[query % n]])
        w = forward_capture(model, [s], q, {"attn_weights": layers}, pad_id, share_prefix=False)["attn_weights"]
        a = w[0].mean(dim=2)[..., :n]  # [layer, queries, keys]
        out.append(received(a) if query is None else a[:, 0])
    return out


def received(weights: torch.Tensor, query: int | None = None) -> torch.Tensor:
    """Attention each token receives: ``weights`` [layer, query, key] over the same k tokens -> [layer, k].

    With ``query=None`` the mean over the *later* query tokens (the last token has none: NaN);
    with an index (e.g. -1), the weight that one query token gives each token (tokens after
    that query cannot receive any: NaN).
    """
    k = weights.shape[-1]
    if query is not None:
        if not -k <= query < k:
            raise HalluscanError(
                f"attention query token {query} is outside the response's {k} tokens (use -{k}..{k - 1})"
            )
        q = query % k
        out = weights[:, q].clone()
        out[:, q + 1 :] = float("nan")
        return out
    later = torch.ones(k, k, dtype=weights.dtype).tril(-1)  # query i > key j
    out = (weights * later).sum(1) / later.sum(0).clamp(min=1)
    out[:, -1] = float("nan")
    return out


def normalise_layers(x: torch.Tensor) -> torch.Tensor:
    """Min-max scale each layer (row) of ``[layer, token]`` to 0-1, ignoring NaN (kept as NaN).

    A constant row becomes 0.
    """
    finite = ~torch.isnan(x)
    lo = torch.where(finite, x, torch.full_like(x, float("inf"))).min(dim=-1, keepdim=True).values
    hi = torch.where(finite, x, torch.full_like(x, float("-inf"))).max(dim=-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (x - lo) / span.clamp(min=1e-12), torch.zeros_like(x))
    return torch.where(finite, out, x)
