"""What a probe reads: one site's activations per (layer, position), from any source.

A sweep, a transfer test or a bank takes :class:`Features`; it never opens a store. Users with
their own arrays build one with :meth:`Features.from_array`; a study builds one from its store
(one position read from disk at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from halluscan.errors import HalluscanError


@dataclass(frozen=True)
class Features:
    """Activations ``[example, layer, d]`` per named position, and which examples have each.

    ``read(position)`` returns the float32 activations of every example at that position (rows
    whose position is absent hold zeros and are ``False`` in ``valid``, ``[example, position]``).
    """

    layers: tuple[int, ...]
    positions: tuple[str, ...]
    valid: np.ndarray
    read: Callable[[str], torch.Tensor]

    def __post_init__(self) -> None:
        if self.valid.shape[1:] != (len(self.positions),):
            raise HalluscanError(
                f"features: valid has shape {self.valid.shape}, not [example, "
                f"{len(self.positions)} positions]"
            )

    @classmethod
    def from_array(
        cls,
        x: np.ndarray | torch.Tensor,
        valid: np.ndarray | None = None,
        layers: Sequence[int] | None = None,
        positions: Sequence[str] | None = None,
    ) -> Features:
        """Features of an array ``x`` [example, layer, position, d] (all valid unless ``valid``)."""
        t = torch.as_tensor(x, dtype=torch.float32)
        if t.dim() != 4:
            raise HalluscanError(
                f"features: x has shape {tuple(t.shape)}; give [example, layer, position, d]"
            )
        n, n_layers, n_pos, _ = t.shape
        pos = tuple(positions) if positions is not None else tuple(str(j) for j in range(n_pos))
        lay = tuple(layers) if layers is not None else tuple(range(n_layers))
        if len(pos) != n_pos or len(lay) != n_layers:
            raise HalluscanError(
                f"features: {len(lay)} layers and {len(pos)} positions for x of shape "
                f"{tuple(t.shape)}"
            )
        ok = np.ones((n, n_pos), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        return cls(lay, pos, ok, lambda p: t[:, :, pos.index(p)])

    def at(self, position: str) -> torch.Tensor:
        """``[example, layer, d]`` at ``position``; a one-line error for a position not held."""
        if position not in self.positions:
            raise HalluscanError(
                f"position {position!r} is not held (held: {', '.join(self.positions)})"
            )
        return self.read(position)

    def has(self, position: str) -> np.ndarray:
        """``[example]`` bool: which examples have ``position``."""
        return np.asarray(self.valid[:, self.positions.index(position)], dtype=bool)

    def cell(self, position: str, layer: int, keep: np.ndarray | None = None) -> torch.Tensor:
        """``[n, d]`` at one (position, layer), for the examples ``keep`` selects.

        By default, the examples that have the position.

        """
        rows = self.has(position) if keep is None else keep
        return self.at(position)[torch.from_numpy(rows), self.layers.index(layer)]

    def restrict(self, keep: np.ndarray, positions: Sequence[str] | None = None) -> Features:
        """The same features with only the examples ``keep`` selects valid (and ``positions``)."""
        pos = tuple(positions) if positions is not None else self.positions
        cols = [self.positions.index(p) for p in pos]
        valid = self.valid[:, cols] & np.asarray(keep, dtype=bool)[:, None]
        return Features(self.layers, pos, valid, self.read)
