"""The self-contained HTML report: findings, heatmap, controls, examples, provenance.

It reads the study's typed :class:`~halluscan.analyses.results.Metrics` and never calls the model.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from halluscan import atomic
from halluscan.analyses.results import Metrics
from halluscan.positions import Cell
from halluscan.records import Example, Span
from halluscan.report.baselines import label
from halluscan.report.location import location_section
from halluscan.report.maps import DrawnPair
from halluscan.report.page import CSS, b64, img, interval, num, table
from halluscan.text import display_name


def _highlight(text: str, span: Span | None) -> str:
    if not span:
        return html.escape(text)
    a, b = span.start, span.end
    return html.escape(text[:a]) + f"<mark>{html.escape(text[a:b])}</mark>" + html.escape(text[b:])


def pick_examples(examples: list[Example], per_cell: int = 2) -> list[Example]:
    """A few correct and wrong examples of every relation (the first ones in store order)."""
    out = []
    for rel in sorted({e.relation for e in examples}):
        for right in (True, False):
            out += [e for e in examples if e.relation == rel and e.correct is right][:per_cell]
    return out


def _examples(examples: list[Example]) -> str:
    rows = []
    for e in pick_examples(examples):
        grade, css = ("correct", "ok") if e.correct else ("wrong", "no")
        cells = [html.escape(e.relation), html.escape(e.question), html.escape(e.gold)]
        cells += [_highlight(e.response, e.exact_span), html.escape(e.locator)]
        rows.append(
            f"<tr><td class='{css}'>{grade}</td>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    cols = ("grade", "relation", "question", "gold", "response (exact answer marked)", "located by")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    return f"<table class='ex'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _check(ok: bool) -> str:
    return f"<span class='{'ok' if ok else 'no'}'>{'yes' if ok else 'no'}</span>"


def _finding(m: Metrics) -> str:
    """The finding box: the nested probe against the strongest cheap control, and the warnings."""
    f, head = m.finding, m.headline
    assert f is not None
    if head is None:  # no exact-answer cell could be nested: the heatmap's maximum alone
        return (
            f"<div class='finding'><b>Best exact-answer cell:</b> <code>{f.best_exact_position}"
            f"</code> at layer {f.best_exact_layer}, AUC {num(f.best_exact_auc)} (the maximum over "
            "the heatmap's cells, chosen on the folds it is scored on: optimistic).</div>"
        )
    verdict = "beats" if head.clear else "does <b>not</b> beat"
    picks = sum(c == Cell(head.position, head.layer) for c in (m.nested.picks if m.nested else []))
    folds = len(m.nested.picks) if m.nested else 0
    items = [
        f"<b>Headline:</b> the probe {verdict} the strongest cheap control, "
        f"<i>{html.escape(label(head.strongest))}</i> (AUC {num(head.strongest_auc)}, "
        f"{interval(head.strongest_ci95)}): gain <b>{num(head.gain)}</b> (95 % interval "
        f"{interval(head.gain_ci95)}), paired over the folds",
        f"Compared on n = {head.n} answers ({head.n_wrong} wrong); left out, with no "
        f"<code>{head.position}</code>: {head.left_out.get('correct', 0)} correct and "
        f"{head.left_out.get('wrong', 0)} wrong",
        *_fallback_items(m),
        f"The heatmap's maximum over its {head.n_cells} exact-answer cells reads "
        f"{num(head.max_auc)}, chosen on the folds it is scored on: optimistic",
    ]
    items += [f"<span class='no'>Warning</span>: {html.escape(w)}" for w in f.warnings]
    lis = "".join(f"<li>{x}</li>" for x in items)
    return (
        f"<div class='finding'><b>Probe cell, chosen without the test data</b> (nested "
        f"cross-validation; picked in {picks} of {folds} folds): <code>{head.position}</code> "
        f"at layer {head.layer}, AUC <b>{num(head.auc)}</b> ({interval(head.ci95)})."
        f"<ul>{lis}</ul></div>"
    )


def _fallback_items(m: Metrics) -> list[str]:
    """The finding box's lines on answers read at the fallback and on ambiguous grades."""
    head, s, out = m.headline, m.summary, []
    assert head is not None
    fb = head.read_at_fallback or {}
    if sum(fb.values()):
        line = (
            f"Of those, {fb.get('correct', 0)} correct and {fb.get('wrong', 0)} wrong answers "
            "had no located exact answer and were read at their last answer token"
        )
        again = m.nested_located
        if again is not None:
            line += (
                f"; without them, the same cells fitted and scored again read "
                f"{num(again.auc)} ({interval(again.ci95)}) on {again.n} answers"
            )
        out.append(line)
    unsure = s.ambiguous or {}
    n = sum(sum(c.values()) for c in unsure.values())
    if n:
        why = ", ".join(f"{k} {sum(c.values())}" for k, c in unsure.items())
        where = "kept in" if s.ambiguous_in_probes else "left out of"
        out.append(f"{n} answers with an ambiguous grade ({why}) are {where} the probes")
    return out


