"""Peak memory of a piece of work, measured inside a child process against its RSS before the work.

``ru_maxrss`` cannot see growth that stays below an earlier peak (the model load sets it), so
:class:`PeakRSS` resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux) when the
work starts and reads it back at the end; a thread that samples ``VmRSS`` every few milliseconds
backs it up where the reset is not allowed. :func:`run_child` runs Python code in a fresh
interpreter and returns the JSON that the code prints last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakRSS:
    """``with PeakRSS() as m: work()`` -> ``m.base_mb``, ``m.peak_mb``, ``m.growth_mb``."""

    def __init__(self, every_s: float = 0.005):
        self.every_s = every_s
        self.sampled_kb = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.reset = True
        except OSError:
            self.reset = False
        self.base_kb = _status_kb("VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled_kb = max(self.sampled_kb, _status_kb("VmRSS"))
            time.sleep(self.every_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sampled_kb = max(self.sampled_kb, _status_kb("VmRSS"))
        self.peak_kb = max(self.sampled_kb, _status_kb("VmHWM") if self.reset else 0)

    @property
    def base_mb(self) -> float:
        return self.base_kb / 1024

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.base_kb) / 1024

    def to_json(self) -> dict:
        return {
            "rss_before_mb": round(self.base_mb, 1),
            "peak_rss_mb": round(self.peak_mb, 1),
            "growth_mb": round(self.growth_mb, 1),
            "high_water_mark_reset": self.reset,
        }


def run_child(code: str, timeout: float = 1800) -> dict:
    """Run ``code`` in a fresh Python (this folder importable); its last stdout line is JSON."""
    here = str(Path(__file__).parent)
    prog = f"import sys; sys.path.insert(0, {here!r})\n{code}"
    out = subprocess.run(
        [sys.executable, "-c", prog], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
