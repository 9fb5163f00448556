"""The suite's page: per dataset the probe against the baselines, and the train x test transfer matrix."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from halluscan import atomic
from halluscan.report.html import CSS, _num, _table


def _ci(c: list[float] | None) -> str:
    return " – ".join(_num(v) for v in c) if c else "—"


def _cell(v: float | None) -> str:
    if v is None:
        return "<td>n/a</td>"
    shade = max(0.0, min(1.0, (v - 0.5) / 0.5))  # Blues over 0.5-1.0, as the heatmaps
    bg = f"rgb({int(247 - 239 * shade)},{int(251 - 203 * shade)},{int(255 - 148 * shade)})"
    fg = "white" if shade > 0.6 else "black"
    return f'<td style="background:{bg};color:{fg}">{v:.3f}</td>'


def write_suite_report(path: Path, s: dict[str, Any]) -> Path:
    """Write ``suite.html`` from the suite's JSON."""
    rows = []
    for name, d in s["datasets"].items():
        if "best_cell" not in d:
            rows.append((name, _num(d["accuracy"]), d["n_graded"], "no probes", "", "", "", ""))
            continue
        h, b = d["best_cell"], d["best_baseline"] or {}
        cell = f"{h['position']} L{h['layer']}: {_num(h['auc'])} ({_ci(h.get('ci95'))})"
        gain = f"{_num(h['gain_over_layer0'])} ({_ci(h['gain_ci95'])})"
        base = f"{b.get('name', '—')}: {_num(b.get('auc'))} ({_ci(b.get('ci95'))})"
        clears = "yes" if d["beats_every_baseline"] else "no"
        rows.append((name, _num(d["accuracy"]), d["n_graded"], cell, gain, base, clears, f"{d['wall_s']:.0f}"))
    head = ("dataset", "accuracy", "n", "best probe cell (95 %)", "gain over layer 0", "best baseline",
            "probe clears every baseline", "seconds")  # fmt: skip
    t = s["transfer"]
    matrix = ""
    if t["runs"]:
        th = "".join(f"<th>{html.escape(r)}</th>" for r in t["runs"])
        body = "".join(
            f"<tr><th>{html.escape(r)}</th>" + "".join(_cell(v) for v in row) + "</tr>"
            for r, row in zip(t["runs"], t["best_auc"], strict=True)
        )
        matrix = f"""<h2>Do the probes transfer? (best-cell AUC; rows: trained on, columns: tested on)</h2>
<p class="muted">The diagonal is each study's own cross-validated best cell at any position (the table above
keeps to the exact-answer positions).</p>
<table><thead><tr><th></th>{th}</tr></thead><tbody>{body}</tbody></table>"""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>halluscan suite: {html.escape(s["name"])}</title>
<style>{CSS}</style></head><body>
<h1>halluscan suite: {html.escape(s["name"])}</h1>
<div class="muted">model <b>{html.escape(s["model"])}</b> · {len(s["datasets"])} datasets · {s["wall_s"]:.0f} s</div>
<h2>The probe against the baselines, per dataset</h2>
<p class="muted">Best exact-answer cell with its 95 % interval over folds; its gain over layer 0 (token identity)
at the same position, paired over folds; the strongest baseline on the same folds; and whether the probe's gain
clears zero against every baseline.</p>
{_table(rows, head)}
{matrix}
</body></html>"""
    return atomic.write_text(path, page)
