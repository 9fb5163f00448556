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

from halluscan.engine.inputs import prefill_prefix, shared_prefix_len, suffix_inputs
from halluscan.errors import HalluscanError
from halluscan.models.hooks import Reducer, StopForward, capture, to_host, to_host_async
from halluscan.models.sites import ATTN_SITES, ATTN_WEIGHTS, RESIDUAL, cache_kwargs
from halluscan.records import JsonObject
from halluscan.store import ActivationStore, ChunkWriter, NewChunk
from halluscan.store.layout import Layout


@dataclass(frozen=True)
class Item:
    """One sequence to extract: its id, token ids, and index per named position (None = absent)."""

    qid: str
    ids: tuple[int, ...]
    positions: dict[str, int | None]
    record: JsonObject = field(default_factory=dict)


def gatherer(gather: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A selector that keeps ``gather[b]`` positions of row ``b``: [B, T, ...] -> [B, k, ...].

    The indices follow each layer to its device (a model spread over GPUs), copied once per device.
    """
    on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def select(h: torch.Tensor) -> torch.Tensor:
        if h.device not in on:
            g = gather.to(h.device)
            on[h.device] = (torch.arange(g.shape[0], device=h.device)[:, None], g)
        rows, g = on[h.device]
        return h[rows, g]

    return select


@torch.inference_mode()
def forward_capture(
    model: Any,
    seqs: list[Sequence[int]],
    gather: torch.Tensor,
    sites: dict[str, list[int]],
    pad_id: int,
    share_prefix: bool = True,
    reduce: dict[str, Reducer] | None = None,
    dtype: torch.dtype = torch.float32,
    host: bool = True,
) -> dict[str, torch.Tensor]:
    """One batch -> {site: [B, layer, k, *dims]} at ``gather`` [B, k] (sequence coordinates).

    With ``share_prefix`` the tokens that every sequence starts with (a system prompt, the
    chat template) run once and are reused from the KV cache, as long as no gathered position
    falls inside them. Attention weights come back as [B, layer, k, head, S] with keys in
    sequence coordinates (padding removed, shorter rows zero-filled at the end), and
    ``attn_received`` as [B, layer, S] in the same key coordinates. ``reduce`` is passed to
    :func:`~halluscan.models.hooks.capture`. ``host=False`` leaves the results on the model's
    device (the caller copies them once, e.g. with :func:`~halluscan.models.hooks.to_host_async`).
    """
    dev = next(model.parameters()).device
    n_pre = (
        shared_prefix_len(seqs, min(int(gather.min()), min(len(s) for s in seqs) - 1))
        if share_prefix
        else 0
    )
    cache = prefill_prefix(model, seqs[0][:n_pre], len(seqs)) if n_pre else None
    ids, mask, pos, offs = suffix_inputs(seqs, n_pre, pad_id)
    cols = gather - n_pre + torch.tensor(offs)[:, None]
    with capture(model, sites, gatherer(cols), dtype=dtype, stop_early=True, reduce=reduce) as cap:
        inputs = {
            "input_ids": ids.to(dev),
            "attention_mask": mask.to(dev),
            "position_ids": pos.to(dev),
        }
        try:
            model(
                **inputs,
                **cache_kwargs(model, cache),
                use_cache=cache is not None,
                logits_to_keep=1,
            )
        except StopForward:
            pass
        out = {s: cap.stacked(s, host=False) for s in sites}
    # keys: [prefix | pad | own tokens] -> [prefix | own tokens | zeros]
    for site in ATTN_SITES & out.keys():
        w = out[site]
        keys = torch.zeros_like(w)
        keys[..., :n_pre] = w[..., :n_pre]
        for r, o in enumerate(offs):
            keys[r, ..., n_pre : w.shape[-1] - o] = w[r, ..., n_pre + o :]
        out[site] = keys
    return out if not host else {s: to_host(t) for s, t in out.items()}


def check_items(items: Sequence[Item], names: Sequence[str]) -> None:
    """Refuse an item with a position the store lacks, or an index outside its tokens.

    Torch would wrap a negative index silently (and fail deep inside the model for one past the
    end).
    """
    for it in items:
        if not it.ids:
            raise HalluscanError(f"item {it.qid!r} has no tokens; give at least one token id")
        for name, index in it.positions.items():
            if name not in names:
                raise HalluscanError(
                    f"item {it.qid!r}: unknown position {name!r}; the store's positions are: "
                    f"{', '.join(names)}"
                )
            if index is None:
                continue
            if (
                isinstance(index, bool)
                or not isinstance(index, int | np.integer)
                or not 0 <= index < len(it.ids)
            ):
                raise HalluscanError(
                    f"item {it.qid!r}: position {name!r} is {index!r}, not an index into its "
                    f"{len(it.ids)} tokens (0..{len(it.ids) - 1}); give an int index into its ids, "
                    "or None when it is absent"
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
    todo = sorted(
        store.left_to_do(items, key=lambda it: it.qid), key=lambda it: (len(it.ids), it.qid)
    )
    # before the first chunk: a bad item stops the run with nothing written
    check_items(todo, lay.positions)
    with ChunkWriter(store, progress) as writer:
        for b in range(0, len(todo), batch_size):
            arrays, valid, recs, ready = _extract_batch(
                model, pad_id, todo[b : b + batch_size], lay
            )
            # the writer waits for the copy; the device goes on
            writer.put(NewChunk(arrays, valid, recs, ready))
    return len(todo)


def _extract_batch(
    model: Any, pad_id: int, batch: list[Item], lay: Layout
) -> tuple[dict[str, torch.Tensor], np.ndarray, list[JsonObject], Any]:
    """One batch: arrays (being copied to the host), mask, records, and the copy's ready event."""
    names = lay.positions
    check_items(batch, names)
    sites = {s: list(spec.layers) for s, spec in lay.sites.items()}
    valid = np.array([[it.positions.get(n) is not None for n in names] for it in batch])
    # an absent position reads the last token (zeroed below), so it cannot block prefix sharing
    gather = torch.tensor(
        [[_or_last(it.positions.get(n), it) for n in names] for it in batch], dtype=torch.long
    )
    dtype = getattr(torch, lay.dtype)  # captured as the store keeps it
    got = forward_capture(
        model, [it.ids for it in batch], gather, sites, pad_id, dtype=dtype, host=False
    )
    for site, spec in lay.sites.items():
        if site == ATTN_WEIGHTS:  # pad keys to the store's fixed width
            w = got[site]
            fixed = w.new_zeros(*w.shape[:-1], spec.dims[-1])
            fixed[..., : min(w.shape[-1], fixed.shape[-1])] = w[..., : fixed.shape[-1]]
            got[site] = fixed
        keep = torch.from_numpy(valid).view(len(batch), 1, len(names), *[1] * (got[site].dim() - 3))
        keep = keep.to(got[site].device)
        got[site] = torch.where(
            keep, got[site], torch.zeros((), dtype=got[site].dtype, device=keep.device)
        )
    recs = [
        {"qid": it.qid, "n_tokens": len(it.ids), "positions": it.positions, **it.record}
        for it in batch
    ]
    copies = {site: to_host_async(t) for site, t in got.items()}
    events = [e for _, e in copies.values() if e is not None]
    return {site: h for site, (h, _) in copies.items()}, valid, recs, events[-1] if events else None


@torch.inference_mode()
def extract_positions(
    lm: Any,
    sequences: Sequence[Sequence[int]],
    indices: Sequence[Sequence[int]],
    layers: list[int] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """``[example, layer, k, hidden]``: the residual at ``indices[i]`` (k each) of each sequence."""
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
            lm.model,
            [sequences[i] for i in idx],
            gather,
            {RESIDUAL: layers},
            lm.tokenizer.pad_token_id,
        )
        for r, i in enumerate(idx):
            out[i] = got[RESIDUAL][r]
    return torch.stack([out[i] for i in range(len(sequences))])
