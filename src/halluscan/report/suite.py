"""The suite's page.

Per dataset the probe against the baselines, and the train x test transfer matrix.
"""

from __future__ import annotations

import html
from pathlib import Path

from halluscan import atomic
from halluscan.analyses.results import Suite
from halluscan.report.page import CSS, interval, num, table


def _cell(v: float | None) -> str:
    if v is None:
        return "<td>n/a</td>"
    shade = max(0.0, min(1.0, (v - 0.5) / 0.5))  # Blues over 0.5-1.0, as the heatmaps
    bg = f"rgb({int(247 - 239 * shade)},{int(251 - 203 * shade)},{int(255 - 148 * shade)})"
    fg = "white" if shade > 0.6 else "black"
    return f'<td style="background:{bg};color:{fg}">{v:.3f}</td>'


def write_suite_report(path: Path, s: Suite) -> Path:
    """Write ``suite.html`` from the suite's record."""
    rows = []
    for name, d in s.datasets.items():
        if d.best_cell is None:
            rows.append((name, num(d.accuracy), d.n_graded, "no probes", "", "", "", ""))
            continue
        h, b = d.best_cell, d.best_baseline
        cell = f"{h.position} L{h.layer}: {num(h.auc)} ({interval(h.ci95)})"
        gain = f"{num(h.gain_over_layer0)} ({interval(h.gain_ci95)})"
        base = f"{b.name}: {num(b.scores.auc)} ({interval(b.scores.ci95)})" if b else "—: n/a (—)"
        clears = "yes" if d.beats_every_baseline else "no"
        rows.append(
            (name, num(d.accuracy), d.n_graded, cell, gain, base, clears, f"{d.wall_s:.0f}")
        )
    head = (
        "dataset",
        "accuracy",
        "n",
        "best probe cell (95 %)",
        "gain over layer 0",
        "best baseline",
        "probe clears every baseline",
        "seconds",
    )
    t = s.transfer
    matrix = ""
    if t.runs:
        th = "".join(f"<th>{html.escape(r)}</th>" for r in t.runs)
        body = "".join(
            f"<tr><th>{html.escape(r)}</th>" + "".join(_cell(v) for v in row) + "</tr>"
            for r, row in zip(t.runs, t.best_auc, strict=True)
        )
        matrix = f"""<h2>Do the probes transfer?
(best-cell AUC; rows: trained on, columns: tested on)</h2>
<p class="muted">The diagonal is each study's own cross-validated best cell at any position (the
table above
keeps to the exact-answer positions).</p>
<table><thead><tr><th></th>{th}</tr></thead><tbody>{body}</tbody></table>"""
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>halluscan suite: {html.escape(s.name)}</title>
<style>{CSS}</style></head><body>
<h1>halluscan suite: {html.escape(s.name)}</h1>
<div class="muted">model <b>{html.escape(s.model)}</b> · {len(s.datasets)} datasets ·
{s.wall_s:.0f} s</div>
<h2>The probe against the baselines, per dataset</h2>
<p class="muted">Best exact-answer cell with its 95 % interval over folds; its gain over layer 0
(token identity)
at the same position, paired over folds; the strongest baseline on the same folds; and whether the
probe's gain
clears zero against every baseline.</p>
{table(rows, head)}
{matrix}
</body></html>"""
    return atomic.write_text(path, page)
