"""Per-response maps for the report: the automatic wrong/correct pair and the config's ``report_pairs``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from halluscan.analysis import pick_pair
from halluscan.models.loading import LoadedModel
from halluscan.probes.bank import ProbeBank
from halluscan.records import Example, ScoreResult
from halluscan.report import figures
from halluscan.scan import Scanner
from halluscan.settings import StudySettings


def response_maps(
    settings: StudySettings, lm: LoadedModel, bank: ProbeBank, examples: list[Example], folder: Path
) -> list[dict[str, Any]]:
    """Score each pair, draw its activity surfaces and attention heatmaps into ``folder``, and describe them."""
    scanner = Scanner(lm, bank, generation=settings.generation, grader=settings.grader)
    jobs: list[tuple[str, list[ScoreResult], list[str | None]]] = []
    auto = pick_pair(examples)
    if auto:
        scored = [scanner.score_ids(e.question, e.response_ids, relation=e.relation) for e in auto]
        jobs.append(("auto", scored, ["correct" if e.correct else "wrong" for e in auto]))
    for k, pair in enumerate(settings.config.report_pairs, start=1):
        scored = [
            scanner.score(e["question"], e.get("answer") or None, relation=e.get("relation", "custom")) for e in pair
        ]
        jobs.append((f"pair{k}", scored, [None, None]))
    return [_draw(name, results, graded, folder) for name, results, graded in jobs]


def _draw(name: str, results: list[ScoreResult], graded: list[str | None], folder: Path) -> dict[str, Any]:
    act = figures.activity_files(results, folder, f"{name}_activity")
    att = [figures.attention_files(r, folder, f"{name}_{i}_attention")[0] for i, r in enumerate(results, start=1)]
    responses = [
        {"question": r.question, "response": r.response, "verdict": r.verdict, "p_wrong": r.p_wrong, "graded": g}
        for r, g in zip(results, graded, strict=True)
    ]
    return {
        "name": name,
        "responses": responses,
        "activity_png": str(act[0]),
        "activity_html": str(act[1]),
        "attention_png": [str(p) for p in att],
        "div": figures.activity_figure(results).to_html(include_plotlyjs=False, full_html=False),
    }
