"""The self-contained HTML report: findings, heatmap, controls, examples, provenance."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from halluscan import atomic
from halluscan.errors import HalluscanError
from halluscan.records import Example, Span


def _num(v: Any, spec: str = ".3f") -> str:
    """``v`` formatted with ``spec``, or "n/a" when it is missing (None) or not a number (NaN)."""
    if v is None or (isinstance(v, int | float | np.floating) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def _table(rows: list[tuple[Any, ...]], head: tuple[str, ...]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _highlight(text: str, span: Span | None) -> str:
    if not span:
        return html.escape(text)
    a, b = span.start, span.end
    return html.escape(text[:a]) + f"<mark>{html.escape(text[a:b])}</mark>" + html.escape(text[b:])


def pick_examples(examples: list[Example], per_cell: int = 2) -> list[Example]:
    """A few correct and wrong examples of every relation (the first ones in store order)."""
    out = []
    for rel in sorted({e.relation for e in examples}):
        for label in (True, False):
            out += [e for e in examples if e.relation == rel and e.correct is label][:per_cell]
    return out


def _examples(examples: list[Example]) -> str:
    rows = []
    for e in pick_examples(examples):
        grade, css = ("correct", "ok") if e.correct else ("wrong", "no")
        cells = [html.escape(e.relation), html.escape(e.question), html.escape(e.gold)]
        cells += [_highlight(e.response, e.exact_span), html.escape(e.locator)]
        rows.append(f"<tr><td class='{css}'>{grade}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    cols = ("grade", "relation", "question", "gold", "response (exact answer marked)", "located by")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    return f"<table class='ex'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;
  padding:0 16px;color:#1b1f24}
h1{font-size:1.6em;margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.finding{background:#eef5fc;border-left:4px solid #2a6fb0;padding:10px 14px;margin:14px 0}
.ok{color:#1a7f37;font-weight:600} .no{color:#b42318;font-weight:600}
table{border-collapse:collapse;margin:8px 0;font-size:0.92em}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} mark{background:#ffe58f} .ex td:nth-child(5){max-width:420px}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:0.85em} .muted{color:#57606a;font-size:0.9em}
img{max-width:100%}
"""


def _finding(m: dict[str, Any]) -> str:
    f = m["finding"]
    checks = [
        (
            "beats the best <code>last_q</code> cell",
            f["exact_beats_last_q"],
            (m["best_cells"].get("last_q") or {}).get("auc"),
        ),
        (
            "beats the layer-0 (token identity) control at the exact-answer positions",
            f["exact_beats_layer0"],
            m["controls"]["layer0_exact_auc"],
        ),
        ("beats the relation-only control", f["exact_beats_relation_prior"], m["controls"]["relation_prior_auc"]),
    ]
    items = "".join(
        f"<li><span class='{'ok' if ok else 'no'}'>{'yes' if ok else 'no'}</span>: {txt} "
        f"({_num(f['best_exact_auc'])} vs {_num(other)})</li>"
        for txt, ok, other in checks
    )
    head, base = m.get("headline"), m.get("baselines") or {}
    if head:  # the headline: what the probe adds to which answer was given
        ci = " – ".join(_num(v) for v in head["gain_ci95"])
        items += (
            f"<li><b>Gain over token identity</b> (layer 0 at the same position, paired over folds): "
            f"<b>{_num(head['gain_over_layer0'])}</b> (95 % interval {ci}), "
            f"<span class='{'ok' if head['clear'] else 'no'}'>{'clear' if head['clear'] else 'not clear'}</span> "
            "of zero</li>"
        )
    if base:
        every = all(b["probe_clear"] for b in base.values())
        name, best = max(base.items(), key=lambda kv: kv[1]["auc"])
        items += (
            f"<li><span class='{'ok' if every else 'no'}'>{'yes' if every else 'no'}</span>: beats every baseline, "
            f"each gain's interval clear of zero (strongest: {name}, AUC {_num(best['auc'])})</li>"
        )
    return (
        f"<div class='finding'><b>Best exact-answer cell:</b> <code>{f['best_exact_position']}</code> at layer "
        f"{f['best_exact_layer']}, AUC {_num(f['best_exact_auc'])}. It<ul>{items}</ul></div>"
    )


