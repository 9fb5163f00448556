"""Per-response figures: the activity surface (3D surface + heatmap) and the attention heatmap.

Each is drawn as a static PNG (matplotlib) and an interactive HTML file (plotly, inlined so
it opens offline). Several responses drawn together share one colour scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from halluscan import atomic
from halluscan.records import ScoreResult
from halluscan.report.literal import (
    LITERAL,
    hover_tokens,
    plotly_text,
    plotly_texts,
    plotly_wrap,
    short,
)

# Diverging: green = the probes lean "correct" (negative log-odds of wrong), red = "wrong".
ACTIVITY_CMAP = "RdYlGn_r"
ACTIVITY_SCALE = [
    [0.0, "#1a9850"],
    [0.25, "#a6d96a"],
    [0.5, "#f7f7f7"],
    [0.75, "#fdae61"],
    [1.0, "#d73027"],
]
ATTENTION_CMAP = "viridis"


def write_html(fig: Any, path: Path) -> Path:
    """Write a plotly figure as a self-contained HTML file (plotly.js inlined, works offline)."""
    return atomic.write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(" ".join(text.split()), width)) or "(empty)"


def shared_limit(results: list[ScoreResult], pct: float = 98.0) -> float:
    """One symmetric colour limit for several activity maps (so they are comparable).

    The ``pct`` percentile of |score| over all maps together: a few extreme cells saturate
    instead of washing out everything else.
    """
    vals = np.concatenate([np.abs(r.activity).ravel() for r in results])
    vals = vals[np.isfinite(vals)]
    return float(np.percentile(vals, pct)) if vals.size and np.percentile(vals, pct) > 0 else 1.0


def _scale_label(results: list[ScoreResult]) -> str:
    return (
        "z-score of log-odds (per layer, vs training set)"
        if results[0].standardised
        else "log-odds of wrong"
    )


# beyond this many tokens, axes show token indices (the HTML hover still names each token)
LABELLED = 150
MAX_WIDTH_IN = 40.0  # static figures stop growing with the response here
INDEX_WIDTH_IN = 18.0  # a long answer's activity map, drawn over token indices
MAX_WIDTH_PX = 3000  # and interactive ones here (they scroll and zoom)


def _caption(r: ScoreResult) -> str:
    bank = r.bank
    where = f"layer {r.verdict_layer}, {r.verdict_position}; {bank}-answer bank"
    return f"{r.verdict} · p(wrong) {r.p_wrong:.2f} ({where})"


def activity_figure(results: list[ScoreResult]) -> Any:
    """Plotly: per response a rotatable 3D surface (top) and the same map as a heatmap (bottom)."""
    from plotly.subplots import make_subplots

    lim = shared_limit(results)
    top = shared_limit(results, 100.0)  # z axes: every point shows, the same range on both
    n = len(results)
    titles = [  # a panel of 760 px holds about 85 characters a line; plotly never wraps
        f"{plotly_wrap('Q: ' + short(r.question, 170), 85)}<br>"
        f"{plotly_wrap('A: ' + short(r.response, 170), 85)}<br><b>{_caption(r)}</b>"
        for r in results
    ]
    fig = make_subplots(
        rows=2,
        cols=n,
        specs=[[{"type": "surface"}] * n, [{"type": "heatmap"}] * n],
        row_heights=[0.62, 0.38],
        vertical_spacing=0.08,
        horizontal_spacing=0.06,
        subplot_titles=titles + [""] * n,
    )
    label = _scale_label(results)
    for c, r in enumerate(results, start=1):
        _add_activity(fig, r, c, lim, top, label)
    fig.update_annotations(font_size=11)
    head = plotly_wrap(
        f"Activity: probe score per layer and generated token ({label}; shared colour scale "
        f"±{lim:.1f})",
        85 * n,
    )
    # room above the panels for the title's lines and the panel titles' lines (none overlap)
    top = 40 + 26 * (head.count("<br>") + 1) + 16 * max(t.count("<br>") + 1 for t in titles)
    title = {"text": head, "y": 0.955, "yanchor": "top"}  # below the toolbar, into the margin
    fig.update_layout(title=title, height=1000, width=min(760 * n, MAX_WIDTH_PX), margin={"t": top})
    return fig


def _add_activity(fig: Any, r: ScoreResult, c: int, lim: float, top: float, label: str) -> None:
    """Column ``c`` of the activity figure: ``r``'s surface over its heatmap.

    ``lim`` is the shared colour limit and ``top`` the z axes' range.
    """
    import plotly.graph_objects as go

    x = list(range(len(r.tokens)))
    common = {
        "z": r.activity,
        "x": x,
        "y": r.activity_layers,
        "cmin": -lim,
        "cmax": lim,
        "cmid": 0,
        "colorscale": ACTIVITY_SCALE,
        "customdata": hover_tokens(r.tokens, r.activity.shape),
    }
    hover = "token %{x} %{customdata}<br>layer %{y}<br>" + label + " %{z:.2f}<extra></extra>"
    fig.add_trace(
        go.Surface(
            **common,
            showscale=c == 1,
            hovertemplate=hover,
            colorbar={"title": label, "len": 0.55, "y": 0.72},
        ),
        row=1,
        col=c,
    )
    fig.add_trace(
        go.Heatmap(
            z=r.activity,
            x=x,
            y=r.activity_layers,
            zmin=-lim,
            zmax=lim,
            zmid=0,
            colorscale=ACTIVITY_SCALE,
            showscale=False,
            customdata=common["customdata"],
            hovertemplate=hover,
        ),
        row=2,
        col=c,
    )
    _activity_axes(fig, r, c, top)


def _activity_axes(fig: Any, r: ScoreResult, c: int, top: float) -> None:
    """Column ``c``'s axes: tokens under the heatmap (indices when long), the 3D scene's labels."""
    x = list(range(len(r.tokens)))
    if len(x) <= LABELLED:
        ticks2d = {
            "tickmode": "array",
            "tickvals": x,
            "ticktext": plotly_texts(r.tokens),
            "tickangle": -60,
        }
        fig.update_xaxes(**ticks2d, row=2, col=c)
    else:
        fig.update_xaxes(
            title_text=f"token index ({len(x)} tokens; hover names each)", row=2, col=c
        )
    fig.update_yaxes(title_text="layer", row=2, col=c)
    scene = "scene" if c == 1 else f"scene{c}"
    # 3D labels are plain text
    ticks = {"tickvals": x, "ticktext": list(r.tokens)} if len(x) <= 15 else {}
    fig.update_layout(
        {
            scene: {
                "xaxis": {"title": "token", **ticks},
                "yaxis": {"title": "layer"},
                "zaxis": {"title": "score", "range": [-top, top]},
                "camera": {"eye": {"x": -1.5, "y": -1.6, "z": 0.9}},
            }
        }
    )


def activity_png(results: list[ScoreResult], path: Path) -> Path:
    """Static version: 3D surface over heatmap per response, one shared diverging scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    lim, top = shared_limit(results), shared_limit(results, 100.0)
    norm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    n = len(results)
    # labelled tokens need about 0.28 in each; an index axis (a long answer) reads well at
    # INDEX_WIDTH_IN
    need = max(
        0.28 * len(r.tokens) + 3 if len(r.tokens) <= LABELLED else INDEX_WIDTH_IN for r in results
    )
    width = min(MAX_WIDTH_IN / n, max(7.0, need))
    fig = plt.figure(figsize=(width * n, 13))
    grid = fig.add_gridspec(2, n, height_ratios=[1.5, 1])  # the surface gets the room
    label = _scale_label(results)
    for c, r in enumerate(results):
        ax3 = fig.add_subplot(grid[0, c], projection="3d")
        xx, yy = np.meshgrid(np.arange(len(r.tokens)), r.activity_layers)
        ax3.plot_surface(
            xx, yy, r.activity, cmap=ACTIVITY_CMAP, norm=norm, linewidth=0, antialiased=True
        )
        ax3.set_zlim(-top, top)
        if len(r.tokens) <= LABELLED:  # the tokens on the axis, as under the heatmap
            ax3.set_xticks(range(len(r.tokens)), r.tokens, fontsize=7, rotation=30, **LITERAL)
        ax3.set_xlabel("generated token", labelpad=12)
        ax3.set_ylabel("layer")
        ax3.set_zlabel("score")
        ax3.view_init(elev=28, azim=-60)
        qa = f"Q: {_wrap(short(r.question), 60)}\nA: {_wrap(short(r.response), 60)}"
        ax3.set_title(f"{qa}\n{_caption(r)}", fontsize=9, **LITERAL)
        ax = fig.add_subplot(grid[1, c])
        ext = (-0.5, len(r.tokens) - 0.5, r.activity_layers[0] - 0.5, r.activity_layers[-1] + 0.5)
        im = ax.imshow(
            r.activity, cmap=ACTIVITY_CMAP, norm=norm, origin="lower", aspect="auto", extent=ext
        )
        if len(r.tokens) <= LABELLED:
            ax.set_xticks(
                range(len(r.tokens)), r.tokens, rotation=60, ha="right", fontsize=8, **LITERAL
            )
        else:
            ax.set_xlabel(f"token index ({len(r.tokens)} tokens)")
        ax.set_ylabel("layer")
        ax.axvline(r.verdict_token, color="black", lw=0.8, ls="--")
        fig.colorbar(im, ax=ax, fraction=0.035, pad=0.01).set_label(label, fontsize=8)
    head = (
        f"Activity per layer and generated token — {label}, shared colour scale ±{lim:.1f} (green: "
        "looks correct, red: looks wrong; dashed: verdict token)"
    )
    fig.suptitle(_wrap(head, int(width * n * 10)), fontsize=10)  # about 10 characters per inch fit
    fig.tight_layout()
    return atomic.write_png(path, fig, dpi=110)


