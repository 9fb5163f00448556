"""Model inputs for a batch, shared by decoding and extraction.

Left padding, and one KV cache for the prefix that every row shares (a system prompt, the chat
template): it runs once and is copied to each row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from halluscan.models.sites import cache_kwargs


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Left-pad token id lists -> ids [B, T], attention mask [B, T], and each row's pad offset."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    offs = []
    for r, s in enumerate(seqs):
        off = width - len(s)
        ids[r, off:] = torch.tensor(list(s), dtype=torch.long)
        mask[r, off:] = 1
        offs.append(off)
    return ids, mask, offs


def shared_prefix_len(seqs: Sequence[Sequence[int]], limit: int) -> int:
    """Length of the prefix all ``seqs`` share, at most ``limit`` (0 under 2 tokens or one row)."""
    if len(seqs) < 2:
        return 0
    first = seqs[0]
    n = min(min(len(s) for s in seqs), limit)
    k = 0
    while k < n and all(s[k] == first[k] for s in seqs):
        k += 1
    return k if k >= 2 else 0


def prefill_prefix(model: Any, prefix: Sequence[int], batch: int) -> Any:
    """Run ``prefix`` once and return a KV cache holding it for each of ``batch`` rows."""
    from transformers import DynamicCache

    dev = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    # the base model only: the prefix needs its KV cache, not logits
    base = model.base_model
    base(
        input_ids=torch.tensor([list(prefix)], device=dev),
        **cache_kwargs(base, cache),
        use_cache=True,
    )
    cache.batch_repeat_interleave(batch)
    return cache


def fork_cache(cache: Any, rows: torch.Tensor) -> Any:
    """A KV cache holding ``rows`` of ``cache`` (repeats allowed), leaving ``cache`` as it was.

    A dynamic cache's layers replace their tensors when they grow (``torch.cat``) or select rows,
    never write into them, so a shallow copy of each layer followed by a row selection shares
    nothing that a later forward pass changes. Other caches are deep-copied.
    """
    import copy

    layers = getattr(cache, "layers", None)
    if layers is None or any(
        type(x).__name__ not in ("DynamicLayer", "DynamicSlidingWindowLayer") for x in layers
    ):
        fork = copy.deepcopy(cache)
    else:
        fork = copy.copy(cache)
        fork.layers = [copy.copy(x) for x in layers]
    fork.batch_select_indices(rows)
    return fork


def suffix_inputs(
    seqs: Sequence[Sequence[int]], n_pre: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Left-padded suffixes after a shared prefix of ``n_pre`` tokens.

    Returns ids [B, T], the attention mask over prefix + suffix [B, n_pre + T], position ids
    [B, T] that continue the prefix, and each row's pad offset. The padding sits between the
    prefix and the row's own tokens, masked out.
    """
    ids, mask, offs = left_pad([s[n_pre:] for s in seqs], pad_id)
    pos = n_pre + (mask.cumsum(-1) - 1).clamp(min=0)
    full = torch.cat([mask.new_ones(len(seqs), n_pre), mask], dim=1)
    return ids, full, pos, offs