def _b64(path: str | Path, what: str) -> str:
    try:
        return base64.b64encode(Path(path).read_bytes()).decode()
    except OSError as e:
        raise HalluscanError(f"could not read {what} {path}: {e.strerror or e}; run the study again") from e


def _img(path: str | Path, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_b64(path, "the figure")}">'


AUTO_PAIR = "picked automatically: the first wrong and the first correct response of one relation"


def _response_maps(maps: list[dict[str, Any]]) -> str:
    if not maps:
        return "<p class='muted'>No probe bank at exact_answer_last, so no per-response maps.</p>"
    parts = []
    for m in maps:
        who = AUTO_PAIR if m["name"] == "auto" else "named in the config (report_pairs)"
        rows = [
            (r["question"], r["response"], r["graded"] or "n/a", f"{r['verdict']} ({r['p_wrong']:.2f})")
            for r in m["responses"]
        ]
        parts.append(
            f"<h3>{html.escape(m['name'])} <span class='muted'>({who})</span></h3>"
            + _table(rows, ("question", "response", "graded", "probe verdict (p wrong)"))
            + _img(m["activity_png"], "activity surfaces")
            + "<details><summary>Interactive (rotatable) surfaces</summary>"
            + m.get("div", "")
            + "</details>"
            + "".join(_img(p, "attention heatmap") for p in m["attention_png"])
        )
    return "".join(parts)


def _head(m: dict[str, Any]) -> str:
    prov = m["provenance"]
    name, model, ds = html.escape(m["name"]), prov["model"], prov["dataset"]
    model_id, rev = html.escape(model["model_id"]), html.escape(model["revision"][:23])
    made = f"halluscan {prov['halluscan_version']} · seed {prov['config']['seed']} · {html.escape(prov['created'])}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>halluscan: {name}</title>
<style>{CSS}</style></head><body>
<h1>halluscan report: {name}</h1>
<div class="muted">model <b>{model_id}</b> ({rev}) ·
dataset <b>{html.escape(ds["name"])}</b> (sha256 {ds["sha256"][:12]}) · {made}</div>"""


def _question(m: dict[str, Any]) -> str:
    acc, site, folds = _num(m["accuracy"]), html.escape(m["heatmap"]["site"]), m["heatmap"]["folds"]
    return f"""<h2>Does the model know when it is wrong?</h2>
<p>{m["n_graded"]} questions graded; accuracy <b>{acc}</b>. A linear probe per (layer, token position)
predicts <i>the answer is wrong</i> from the {site} stream; AUC is the mean over
{folds}-fold cross-validation (stratified, grouped by question).</p>
{_finding(m)}"""


def _heatmap(png: str, div: str) -> str:
    return f"""<h2>Probe AUC heatmap</h2>
<p class="muted">Rows: layers (0 = embedding output, the token-identity control). Columns: token positions.
Red boxes mark the best layer per position.</p>
<img alt="probe AUC heatmap" src="data:image/png;base64,{png}">
<h3>Interactive</h3>
{div}"""


def _cells(m: dict[str, Any]) -> str:
    rows = []
    for p, c in m["best_cells"].items():
        if c["auc"] is not None:
            ci = " – ".join(_num(v) for v in c["ci95"] or (None, None))
            rows.append((p, c["layer"], _num(c["auc"]), ci, _num(c["std"]), "yes" if c["informative"] else "no"))
    head = ("position", "layer", "AUC (mean)", "95 % interval", "fold std", "informative")
    return f"""<h2>Best cell per position</h2>
