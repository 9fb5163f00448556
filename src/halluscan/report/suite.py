"""The suite's page.

Per dataset the nested probe against the strongest control, and the transfer matrices at fixed
cells.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from halluscan import atomic
from halluscan.analyses.results import Suite
from halluscan.analyses.verdict import Headline
from halluscan.report.page import CSS, interval, num, table
from halluscan.text import display_name


def _cell(v: float | None) -> str:
    if v is None:
        return "<td>n/a</td>"
    shade = max(0.0, min(1.0, (v - 0.5) / 0.5))  # Blues over 0.5-1.0, as the heatmaps
    bg = f"rgb({int(247 - 239 * shade)},{int(251 - 203 * shade)},{int(255 - 148 * shade)})"
    fg = "white" if shade > 0.6 else "black"
    return f'<td style="background:{bg};color:{fg}">{v:.3f}</td>'


def _matrix(
    runs: list[str], values: list[list[float | None]], cell: Callable[[float | None], str]
) -> str:
    """A train x test table of ``values`` (rows: trained on, columns: tested on)."""
    th = "".join(f"<th>{html.escape(r)}</th>" for r in runs)
    body = "".join(
        f"<tr><th>{html.escape(r)}</th>" + "".join(cell(v) for v in row) + "</tr>"
        for r, row in zip(runs, values, strict=True)
    )
    return f"<table><thead><tr><th></th>{th}</tr></thead><tbody>{body}</tbody></table>"


def _gain(v: float | None) -> str:
    return "<td>n/a</td>" if v is None else f"<td>{v:+.3f}</td>"


# the columns of a study's headline, in the suite's and the grid's tables
HEADLINE_HEAD = (
    "nested probe cell (95 %)",
    "strongest control",
    "gain over it (95 %)",
    "probe beats it",
)


def headline_cells(h: Headline | None, gain: str = ".3f") -> tuple[str, str, str, str]:
    """A study's headline as table cells: the nested cell, the strongest control, the gain.

    ``gain``: the gain's format (``+.3f`` to sign it).
    """
    if h is None:
        return ("no probes", "", "", "")
    return (
        f"{h.position} L{h.layer}: {num(h.auc)} ({interval(h.ci95)})",
        f"{h.strongest}: {num(h.strongest_auc)} ({interval(h.strongest_ci95)})",
        f"{num(h.gain, gain)} ({interval(h.gain_ci95)})",
        "yes" if h.clear else "no",
    )


def _rows(s: Suite) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name, d in s.datasets.items():
        tail = f"{d.wall_s:.0f}" if d.headline is not None else ""
        rows.append((name, num(d.accuracy), d.n_graded, *headline_cells(d.headline), tail))
    return rows


def write_suite_report(path: Path, s: Suite) -> Path:
    """Write ``suite.html`` from the suite's record."""
    head = ("dataset", "accuracy", "n", *HEADLINE_HEAD, "seconds")
    t = s.transfer
    matrix = ""
    if t.runs and t.auc:
        matrix = f"""<h2>Do the probes transfer?</h2>
<p class="muted">AUC on the test run (columns) at the cell chosen on the training run (rows),
without looking at the test data. The diagonal is each study's nested AUC.</p>
{_matrix(t.runs, t.auc, _cell)}
<p class="muted">The probe's gain over the test run's strongest log-prob baseline, each baseline
oriented on the training run (transfer counts when it beats the logits). Diagonal: the study's own
gain over its strongest log-prob baseline.</p>
{_matrix(t.runs, t.gain, _gain)}"""
        if t.max_auc:
            matrix += f"""
<p class="muted">For comparison only: the best of the test heatmap's cells, chosen on the test
data (optimistic).</p>
{_matrix(t.runs, t.max_auc, _cell)}"""
    model = html.escape(display_name(s.model))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>halluscan suite: {html.escape(s.name)}</title>
<style>{CSS}</style></head><body>
<h1>halluscan suite: {html.escape(s.name)}</h1>
<div class="muted">model <b title="{html.escape(s.model)}">{model}</b> ·
{len(s.datasets)} datasets ·
{s.wall_s:.0f} s</div>
<h2>The probe against the strongest control, per dataset</h2>
<p class="muted">The exact-answer cell chosen by nested cross-validation, with its AUC on the
outer folds (95 % interval over folds); the strongest of the controls and baselines scored on the
same answers and folds (text alone, locator rule, relation, token identity, log-probabilities,
p(True), sampling); and the probe's paired gain over it.</p>
{table(_rows(s), head)}
{matrix}
</body></html>"""
    return atomic.write_text(path, page)
