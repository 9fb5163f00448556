"""Whole ``[layer, token, hidden]`` tensors per sequence, for detectors that read the full tensor.

Each item's residual stream over a span of its tokens (default: all) is stored either as is,
zero-padded to a fixed token grid, or average-pooled onto that grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from halluscan.engine.extract import Item
from halluscan.engine.inputs import left_pad
from halluscan.models.hooks import StopForward, capture
from halluscan.models.sites import RESIDUAL
from halluscan.store import ActivationStore
from halluscan.store.layout import Layout, SiteLayout


def pool_tokens(x: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Average-pool a ``[layer, token, hidden]`` tensor to ``[layer, n_tokens, hidden]`` bins."""
    return torch.nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), n_tokens).transpose(1, 2)


def full_layout(n_layers: int, hidden: int, n_tokens: int, dtype: str = "bfloat16") -> Layout:
    """Store layout for whole ``[layer, token, hidden]`` tensors on a fixed grid of ``n_tokens``."""
    return Layout(
        ("all",), dtype, {RESIDUAL: SiteLayout(tuple(range(n_layers + 1)), (n_tokens, hidden))}
    )


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
    """Store each item's whole residual tensor over ``spans[qid]`` (default: all tokens).

    With ``pool`` the span is average-pooled to the layout's token grid (for detectors that
    need a fixed ``layers x tokens`` input); without it the span is kept as is, zero-padded
    to the grid width (longer spans are an error). The span length goes in each record.
    """
    spec = store.layout.site(RESIDUAL)
    n_grid = spec.dims[0]
    todo = sorted(
        store.left_to_do(items, key=lambda it: it.qid), key=lambda it: (len(it.ids), it.qid)
    )
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        full, offs = _states(model, pad_id, batch, list(spec.layers))  # [B, layer, T, H]
        out = full.new_zeros(len(batch), full.shape[1], 1, n_grid, full.shape[-1])
        recs = []
        for r, it in enumerate(batch):
            a, e = (spans or {}).get(it.qid, (0, len(it.ids)))
            x = full[r, :, offs[r] + a : offs[r] + e]  # [layer, span, H]
            if pool:
                out[r, :, 0] = pool_tokens(x, n_grid)
            elif x.shape[1] > n_grid:
                raise ValueError(
                    f"{it.qid}: span of {x.shape[1]} tokens is wider than the grid ({n_grid}); "
                    "pool it"
                )
            else:
                out[r, :, 0, : x.shape[1]] = x
            recs.append(
                {
                    "qid": it.qid,
                    "n_tokens": len(it.ids),
                    "span": [a, e],
                    "pooled": pool,
                    **it.record,
                }
            )
        store.append({RESIDUAL: out}, np.ones((len(batch), 1), dtype=bool), recs)
        if progress is not None:
            progress(len(batch))
    return len(todo)


def _states(
    model: Any, pad_id: int, batch: list[Item], layers: list[int]
) -> tuple[torch.Tensor, list[int]]:
    """Every token's residual, left-padded, ``[B, layer, T, H]``, and each row's padding."""
    ids, mask, offs = left_pad([it.ids for it in batch], pad_id)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    dev = next(model.parameters()).device
    with capture(model, {RESIDUAL: layers}, stop_early=True) as cap:
        try:
            model(
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=pos.to(dev),
                use_cache=False,
            )
        except StopForward:
            pass
        return cap.stacked(RESIDUAL), offs
