"""User text in figures, shown as written.

Plotly reads a subset of HTML in its strings, matplotlib reads ``$...$``.


Titles, tick labels and hover text carry questions, answers, tokens and file names. Plotly
draws ``<b>``, ``<a href>`` or ``<span style>`` in them as markup (a link in a scored
question would be live), and matplotlib draws text between two ``$`` as mathematics. Plotly's
2D text gets its markup characters as entities; its 3D axis labels are drawn as plain text
already (entities would show), and matplotlib texts take :data:`LITERAL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def plotly_text(text: str) -> str:
    """``text`` for a plotly title, tick label or hover value: its markup characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plotly_wrap(text: str, chars: int) -> str:
    """:func:`plotly_text` broken into lines of at most ``chars`` (plotly titles never wrap)."""
    import textwrap

    return "<br>".join(plotly_text(line) for line in textwrap.wrap(text, chars) or [""])


def plotly_texts(texts: Sequence[str]) -> list[str]:
    """:func:`plotly_text` of each."""
    return [plotly_text(t) for t in texts]


# Keyword arguments of a matplotlib text that holds user text: a "$" is a dollar sign, never
# mathematics.
LITERAL: dict[str, Any] = {"parse_math": False}


def short(text: str, limit: int = 400) -> str:
    """``text`` cut to ``limit`` characters for a title, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def hover_tokens(tokens: Sequence[str], shape: tuple[int, ...]) -> np.ndarray:
    """Escaped tokens broadcast over a ``[layer, token]`` map, for plotly's ``customdata``."""
    return np.broadcast_to(np.array(plotly_texts(tokens), dtype=object), shape)
