"""How probes are cross-validated, and their default strength (no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_C = 0.05  # the probes' inverse L2 strength (sklearn's C), unless a study says otherwise


@dataclass(frozen=True)
class CV:
    """How probes are cross-validated.

    Folds (stratified, grouped by question), the split's seed, and C.
    """

    folds: int = 5
    seed: int = 0
    c: float = DEFAULT_C
