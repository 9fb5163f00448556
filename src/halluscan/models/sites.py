"""Declarative table of hook sites per architecture family.

A family maps the generic sites (the block list, and inside a block the attention
and MLP modules) to module paths. ``residual`` at layer ``l`` is the output of block
``l`` (before the final norm); layer 0 is the input of block 0 (the embedding output,
scaled where the model scales it), so a model with L blocks has L + 1 residual layers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from halluscan.errors import HalluscanError

# The sites a hook can read (see :mod:`halluscan.models.hooks`); every other module names them
# through these constants. ``residual``: block l's output (layer 0: the embedding output);
# ``mlp``/``attn``: the MLP's and the attention's output in block l, before the residual add;
# ``attn_weights``: per head, from each selected query to every key; ``attn_received``: per key,
# the head-mean weight from the selected queries after it.
RESIDUAL, MLP, ATTN = "residual", "mlp", "attn"
ATTN_WEIGHTS, ATTN_RECEIVED = "attn_weights", "attn_received"
SITES = (RESIDUAL, MLP, ATTN, ATTN_WEIGHTS, ATTN_RECEIVED)
ATTN_SITES = frozenset({ATTN_WEIGHTS, ATTN_RECEIVED})  # read from the attention function, keys last
STUDY_SITES = (RESIDUAL, MLP, ATTN)  # one vector per layer and position: what a study probes


def first_layer(site: str) -> int:
    """The first layer of ``site``.

    0 for the residual stream (the embedding output), else block 1.
    """
    return 0 if site == RESIDUAL else 1


@dataclass(frozen=True)
class SiteTable:
    """Module paths for one architecture family."""

    blocks: str  # path from the model root to the ModuleList of blocks
    attn: str  # path inside a block to the attention module (output before the residual add)
    mlp: str  # path inside a block to the MLP module


_LLAMA_LIKE = SiteTable(blocks="model.layers", attn="self_attn", mlp="mlp")

SITE_TABLES: dict[str, SiteTable] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "gpt2": SiteTable(blocks="transformer.h", attn="attn", mlp="mlp"),
    "gpt_neox": SiteTable(blocks="gpt_neox.layers", attn="attention", mlp="mlp"),
}


def site_table(model: Any) -> SiteTable:
    """The site table for ``model``'s architecture, or a clear error naming what to extend."""
    arch = getattr(model.config, "model_type", "?")
    if arch not in SITE_TABLES:
        raise HalluscanError(
            f"architecture {arch!r} has no hook-site table; add an entry to SITE_TABLES in "
            f"halluscan/models/sites.py (known: {', '.join(sorted(SITE_TABLES))})"
        )
    return SITE_TABLES[arch]


def get_module(root: Any, path: str) -> Any:
    """Resolve a dotted module path (``model.layers``) from ``root``."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def blocks(model: Any) -> Any:
    """The ModuleList of transformer blocks."""
    return get_module(model, site_table(model).blocks)


def n_layers(model: Any) -> int:
    """Number of transformer blocks: the one layer count (residual layers run 0..n_layers)."""
    return len(blocks(model))


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword that passes a KV cache to ``model``'s forward, as a one-entry dict.

    ``cache`` in newer transformers, else ``past_key_values`` (newer versions warn about the old
    name on every call).
    """
    cls = type(model)
    if cls not in _CACHE_NAME:
        _CACHE_NAME[cls] = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
    return {_CACHE_NAME[cls]: cache}


_CACHE_NAME: dict[type, str] = {}  # model class -> its forward's name for the KV cache