<p class="muted">Interval: 95 % Student-t interval of the mean over folds. Informative: the interval's lower end
clears both controls (relation only, and layer 0 at the same position).</p>
{_table(rows, head)}"""


def _controls(m: dict[str, Any]) -> str:
    c = m["controls"]
    rows = [
        ("relation only (metadata prior)", _num(c["relation_prior_auc"])),
        ("layer 0 at the exact-answer positions (best)", _num(c["layer0_exact_auc"])),
        ("layer 0 at last_q", _num(c["layer0_last_q_auc"])),
    ]
    acc = [(r, _num(a), m["n_by_relation"][r]) for r, a in m["accuracy_by_relation"].items()]
    return f"""<h2>Controls</h2>
{_table(rows, ("control", "AUC"))}
<h2>Accuracy by relation</h2>
{_table(acc, ("relation", "accuracy", "n"))}"""


def _location(m: dict[str, Any]) -> str:
    ea, mode = m["exact_answer_found"], html.escape(m["provenance"]["config"]["locator"])
    found_c, found_w, agree = (
        _num(ea["correct"], ".1%"),
        _num(ea["wrong"], ".1%"),
        _num(m["locator_agreement_correct"], ".1%"),
    )
    return f"""<h2>Exact-answer location</h2>
<p>Located by one class-blind rule for correct and wrong responses (mode: <code>{mode}</code>).
Found for <b>{found_c}</b> of correct and <b>{found_w}</b> of wrong responses;
{m["exact_answer_missing"]} responses without a located answer are left out of the exact-answer cells.
On correct responses the located span overlaps the gold alias span in <b>{agree}</b> of cases.</p>
{_table(sorted(m["locator_rules"].items()), ("rule", "responses"))}"""


def _maps(maps: list[dict[str, Any]]) -> str:
    return f"""<h2>One response, token by token</h2>
<p class="muted">Activity: the log-odds of <i>wrong</i> that each layer's probe (trained at the exact answer's last
token on this study's examples, these included) gives at every generated token; green leans correct, red wrong, one
colour scale per pair. Attention: what each token receives from the later tokens, mean over heads, 0-1 per layer.</p>
{_response_maps(maps)}"""


def _tail(m: dict[str, Any], examples: list[Example]) -> str:
    timings = [(k, _num(v, ".1f")) for k, v in m["timings_s"].items()]
    return f"""<h2>Examples</h2>
{_examples(examples)}
<h2>Timings</h2>
{_table(timings, ("stage", "seconds"))}
<h2>Provenance</h2>
<pre>{html.escape(json.dumps(m["provenance"], indent=2))}</pre>
</body></html>"""


def _no_probes(m: dict[str, Any]) -> str:
    acc = [(r, _num(a), m["n_by_relation"][r]) for r, a in m["accuracy_by_relation"].items()]
    return f"""<h2>Does the model know when it is wrong?</h2>
<p>{m["n_graded"]} questions graded; accuracy <b>{_num(m["accuracy"])}</b>.</p>
<div class="finding">{html.escape(m["no_probes"])}</div>
<h2>Accuracy by relation</h2>
{_table(acc, ("relation", "accuracy", "n"))}"""


def write_report(
    path: Path,
    metrics: dict[str, Any],
    examples: list[Example],
    heatmap_png: Path | None,
    heatmap_div: str,
    maps: list[dict[str, Any]] | None = None,
    extra: str = "",
) -> Path:
    """Write the report to ``path``; images and plotly.js are inlined so it opens offline.

    Without a heatmap (``metrics["no_probes"]`` says why) it gives the accuracy, the exact
    answers located and the graded answers. ``extra`` (HTML) follows the controls.
    """
    if heatmap_png is None:
        parts = [_head(metrics), _no_probes(metrics), extra, _location(metrics), _tail(metrics, examples)]
        return atomic.write_text(path, "\n".join(parts))
    png = _b64(heatmap_png, "the heatmap")
    parts = [_head(metrics), _question(metrics), _heatmap(png, heatmap_div), _cells(metrics), _controls(metrics)]
    parts += [extra, _location(metrics), _maps(maps or []), _tail(metrics, examples)]
    return atomic.write_text(path, "\n".join(parts))  # a failed write leaves the previous report, never half a one