AUTO_PAIR = (
    "picked automatically: one question the model got wrong, given its gold answer and the "
    "model's own wrong answer (the given-answer bank reads both); without a given-answer bank, "
    "the first wrong and the first correct response of one relation"
)


def _response_maps(maps: list[DrawnPair]) -> str:
    if not maps:
        return "<p class='muted'>No probe bank at exact_answer_last, so no per-response maps.</p>"
    parts = []
    for drawn in maps:
        m = drawn.record
        who = AUTO_PAIR if m.name == "auto" else "named in the config (report_pairs)"
        rows = [
            (
                r.question,
                r.response,
                r.graded or "n/a",
                f"{r.verdict} ({r.p_wrong:.2f})",
                f"{r.bank}-answer",
            )
            for r in m.responses
        ]
        parts.append(
            f"<h3>{html.escape(m.name)} <span class='muted'>({who})</span></h3>"
            + table(rows, ("question", "response", "graded", "probe verdict (p wrong)", "bank"))
            + img(m.activity_png, "activity surfaces")
            + "<details><summary>Interactive (rotatable) surfaces</summary>"
            + drawn.div
            + "</details>"
            + "".join(img(p, "attention heatmap") for p in m.attention_png)
        )
    return "".join(parts)


def _head(m: Metrics) -> str:
    prov = m.provenance
    assert prov is not None
    name, model, ds = html.escape(m.name), prov.model, prov.dataset
    full, rev = html.escape(model.model_id), html.escape(model.revision[:23])
    model_id = html.escape(display_name(model.model_id))
    data_full, data = html.escape(ds.name), html.escape(display_name(ds.name))
    fmt = f"; prompt: {html.escape(model.prompt_format)}" if model.prompt_format else ""
    made = f"halluscan {prov.halluscan_version} · seed {prov.seed} · {html.escape(prov.created)}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>halluscan: {name}</title>
<style>{CSS}</style></head><body>
<h1>halluscan report: {name}</h1>
<div class="muted">model <b title="{full}">{model_id}</b> ({rev}{fmt}) ·
dataset <b title="{data_full}">{data}</b> (sha256 {ds.sha256[:12]}) · {made}</div>"""


def _question(m: Metrics) -> str:
    assert m.heatmap is not None
    acc, site, folds = num(m.summary.accuracy), html.escape(m.heatmap.site), m.heatmap.folds
    return f"""<h2>Does the model know when it is wrong?</h2>
<p>{m.summary.n_graded} questions graded; accuracy <b>{acc}</b>. A linear probe per (layer, token
position)
predicts <i>the answer is wrong</i> from the {site} stream; AUC is the mean over
{folds}-fold cross-validation (stratified, grouped by question).</p>
{_finding(m)}"""


def _heatmap(pngs: tuple[Path, Path], div: str) -> str:
    auc, gain = pngs
    return f"""<h2>Probe AUC heatmap</h2>
<p class="muted">Rows: layers (0 = embedding output, the token-identity control). Columns: token
positions. Red boxes mark the best layer per position: each is the best of many cells scored on
the folds that chose it, so it is optimistic (the finding above gives the nested estimate). On
the right, each cell's gain over layer 0 at the same position: what the layers add to the token
itself.</p>
<div class="pair">
<img alt="probe AUC heatmap" src="data:image/png;base64,{b64(auc, "the heatmap")}">
<img alt="gain over layer 0" src="data:image/png;base64,{b64(gain, "the gain heatmap")}">
</div>
<h3>Interactive</h3>
{div}"""


def _cells(m: Metrics) -> str:
    rows = []
    for p, c in (m.best_cells or {}).items():
        if c.auc is not None:
            ci = " – ".join(num(v) for v in c.ci95 or (None, None))
            rows.append((p, c.layer, num(c.auc), ci, num(c.std), "yes" if c.informative else "no"))
    head = ("position", "layer", "AUC (mean)", "95 % interval", "fold std", "informative")
    return f"""<h2>Best cell per position</h2>
