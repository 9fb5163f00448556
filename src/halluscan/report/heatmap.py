"""The probe AUC heatmap (layer x position, Blues, 0.5-1.0), and the gain over layer 0.

A static PNG (matplotlib) and interactive HTML (plotly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from halluscan import atomic
from halluscan.report.literal import LITERAL, plotly_wrap

AUC_RANGE = (0.5, 1.0)
CMAP = "Blues"


def heatmap_png(
    auc: np.ndarray,
    layers: list[int],
    positions: list[str],
    path: Path,
    title: str,
    target: str = "a wrong answer",
) -> Path:
    """Layer (rows, 0 at the bottom) x position heatmap of AUC, Blues over 0.5-1.0.

    ``target`` says what is predicted. Red boxes mark each position's best layer.
    """
    scale = Scale(CMAP, *AUC_RANGE, f"probe ROC-AUC (predicting {target})", light=0.8)
    return _draw(auc, layers, positions, path, title, scale)


GAIN_CMAP = "RdBu"  # red: layer 0 reads more; blue: the layer adds to token identity


def gain_png(
    auc: np.ndarray, layers: list[int], positions: list[str], path: Path, title: str
) -> Path:
    """The gain of each cell over layer 0 at the same position (token identity), diverging.

    Where layer 0 already reads the label, a dark AUC cell is mostly the token itself; this
    map shows what the deeper layers add. Red boxes mark each position's largest gain.
    """
    gain = auc - auc[:1]  # row 0 is the first stored layer (layer 0 when it is stored)
    top = float(np.nanmax(np.abs(gain))) if not np.all(np.isnan(gain)) else 0.1
    top = max(0.05, np.ceil(top * 20) / 20)
    scale = Scale(GAIN_CMAP, -top, top, f"AUC minus layer {layers[0]}'s at the position")
    return _draw(gain, layers, positions, path, title, scale)


@dataclass(frozen=True)
class Scale:
    """A heatmap's colour map, its range, its label, and the value above which text is white."""

    cmap: str
    vmin: float
    vmax: float
    label: str
    light: float | None = None  # None: white text on both ends of a diverging map


def _draw(
    values: np.ndarray,
    layers: list[int],
    positions: list[str],
    path: Path,
    title: str,
    scale: Scale,
) -> Path:
    """Layer (rows, 0 at the bottom) x position map of ``values``; each column's best boxed."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(5.0, 1.0 + 0.62 * len(positions))  # a few positions still leave room for the title
    fig, ax = plt.subplots(figsize=(width, 1.6 + 0.27 * len(layers)), constrained_layout=True)
    im = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=scale.cmap,
        vmin=scale.vmin,
        vmax=scale.vmax,
        origin="lower",
        aspect="auto",
    )
    ax.set_xticks(range(len(positions)), positions, rotation=55, ha="right", fontsize=9)
    step = 1 if len(layers) <= 36 else max(1, len(layers) // 24)
    ax.set_yticks(range(0, len(layers), step), [str(x) for x in layers[::step]], fontsize=8)
    ax.set_xlabel("token position")
    ax.set_ylabel("layer (0 = embedding output)")
    ax.set_title("\n".join(textwrap.wrap(title, int(width * 10))), fontsize=10, **LITERAL)
    for j in range(values.shape[1]):
        col = values[:, j]
        if np.all(np.isnan(col)):
            continue
        i = int(np.nanargmax(col))
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#d62728", lw=1.4))
        v = col[i]
        dark = v > scale.light if scale.light is not None else abs(v) > 0.6 * scale.vmax
        ax.text(
            j,
            i,
            f"{v:.2f}",
            ha="center",
            va="center",
            fontsize=6.5,
            color="white" if dark else "black",
        )
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.set_label(scale.label)
    return atomic.write_png(path, fig, dpi=130)


def heatmap_figure(
    auc: np.ndarray,
    auc_std: np.ndarray,
    n: list[int],
    layers: list[int],
    positions: list[str],
    title: str,
) -> Any:
    """Interactive plotly heatmap with the fold spread and example count on hover."""
    import plotly.graph_objects as go

    custom = np.dstack(
        [np.nan_to_num(auc_std), np.broadcast_to(np.array(n, dtype=float), auc.shape)]
    )
    fig = go.Figure(
        go.Heatmap(
            z=auc,
            x=positions,
            y=layers,
            zmin=AUC_RANGE[0],
            zmax=AUC_RANGE[1],
            colorscale=CMAP,
            customdata=custom,
            colorbar={"title": "AUC"},
            hovertemplate=(
                "layer %{y}, %{x}<br>AUC %{z:.3f} ± %{customdata[0]:.3f} (fold std)<br>n = "
                "%{customdata[1]}<extra></extra>"
            ),
        )
    )
    head = plotly_wrap(title, 100)  # 900 px holds about 100 characters of title a line
    fig.update_layout(
        title=head,
        xaxis_title="token position",
        yaxis_title="layer (0 = embedding output)",
        height=max(500, 22 * len(layers) + 200),
        width=900,
        margin={"b": 140, "t": 60 + 18 * head.count("<br>")},
    )
    return fig
