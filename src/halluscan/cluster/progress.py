"""Progress of a study on Ray: questions done, the overall ETA, and each worker's throughput."""

from __future__ import annotations

from typing import Any


class Progress:
    """A tqdm bar over questions whose postfix shows questions per second per worker (``host:pid``)."""

    def __init__(self, total: int, initial: int, quiet: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="generate+extract on Ray", unit="q", disable=quiet)
        self.rates: dict[str, float] = {}

    def __enter__(self) -> Progress:
        return self

    def advance(self, n: int, worker: str, rate: float) -> None:
        """``n`` more questions done by ``worker``, which now runs at ``rate`` questions per second."""
        self.rates[worker] = rate
        names = {w: f"w{i}" for i, w in enumerate(sorted(self.rates))}
        self.bar.set_postfix_str(" ".join(f"{names[w]} {r:.1f}q/s" for w, r in sorted(self.rates.items())))
        self.bar.update(n)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
