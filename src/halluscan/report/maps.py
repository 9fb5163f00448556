"""The report's per-response figures: a pair of scored responses drawn side by side.

The scoring happens in the study (:mod:`halluscan.study.maps`); this module only draws the
activity surfaces and attention heatmaps of what it is given, and describes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from halluscan.analyses.results import MapResponse, ResponseMap
from halluscan.records import ScoreResult
from halluscan.report import figures


@dataclass(frozen=True)
class DrawnPair:
    """A drawn pair: its record (kept in the metrics) and its interactive figure (for the page)."""

    record: ResponseMap
    div: str


def draw_pair(
    name: str, results: list[ScoreResult], graded: list[str | None], folder: Path
) -> DrawnPair:
    """Draw the activity surfaces and attention heatmaps of ``results`` into ``folder``."""
    act = figures.activity_files(results, folder, f"{name}_activity")
    att = [
        figures.attention_files(r, folder, f"{name}_{i}_attention")[0]
        for i, r in enumerate(results, start=1)
    ]
    responses = [
        MapResponse(r.question, r.response, r.verdict, r.p_wrong, g, r.bank)
        for r, g in zip(results, graded, strict=True)
    ]
    record = ResponseMap(name, responses, str(act[0]), str(act[1]), [str(p) for p in att])
    div = figures.activity_figure(results).to_html(include_plotlyjs=False, full_html=False)
    return DrawnPair(record, div)
