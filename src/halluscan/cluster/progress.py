"""Progress of a study on Ray: questions done, the overall ETA, and each worker's throughput."""

from __future__ import annotations

from typing import Any

from halluscan import progress


class Progress:
    """A tqdm bar over questions; its postfix shows each worker's questions per second."""

    def __init__(self, total: int, initial: int, quiet: bool):
        self.bar = progress.bar(total, "generate+extract on Ray", "q", quiet, initial=initial)
        self.rates: dict[str, float] = {}

    def __enter__(self) -> Progress:
        return self

    def advance(self, n: int, worker: str, rate: float) -> None:
        """``n`` more questions done by ``worker``, which runs at ``rate`` questions per second."""
        # in order of first result: w0, w1, ... keep their names (a restart is new)
        self.rates[worker] = rate
        self.bar.set_postfix_str(
            " ".join(f"w{i} {r:.1f}q/s" for i, r in enumerate(self.rates.values()))
        )
        self.bar.update(n)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
