"""The report's given-answer section.

The given-answer sweep, and which bank to trust for which answers.
"""

from __future__ import annotations

import html
from pathlib import Path

from halluscan.analyses.given import HeldOut
from halluscan.analyses.results import Metrics
from halluscan.report.page import b64, num, table

KINDS = (
    ("own_answers", "the model's own greedy answers"),
    ("given_pairs", "given true / false answers"),
)


def _ci(cell: HeldOut | None) -> str:
    if cell is None or cell.auc is None or cell.ci95 is None:
        return "—"
    lo, hi = cell.ci95
    return f"{num(cell.auc)} ({num(lo)} – {num(hi)})"


def given_section(m: Metrics, png: Path | None) -> str:
    """HTML for the given-answer bank (empty when the study has none)."""
    g = m.given_bank
    if g is None:
        return ""
    if g.skipped is not None:
        return f'<h2>Given answers</h2>\n<div class="finding">{html.escape(g.skipped)}</div>'
    assert g.best is not None and g.cross is not None and g.template is not None
    rows = []
    banks = (
        ("own_bank", g.cross.own_bank, "own answers, graded"),
        ("given_bank", g.cross.given_bank, "given answers, true / false"),
    )
    for bank, cells, trained in banks:
        layer = next((c.layer for c in cells.values() if c is not None), "—")
        name = bank.replace("_bank", "-answer bank")
        rows.append((f"{name} ({trained}), layer {layer}", *(_ci(cells.get(k)) for k, _ in KINDS)))
    image = (
        f'<img alt="given-answer heatmap" src="data:image/png;base64,{b64(png, "the heatmap")}">'
        if png
        else ""
    )
    template = html.escape(g.template.format(answer="ANSWER"))
    return f"""<h2>Given answers: scoring an answer the model did not write</h2>
<p>For each of {g.n_questions} questions the gold answer (true) and a false answer of the same
type, drawn from
the other questions' answers of its relation, were teacher-forced as <code>{template}</code> after
the question's
prompt ({g.n_answers} answers, labelled by truth). Probes on these answers, cross-validated with
both answers
of a question in the same fold: best layer at <code>exact_answer_last</code> <b>{g.best.layer}</b>,
AUC
<b>{_ci(g.best)}</b>; layer 0 there (the answer's identity alone) {_ci(g.layer0)}. This bank
(<code>probes_given</code>) is what <code>halluscan score --answer</code> uses.</p>
{image}
<h3>Which bank for which answers</h3>
<p class="muted">AUC (95 % interval over folds) of each bank's probe at its best layer, held out by
question:
for each fold the probe is fitted on the other folds' questions. Own answers: the study's graded
greedy answers.
Given pairs: the true and false answers above.</p>
{table(rows, ("bank (trained on)", *(label for _, label in KINDS)))}
{_by_kind(m)}"""


FALSE_KINDS = {
    "false": "a random answer of the type",
    "plausible": "a plausible answer (the country's largest other city; a neighbouring country)",
    "own": "the model's own wrong answer",
    "plausible, where the model answers right": "a plausible answer, on questions the model "
    "itself answers right",
}


def _by_kind(m: Metrics) -> str:
    """The given-answer bank on the truth against each kind of false answer."""
    g = m.given_bank
    if g is None or not g.by_kind:
        return ""
    rows = [(FALSE_KINDS.get(k, k), _ci(v), v.n) for k, v in g.by_kind.items()]
    return f"""<h3>True against which false answers?</h3>
<p>The given-answer bank is trained on the truth against every kind of false answer below, the
model's own wrong answers among them (teacher-forced like the rest). Held out by question, its
AUC on the truth against each kind alone. A random answer is easy to reject; a plausible one
tests knowledge; on the questions the model answers right, it knows the fact, so a bank that
reads knowledge must tell it from a plausible distractor.</p>
{table(rows, ("truth against", "AUC (95 % interval)", "answers"))}"""
