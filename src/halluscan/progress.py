"""Progress bars: drawn on a terminal, whole lines in a log file, nothing when quiet.

Every bar of halluscan comes from :func:`bar`. On a terminal it is tqdm's bar. When stderr is not
a terminal (a log file, a pipe, CI), redrawing a bar would fill the log with carriage returns, so
the bar writes one plain line at most every ``LOG_EVERY_S`` seconds and one at the end: long work
still shows progress. ``HALLUSCAN_PROGRESS=bar`` forces the terminal bar (``--progress bar``),
``=lines`` the lines, ``=off`` nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LOG_EVERY_S = 30.0
MODES = ("auto", "bar", "lines", "off")


class _Lines:
    """tqdm's output as whole lines: no carriage returns, no redraws."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.strip("\r\n")
        if s.strip():
            self.stream.write(s + "\n")

    def flush(self) -> None:
        self.stream.flush()


def mode() -> str:
    """How bars are drawn now: ``HALLUSCAN_PROGRESS``, else by whether stderr is a terminal."""
    want = os.environ.get("HALLUSCAN_PROGRESS", "auto")
    if want in ("bar", "lines", "off"):
        return want
    return "bar" if sys.stderr.isatty() else "lines"


def bar(total: int, desc: str, unit: str, quiet: bool = False, initial: int = 0) -> Any:
    """A tqdm bar over ``total`` ``unit``s (none when ``quiet``)."""
    from tqdm.auto import tqdm

    how = "off" if quiet else mode()
    kw: dict[str, Any] = {"total": total, "initial": initial, "desc": desc, "unit": unit}
    if how == "lines":
        kw |= {"file": _Lines(sys.stderr), "mininterval": LOG_EVERY_S, "ascii": True, "ncols": 100}
    return tqdm(disable=how == "off", **kw)
