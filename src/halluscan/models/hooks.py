"""Forward hooks that capture residual-stream activations at selected positions.

Inside a hook we detach, gather only the selected positions, cast and copy to CPU;
no reference to a model tensor is kept. Hooks are always removed on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from halluscan.models.sites import blocks

# select(hidden [B, T, H]) -> [B, K, H]: which positions to keep from one forward call.
Selector = Callable[[torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Raised inside the last needed hook to skip the remaining layers."""


class ResidualCapture:
    """Holds the captured ``[B, layer, K, H]`` tensors of the latest forward call."""

    def __init__(self, layers: list[int], select: Selector, dtype: torch.dtype, stop_early: bool):
        self.layers = sorted(layers)
        self.select = select
        self.dtype = dtype
        self.stop_early = stop_early
        self.out: dict[int, torch.Tensor] = {}

    def keep(self, layer: int, hidden: torch.Tensor) -> None:
        """Gather the selected positions of ``hidden`` [B, T, H] and keep a CPU copy."""
        if layer in self.layers:
            self.out[layer] = self.select(hidden.detach()).to(device="cpu", dtype=self.dtype)
            if self.stop_early and layer == self.layers[-1]:
                raise StopForward

    def stacked(self) -> torch.Tensor:
        """``[B, layer, K, H]`` over the captured layers, in order; clears the buffer."""
        out = torch.stack([self.out[layer] for layer in self.layers], dim=1)
        self.out = {}
        return out


@contextmanager
def capture_residual(
    model: Any,
    layers: list[int] | None = None,
    select: Selector | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    stop_early: bool = False,
) -> Iterator[ResidualCapture]:
    """Capture the residual stream at ``layers`` (0 = embedding output, l = block l's output)."""
    mods = blocks(model)
    n = len(mods)
    layers = list(range(n + 1)) if layers is None else layers
    cap = ResidualCapture(layers, select or (lambda h: h), dtype, stop_early)
    handles = []

    def pre_hook(_mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cap.keep(0, args[0] if args else kwargs["hidden_states"])

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(_mod: Any, _args: Any, output: Any) -> None:
            cap.keep(layer, output[0] if isinstance(output, tuple) else output)

        return hook

    try:
        if 0 in layers:
            handles.append(mods[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        for layer in layers:
            if layer > 0:
                handles.append(mods[layer - 1].register_forward_hook(make_hook(layer)))
        yield cap
    finally:
        for h in handles:
            h.remove()
