"""The report's section on sites: the residual stream beside the MLP and attention outputs."""

from __future__ import annotations

import html
from pathlib import Path

from halluscan.analyses.results import Metrics
from halluscan.models.sites import ATTN, MLP, RESIDUAL
from halluscan.report.page import b64, interval, num, table

NAMES = {
    RESIDUAL: "residual stream",
    MLP: "MLP output (the published study's site)",
    ATTN: "attention output",
}


def sites_section(m: Metrics, pngs: dict[str, Path]) -> str:
    """HTML for ``--sites`` (empty when the study probed the residual stream only).

    ``pngs``: each site's heatmap, the residual stream's first; all on the 0.5 to 1.0 scale.
    """
    if not m.sites or m.nested is None:
        return ""
    rows: list[tuple[str, ...]] = [
        (NAMES[RESIDUAL], _cell(m.nested), num(m.nested.auc), interval(m.nested.ci95), "—", "—")
    ]
    lines = []
    for s in m.sites:
        n = s.nested
        rows.append(
            (
                NAMES.get(s.site, s.site),
                _cell(n),
                num(n.auc) if n else "—",
                interval(n.ci95) if n else "—",
                num(s.gain, "+.3f") if s.gain is not None else "—",
                interval(s.gain_ci95),
            )
        )
        if s.gain is not None:
            word = "differs from" if s.differs else "does not differ from"
            lines.append(
                f"The {html.escape(NAMES.get(s.site, s.site))} {word} the residual stream: "
                f"{num(s.gain, '+.3f')} ({interval(s.gain_ci95)}), paired over the same outer "
                "folds at each site's own nested cell."
            )
    images = "".join(
        f'<figure style="display:inline-block;margin:0 8px"><img style="max-width:340px" '
        f'alt="{html.escape(site)} heatmap" src="data:image/png;base64,{b64(p, "the heatmap")}">'
        f"<figcaption>{html.escape(NAMES.get(site, site))}</figcaption></figure>"
        for site, p in pngs.items()
        if p.is_file()
    )
    head = ("site", "nested cell", "nested AUC", "95 % interval", "minus residual", "95 %")
    return f"""<h2>Sites: where in the block the signal is</h2>
<p>Each site was probed on the same answers and outer folds as the headline; each cell chosen by
its own nested cross-validation. The residual stream holds the controls (its layer 0 is the
tokens' identity); the other sites were read by one teacher-forced pass over the same answers.
The published study probed the MLP output and reported no significant difference between
sites.</p>
{table(rows, head)}
<p>{"<br>".join(lines)}</p>
<div>{images}</div>"""


def _cell(n: object) -> str:
    cell = getattr(n, "cell", None)
    return f"{cell.position} L{cell.layer}" if cell is not None else "—"


def tokens_section(m: Metrics) -> str:
    """HTML for the token-level bank: its AUC at each token offset from the exact answer."""
    t = m.token_bank
    if t is None:
        return ""
    rows = [
        (
            f"+{o.offset}",
            num(o.auc),
            interval(o.ci95),
            num(o.layer0_auc),
            num(o.gain, "+.3f") if o.gain is not None else "—",
            interval(o.gain_ci95),
            o.n,
            o.n_wrong,
        )
        for o in t.offsets
    ]
    head = ("offset", "AUC", "95 %", "layer 0 (token identity)", "gain", "95 %", "answers", "wrong")
    return f"""<h2>Token by token: the token-level bank</h2>
<p>A probe per layer trained on every answer token from the exact answer's first token on (up to
{t.max_offset} tokens; {t.n_tokens} tokens of {t.n_answers} answers), each labelled by its
answer's grade, every token of an answer in one fold. The activity maps colour tokens with it and
leave the tokens before the answer grey. Out-of-fold AUC at each offset, at the headline layer
{t.layer} (chosen before these scores existed); every offset pooled, {num(t.pooled_by_layer[0])}.
The probe at the exact answer's first token alone reads higher (the headline): one probe for every
offset trades some accuracy for a map whose every coloured cell means the same thing.</p>
{table(rows, head)}
<p>Intervals: bootstrap over questions; the gain over layer 0 is paired on the same tokens.</p>"""
