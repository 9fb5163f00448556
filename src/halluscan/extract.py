"""Teacher-forced extraction: residual activations at given token indices of given sequences.

Used for answers that already exist (no generation) and to check that activations captured
during generation equal those of a plain forward pass. Sequences are left-padded in batches
sorted by length; hooks gather only the requested indices, and the forward pass stops after
the last layer that is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from halluscan.models.hooks import StopForward, capture_residual
from halluscan.models.loading import LoadedModel


@torch.inference_mode()
def extract_positions(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    indices: Sequence[Sequence[int]],
    layers: list[int] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """``[example, layer, k, hidden]`` at ``indices[i]`` (k per example, equal) of each sequence."""
    model = lm.model
    dev = next(model.parameters()).device
    layers = list(range(lm.n_layers + 1)) if layers is None else sorted(layers)
    k = len(indices[0])
    if any(len(ix) != k for ix in indices):
        raise ValueError("every example needs the same number of indices")
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: list[torch.Tensor | None] = [None] * len(sequences)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        width = max(len(sequences[i]) for i in idx)
        ids = torch.full((len(idx), width), lm.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        gather = torch.zeros((len(idx), k), dtype=torch.long)
        for r, i in enumerate(idx):
            off = width - len(sequences[i])
            ids[r, off:] = torch.tensor(list(sequences[i]))
            mask[r, off:] = 1
            gather[r] = torch.tensor(list(indices[i])) + off
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with capture_residual(model, layers, _gatherer(gather.to(dev)), stop_early=True) as cap:
            try:
                model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=False)
            except StopForward:
                pass
            acts = cap.stacked()
        for r, i in enumerate(idx):
            out[i] = acts[r]
    return torch.stack([o for o in out if o is not None])


def _gatherer(gather: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A selector that keeps ``gather[b]`` positions of row ``b``: [B, T, H] -> [B, k, H]."""
    rows = torch.arange(gather.shape[0], device=gather.device)[:, None]
    return lambda h: h[rows, gather]
