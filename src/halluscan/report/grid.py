"""The grid's page: several models × several datasets, as the published study's tables are."""

from __future__ import annotations

import html
from pathlib import Path

from halluscan import atomic
from halluscan.analyses.results import Suite, SuiteStudy
from halluscan.report.page import CSS, b64, interval, num, table
from halluscan.report.suite import HEADLINE_HEAD, headline_cells
from halluscan.text import display_name


def _rows(suites: dict[str, Suite]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for s in suites.values():
        for name, d in s.datasets.items():
            rows.append((display_name(s.model), name, num(d.accuracy), d.n_graded, *_numbers(d)))
    return rows


def _numbers(d: SuiteStudy) -> tuple[str, ...]:
    b = d.best_baseline
    if d.headline is None:
        return (*headline_cells(None), "")
    base = f"{b.name}: {num(b.scores.auc)} ({interval(b.scores.ci95)})" if b else "—"
    return (*headline_cells(d.headline, "+.3f"), base)


def _heatmaps(suites: dict[str, Suite], pngs: dict[str, dict[str, Path]]) -> str:
    datasets = list(next(iter(pngs.values())).keys()) if pngs else []
    head = "".join(f"<th>{html.escape(d)}</th>" for d in datasets)
    body = ""
    for folder, row in pngs.items():
        cells = "".join(
            f'<td><img style="max-width:360px" alt="{html.escape(folder)} {html.escape(d)}" '
            f'src="data:image/png;base64,{b64(p, "the heatmap")}"></td>'
            if p.is_file()
            else "<td>no heatmap</td>"
            for d, p in row.items()
        )
        name = html.escape(display_name(suites[folder].model))
        body += f"<tr><th>{name}</th>{cells}</tr>"
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_grid_report(
    path: Path, name: str, suites: dict[str, Suite], pngs: dict[str, dict[str, Path]]
) -> Path:
    """Write ``grid.html``: the heatmaps in a grid, and every study's numbers in one table."""
    head = ("model", "dataset", "accuracy", "n", *HEADLINE_HEAD, "strongest log-prob baseline")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>halluscan grid: {html.escape(name)}</title>
<style>{CSS}</style></head><body>
<h1>halluscan grid: {html.escape(name)}</h1>
<div class="muted">{len(suites)} models × {len(next(iter(pngs.values()), {}))} datasets; each
model's suite (transfer included) is its own page, <code>MODEL/suite.html</code>.</div>
<h2>The probe against the strongest control</h2>
<p class="muted">Per model and dataset: the exact-answer cell chosen by nested cross-validation,
its AUC over the outer folds (95 % interval), the strongest control or baseline on the same
answers and folds, and the probe's paired gain over it. The last column is the strongest of the
log-probability baselines alone, oriented on the training folds. The models differ in size and
training; a row compares cells within one model, not models with each other.</p>
{table(_rows(suites), head)}
<h2>The heatmaps</h2>
<p class="muted">Probe AUC per layer × position; one colour scale (Blues, 0.5 to 1.0) for all.</p>
{_heatmaps(suites, pngs)}
</body></html>"""
    return atomic.write_text(path, page)