<p class="muted">Each row is the best of the position's layers on the folds that score it, so
it is optimistic (the finding box gives the nested estimate). Interval: 95 % Student-t interval
of the mean over folds. Informative: the interval's lower end clears both heatmap-wide controls
(relation only, and layer 0 at the same position).</p>
{table(rows, head)}"""


def _accuracy(m: Metrics) -> str:
    s = m.summary
    acc = [(r, num(a), s.n_by_relation[r]) for r, a in s.accuracy_by_relation.items()]
    return f"""<h2>Accuracy by relation</h2>
{table(acc, ("relation", "accuracy", "n"))}"""


def _controls(m: Metrics) -> str:
    c = m.controls
    assert c is not None
    rows = [
        ("relation only (metadata prior)", num(c.relation_prior_auc)),
        ("layer 0 at the exact-answer positions (best)", num(c.layer0_exact_auc)),
        ("layer 0 at last_q", num(c.layer0_last_q_auc)),
    ]
    return f"""<h2>Heatmap-wide controls</h2>
<p class="muted">On every answer with the position (the paired comparison on the headline's own
folds is in the table "Is it the model, or the answer's text?").</p>
{table(rows, ("control", "AUC"))}
{_accuracy(m)}"""


def _maps(maps: list[DrawnPair]) -> str:
    return f"""<h2>One response, token by token</h2>
<p class="muted">Activity: the log-odds of <i>wrong</i> that each layer's probe (trained at the
exact answer's last
token on this study's examples, these included) gives at every generated token; green leans
correct, red wrong, one
colour scale per pair. Attention: what each token receives from the later tokens, mean over heads,
0-1 per layer.</p>
{_response_maps(maps)}"""


def _tail(m: Metrics, examples: list[Example]) -> str:
    timings = [(k, num(v, ".1f")) for k, v in m.timings_s.items()]
    return f"""<h2>Examples</h2>
{_examples(examples)}
<h2>Timings</h2>
{table(timings, ("stage", "seconds"))}
<h2>Provenance</h2>
<pre>{html.escape(json.dumps(m.provenance.to_json() if m.provenance else {}, indent=2))}</pre>
</body></html>"""


def _no_probes(m: Metrics) -> str:
    return f"""<h2>Does the model know when it is wrong?</h2>
<p>{m.summary.n_graded} questions graded; accuracy <b>{num(m.summary.accuracy)}</b>.</p>
<div class="finding">{html.escape(m.no_probes or "")}</div>
{_accuracy(m)}"""


def write_report(
    path: Path,
    metrics: Metrics,
    examples: list[Example],
    heatmap_png: tuple[Path, Path] | None,
    heatmap_div: str,
    maps: list[DrawnPair] | None = None,
    extra: str = "",
) -> Path:
    """Write the report to ``path``; images and plotly.js are inlined so it opens offline.

    ``heatmap_png``: the AUC heatmap and its gain over layer 0.

    Without a heatmap (``metrics.no_probes`` says why) it gives the accuracy, the exact
    answers located and the graded answers. ``extra`` (HTML) follows the controls.
    """
    if heatmap_png is None:
        parts = [
            _head(metrics),
            _no_probes(metrics),
            extra,
            location_section(metrics),
            _tail(metrics, examples),
        ]
        return atomic.write_text(path, "\n".join(parts))
    parts = [
        _head(metrics),
        _question(metrics),
        _heatmap(heatmap_png, heatmap_div),
        _cells(metrics),
    ]
    parts += [
        _controls(metrics),
        extra,
        location_section(metrics),
        _maps(maps or []),
        _tail(metrics, examples),
    ]
    # a failed write leaves the previous report, never half a one
    return atomic.write_text(path, "\n".join(parts))