def activity_files(
    results: list[ScoreResult], folder: str | Path, stem: str = "activity"
) -> list[Path]:
    """``<stem>.png`` and ``<stem>.html`` (interactive, plotly.js inlined)."""
    html = write_html(activity_figure(results), Path(folder) / f"{stem}.html")
    return [activity_png(results, Path(folder) / f"{stem}.png"), html]


ATTN_WRAP = 48  # tokens per row of the static attention figure
ATTN_ROWS = 4  # rows at most: a longer response is one panel over token indices


def attention_png(r: ScoreResult, path: Path) -> Path:
    """Layers (1..L, bottom to top) x the response's tokens; long responses wrap into rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(r.tokens)
    labelled = n <= ATTN_WRAP * ATTN_ROWS
    wrap = ATTN_WRAP if labelled else n
    rows = max(1, -(-n // wrap))
    per = min(n, ATTN_WRAP)
    size = (max(6.0, 0.3 * per + 2.5), 1.2 + rows * (0.13 * len(r.attention_layers) + 1.3))
    fig, axes = plt.subplots(rows, 1, figsize=size, squeeze=False, constrained_layout=True)
    im = None
    for k in range(rows):
        ax = axes[k, 0]
        a, b = k * wrap, min(n, (k + 1) * wrap)
        ext = (a - 0.5, b - 0.5, r.attention_layers[0] - 0.5, r.attention_layers[-1] + 0.5)
        # NaN: cannot receive
        cmap = matplotlib.colormaps[ATTENTION_CMAP].with_extremes(bad="#d9d9d9")
        data = np.ma.masked_invalid(r.attention[:, a:b])
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1, origin="lower", aspect="auto", extent=ext)
        if labelled:
            ax.set_xticks(
                range(a, b), r.tokens[a:b], rotation=60, ha="right", fontsize=8, **LITERAL
            )
        else:
            ax.set_xlabel(f"token index ({n} tokens)")
        ax.set_ylabel("layer")
    head = (
        f"attention received ({r.attention_query}, mean over heads), 0-1 per layer; grey: no query "
        "after it"
    )
    chars = max(40, int(size[0] * 9))  # what fits across the figure at this font size
    qa = f"Q: {_wrap(short(r.question), chars)}\nA: {_wrap(short(r.response), chars)}"
    axes[0, 0].set_title(f"{qa}\n{_wrap(head, chars)}", fontsize=9, **LITERAL)
    assert im is not None
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01).set_label(
        "attention received (0-1 per layer)"
    )
    return atomic.write_png(path, fig, dpi=110)


HOVER_ATTN = "token %{x} %{customdata}<br>layer %{y}<br>%{z:.2f}<extra></extra>"


def attention_figure(r: ScoreResult) -> Any:
    """Plotly heatmap of the attention each response token receives (scrolls sideways when long)."""
    import plotly.graph_objects as go

    x = list(range(len(r.tokens)))
    fig = go.Figure(
        go.Heatmap(
            z=r.attention,
            x=x,
            y=r.attention_layers,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            customdata=hover_tokens(r.tokens, r.attention.shape),
            colorbar={"title": "received<br>(0-1/layer)"},
            hovertemplate=HOVER_ATTN,
        )
    )
    if len(x) <= LABELLED:
        fig.update_xaxes(
            tickmode="array", tickvals=x, ticktext=plotly_texts(r.tokens), tickangle=-60
        )
    fig.update_xaxes(
        title="response token" if len(x) <= LABELLED else f"response token index ({len(x)} tokens)"
    )
    fig.update_yaxes(title="layer")
    fig.update_layout(
        title=f"Attention received ({r.attention_query}, mean over heads) — "
        f"{plotly_text(short(r.response, 80))}",
        width=min(MAX_WIDTH_PX, max(700, 26 * len(x) + 250)),
        height=520,
        margin={"b": 120},
    )
    return fig


def attention_files(r: ScoreResult, folder: str | Path, stem: str = "attention") -> list[Path]:
    """``<stem>.png`` and ``<stem>.html``."""
    html = write_html(attention_figure(r), Path(folder) / f"{stem}.html")
    out = [attention_png(r, Path(folder) / f"{stem}.png"), html]
    if r.question_attention is not None and r.question_tokens:
        out.append(question_png(r, Path(folder) / f"{stem}_question.png"))
    return out


def question_png(r: ScoreResult, path: Path) -> Path:
    """The question's tokens as keys: how much the answer's tokens attend to each, per block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert r.question_attention is not None
    n = len(r.question_tokens)
    size = (max(5.0, 0.45 * n + 2.5), 1.6 + 0.13 * len(r.attention_layers) + 1.0)
    fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    ext = (-0.5, n - 0.5, r.attention_layers[0] - 0.5, r.attention_layers[-1] + 0.5)
    cmap = matplotlib.colormaps[ATTENTION_CMAP].with_extremes(bad="#d9d9d9")
    data = np.ma.masked_invalid(r.question_attention)
    im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1, origin="lower", aspect="auto", extent=ext)
    ax.set_xticks(range(n), r.question_tokens, rotation=60, ha="right", fontsize=9, **LITERAL)
    ax.set_ylabel("layer")
    chars = max(40, int(size[0] * 9))
    head = "the answer's attention to the question's tokens (mean over its tokens and heads)"
    ax.set_title(f"A: {_wrap(short(r.response), chars)}\n{head}", fontsize=9, **LITERAL)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01).set_label("0-1 per layer")
    return atomic.write_png(path, fig, dpi=110)
