"""The report's given-answer section: the given-answer sweep, and which bank to trust for which answers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from halluscan.report.html import _b64, _num, _table

KINDS = (("own_answers", "the model's own greedy answers"), ("given_pairs", "given true / false answers"))


def _ci(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("auc") is None:
        return "—"
    lo, hi = cell["ci95"]
    return f"{_num(cell['auc'])} ({_num(lo)} – {_num(hi)})"


def given_section(metrics: dict[str, Any], png: Path | None) -> str:
    """HTML for ``metrics["given_bank"]`` (empty when the study has none)."""
    g = metrics.get("given_bank")
    if not g:
        return ""
    if "skipped" in g:
        return f'<h2>Given answers</h2>\n<div class="finding">{html.escape(g["skipped"])}</div>'
    best, layer0 = g["best"], g["layer0"]
    cross = g["cross"]
    rows = []
    for bank, trained in (("own_bank", "own answers, graded"), ("given_bank", "given answers, true / false")):
        cells = cross.get(bank) or {}
        layer = next((c["layer"] for c in cells.values() if c and "layer" in c), "—")
        name = bank.replace("_bank", "-answer bank")
        rows.append((f"{name} ({trained}), layer {layer}", *(_ci(cells.get(k)) for k, _ in KINDS)))
    img = f'<img alt="given-answer heatmap" src="data:image/png;base64,{_b64(png, "the heatmap")}">' if png else ""
    template = html.escape(g["template"].format(answer="ANSWER"))
    return f"""<h2>Given answers: scoring an answer the model did not write</h2>
<p>For each of {g["n_questions"]} questions the gold answer (true) and a false answer of the same type, drawn from
the other questions' answers of its relation, were teacher-forced as <code>{template}</code> after the question's
prompt ({g["n_answers"]} answers, labelled by truth). Probes on these answers, cross-validated with both answers
of a question in the same fold: best layer at <code>exact_answer_last</code> <b>{best["layer"]}</b>, AUC
<b>{_ci(best)}</b>; layer 0 there (the answer's identity alone) {_ci(layer0)}. This bank
(<code>probes_given</code>) is what <code>halluscan score --answer</code> uses.</p>
{img}
<h3>Which bank for which answers</h3>
<p class="muted">AUC (95 % interval over folds) of each bank's probe at its best layer, held out by question:
for each fold the probe is fitted on the other folds' questions. Own answers: the study's graded greedy answers.
Given pairs: the true and false answers above.</p>
{_table(rows, ("bank (trained on)", *(label for _, label in KINDS)))}"""
