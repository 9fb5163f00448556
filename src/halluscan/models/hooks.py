"""Hooks that capture activations at selected token positions, for any site in the site table.

Sites: ``residual`` (layer 0 = block 0's input, layer l = block l's output), ``mlp`` (the MLP
module's output in block l), ``attn`` (the attention module's output before the residual
add), ``attn_weights`` (softmax weights per head from each selected query position to
every key), and ``attn_received`` (per key, the head-mean weight summed over the selected
query positions after it: what a key receives, computed in blocks of query rows so that
memory stays linear in the sequence length). Inside a hook we detach, gather only the
selected positions, optionally reduce them (a probe's log-odds), and copy them, cast, into
one buffer per site on the device; the whole buffer reaches the host in one copy
(:func:`to_host`, :func:`to_host_async`). Hooks are always removed on exit.

Attention weights are read without changing the attention kernel: the model's own attention
function (sdpa, eager, ...) still computes the output that flows on, and a thin wrapper
around it recomputes ``softmax(q k^T * scale + mask)`` for the selected query rows only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from halluscan.errors import HalluscanError
from halluscan.models.sites import (
    ATTN,
    ATTN_SITES,
    ATTN_WEIGHTS,
    MLP,
    RESIDUAL,
    SITES,
    blocks,
    first_layer,
    get_module,
    n_layers,
    site_table,
)

# select(x [B, T, ...]) -> [B, K, ...]: which positions to keep from one forward call.
Selector = Callable[[torch.Tensor], torch.Tensor]
QUERY_BLOCK = 128  # query rows per step of attn_received


class StopForward(Exception):
    """Raised inside the last needed hook to skip the remaining layers."""


# reduce(layer, x [B, K, ...]) -> [B, K, ...']: what to keep of a site's selected positions (e.g. a
# probe's logit).
Reducer = Callable[[int, torch.Tensor], torch.Tensor]


class Capture:
    """Holds what the latest forward call captured: per site one ``[B, layer, K, ...]`` buffer.

    Each hook copies its slice into the site's buffer, preallocated on the first hook's device
    (the first layer's; the model's device) in the capture dtype; a layer on another GPU copies
    across without waiting. Nothing syncs until :meth:`stacked` moves the whole buffer to the
    host in one copy (through pinned memory on a GPU), or hands it over on the device.
    """

    def __init__(
        self,
        sites: dict[str, list[int]],
        select: Selector,
        dtype: torch.dtype,
        stop_early: bool,
        reduce: dict[str, Reducer] | None = None,
    ):
        self.sites = {s: sorted(ls) for s, ls in sites.items()}
        self.slot = {s: {layer: i for i, layer in enumerate(ls)} for s, ls in self.sites.items()}
        self.select = select
        self.reduce = reduce or {}
        self.dtype = dtype
        self.stop_early = stop_early
        self.last_layer = max((max(ls) for ls in self.sites.values() if ls), default=0)
        self.bufs: dict[str, torch.Tensor] = {}
        self.filled: dict[str, set[int]] = {s: set() for s in self.sites}
        self.paused = False  # True while another capture borrows the model (nothing is kept)

    def keep(self, site: str, layer: int, x: torch.Tensor, selected: bool = False) -> None:
        """Copy the selected positions of ``x`` [B, T, ...] into the site's buffer.

        ``selected``: the selection is already done.

        """
        if self.paused:
            return
        x = x.detach() if selected else self.select(x.detach())
        if site in self.reduce:
            x = self.reduce[site](layer, x)
        buf = self.bufs.get(site)
        if buf is None or buf.shape[0] != x.shape[0] or buf.shape[2:] != x.shape[1:]:
            shape = (x.shape[0], len(self.sites[site]), *x.shape[1:])
            buf = self.bufs[site] = torch.empty(shape, dtype=self.dtype, device=x.device)
            self.filled[site] = set()
        # casts, and crosses devices without a sync
        buf[:, self.slot[site][layer]].copy_(x, non_blocking=True)
        self.filled[site].add(layer)

    def stacked(self, site: str = RESIDUAL, host: bool = True) -> torch.Tensor:
        """``[B, layer, K, ...]`` over the captured layers of ``site``, in order.

        Clears that buffer.


        ``host=False`` leaves it on the device (for a caller that gathers more before one copy).
        """
        missing = [layer for layer in self.sites[site] if layer not in self.filled[site]]
        if missing or site not in self.bufs:
            raise RuntimeError(
                f"capture: layers {missing} of site {site!r} were not captured by the forward pass"
            )
        buf = self.bufs.pop(site)
        self.filled[site] = set()
        return to_host(buf) if host else buf

    @property
    def layers_seen(self) -> list[int]:
        """Residual layers captured so far by the current forward pass."""
        return sorted(self.filled.get(RESIDUAL, set()))


def to_host(x: torch.Tensor) -> torch.Tensor:
    """``x`` on the CPU.

    Itself there, else one non-blocking copy into pinned memory and one sync.
    """
    host, ready = to_host_async(x)
    if ready is not None:
        ready.synchronize()  # the one wait, for the whole batch
    return host


def to_host_async(x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Start copying ``x`` to pinned host memory on a side stream.

    The host tensor and its ready event.


    On the CPU ``x`` itself comes back, with no event. Read the tensor only after
    ``event.synchronize()``; meanwhile the device goes on with the next batch.
    """
    if x.device.type == "cpu":
        return x, None
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    side = _copy_streams.setdefault(x.device, torch.cuda.Stream(x.device))
    side.wait_stream(torch.cuda.current_stream(x.device))  # x is complete before it is copied
    with torch.cuda.stream(side):
        host.copy_(x, non_blocking=True)
        x.record_stream(side)  # x's memory is not reused before the copy has read it
        ready = torch.cuda.Event()
        ready.record(side)
    return host, ready


_copy_streams: dict[torch.device, Any] = {}  # one copy stream per GPU


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture(
    model: Any,
    sites: dict[str, list[int]] | None = None,
    select: Selector | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    stop_early: bool = False,
    reduce: dict[str, Reducer] | None = None,
) -> Iterator[Capture]:
    """Capture ``sites`` ({site: layers}) during forward calls inside the ``with`` block.

    ``reduce[site]`` (optional) maps a layer's selected positions to what is kept of them, on the
    model's device, before the copy (so a long sequence keeps ``[B, K]`` per layer, not ``[B, K,
    d]``).

    Residual layers run 0..L; mlp, attn and attn_weights layers run 1..L (block l).
    ``stop_early`` raises :class:`StopForward` once the block of the last layer asked for (of
    any site) has run, so later blocks, the final norm and the LM head are skipped.
    """
    n = n_layers(model)
    sites = {RESIDUAL: list(range(n + 1))} if sites is None else sites
    for site, layers in sites.items():
        lo = first_layer(site)
        if site not in SITES:
            raise HalluscanError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")
        bad = [x for x in layers if not lo <= x <= n]
        if bad:
            raise HalluscanError(f"site {site!r} has no layer {bad[0]}; valid layers are {lo}..{n}")
    cap = Capture(sites, select or (lambda h: h), dtype, stop_early, reduce)
    handles: list[Any] = []
    try:
        _register(model, cap, sites, handles)
        mods, table = blocks(model), site_table(model)
        attn = {
            s: {get_module(mods[x - 1], table.attn): x for x in sites.get(s, [])}
            for s in ATTN_SITES
        }
        with _attention_weights(model, cap, attn):
            yield cap
    finally:
        for h in handles:
            h.remove()


def _register(model: Any, cap: Capture, sites: dict[str, list[int]], handles: list[Any]) -> None:
    """Register the hooks that feed ``cap`` (and the one that stops the forward), into ``handles``.

    Each handle is added as soon as its hook is registered, so the caller removes every one,
    even when a later registration fails.
    """
    mods, table = blocks(model), site_table(model)

    def out_hook(site: str, layer: int) -> Callable[..., None]:
        return lambda _m, _a, output: cap.keep(site, layer, _first(output))

    def pre_hook(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cap.keep(RESIDUAL, 0, args[0] if args else kwargs["hidden_states"])

    for layer in sites.get(RESIDUAL, []):
        if layer == 0:
            handles.append(mods[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        else:
            handles.append(mods[layer - 1].register_forward_hook(out_hook(RESIDUAL, layer)))
    for site, path in ((MLP, table.mlp), (ATTN, table.attn)):
        for layer in sites.get(site, []):
            handles.append(
                get_module(mods[layer - 1], path).register_forward_hook(out_hook(site, layer))
            )
    if cap.stop_early:  # registered last, so it runs after the other hooks of that block

        def stop(*_a: Any) -> None:
            raise StopForward

        last = cap.last_layer
        handles.append(
            mods[0].register_forward_pre_hook(stop)
            if last == 0
            else mods[last - 1].register_forward_hook(stop)
        )


@contextmanager
def capture_residual(
    model: Any,
    layers: list[int] | None = None,
    select: Selector | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    stop_early: bool = False,
) -> Iterator[Capture]:
    """Capture the residual stream only (0 = embedding output, l = block l's output)."""
    layers = list(range(n_layers(model) + 1)) if layers is None else layers
    with capture(model, {RESIDUAL: layers}, select, dtype=dtype, stop_early=stop_early) as cap:
        yield cap


@contextmanager
def _attention_weights(
    model: Any, cap: Capture, modules: dict[str, dict[Any, int]]
) -> Iterator[None]:
    """Wrap the model's attention function so that it also records ``modules[site]``.

    ``modules[site]`` maps an attention module to its layer.

    """
    if not any(modules.values()):
        yield
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    had_local = impl in ALL_ATTENTION_FUNCTIONS._local_mapping
    previous: Callable[..., Any] | None = ALL_ATTENTION_FUNCTIONS._local_mapping.get(impl)
    # typed as `function` upstream
    registered: Any = ALL_ATTENTION_FUNCTIONS._global_mapping.get(impl)

    def wrapper(
        module: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: Any,
        *a: Any,
        **kw: Any,
    ) -> Any:
        base = (
            previous or registered or sys.modules[type(module).__module__].eager_attention_forward
        )
        out = base(module, query, key, value, mask, *a, **kw)
        sel = None
        for site, layer_of in modules.items():
            layer = layer_of.get(module)
            if layer is None:
                continue
            if sel is None:
                rows = torch.arange(query.shape[2], device=query.device)[None, :, None].expand(
                    query.shape[0], -1, 1
                )
                sel = cap.select(rows)[:, :, 0]  # [B, K] query rows chosen by the selector
            take = _weights if site == ATTN_WEIGHTS else _received
            cap.keep(site, layer, take(query, key, mask, sel, kw), selected=True)
        return out

    ALL_ATTENTION_FUNCTIONS[impl] = wrapper
    try:
        yield
    finally:
        if had_local:
            ALL_ATTENTION_FUNCTIONS[impl] = previous
        else:
            del ALL_ATTENTION_FUNCTIONS[impl]


def _weights(
    query: torch.Tensor, key: torch.Tensor, mask: Any, sel: torch.Tensor, kw: dict[str, Any]
) -> torch.Tensor:
    """Softmax weights [B, K, head, S] of query rows ``sel`` [B, K].

    ``query`` is [B, H, T, D] and ``key`` [B, H', S, D].
    """
    b, h, t, d = query.shape
    s = key.shape[2]
    key = key.repeat_interleave(h // key.shape[1], dim=1) if key.shape[1] != h else key
    scale = kw.get("scaling") or d**-0.5
    q = query.transpose(1, 2)  # [B, T, H, D]
    idx = sel[:, :, None, None]
    qs = torch.gather(q, 1, idx.expand(-1, -1, h, d))  # [B, K, H, D]
    if mask is None:  # causal, with the cache offset: query row r sees keys up to s - t + r
        ms = (
            torch.arange(s, device=query.device)[None, None, None, :]
            <= (s - t + sel)[:, :, None, None]
        )
    else:
        m = mask[..., :s].expand(b, 1, t, s).transpose(1, 2)  # [B, T, 1, S]
        ms = torch.gather(m, 1, idx.expand(-1, -1, 1, s))  # [B, K, 1, S]
    scores = torch.einsum("bkhd,bhsd->bkhs", qs.float(), key.float()) * scale
    if kw.get("softcap"):
        scores = torch.tanh(scores / kw["softcap"]) * kw["softcap"]
    scores = (
        scores.masked_fill(~ms, float("-inf")) if ms.dtype == torch.bool else scores + ms.float()
    )
    return torch.softmax(scores, dim=-1)


def _received(
    query: torch.Tensor, key: torch.Tensor, mask: Any, sel: torch.Tensor, kw: dict[str, Any]
) -> torch.Tensor:
    """[B, S]: per key, the head-mean weight summed over the query rows ``sel`` that come after it.

    Rows are taken :data:`QUERY_BLOCK` at a time, so memory is linear in S. A row repeated
    right after itself (the padding of a shorter row in a batch) counts once.
    """
    b, _, t, _ = query.shape
    s = key.shape[2]
    first = torch.ones_like(sel, dtype=torch.bool)
    first[:, 1:] = sel[:, 1:] != sel[:, :-1]
    keys = torch.arange(s, device=query.device)
    out = torch.zeros(b, s, device=query.device)
    for a in range(0, sel.shape[1], QUERY_BLOCK):
        rows = sel[:, a : a + QUERY_BLOCK]
        w = _weights(query, key, mask, rows, kw).mean(dim=2)  # [B, k, S]
        # the key comes strictly before the query
        later = keys[None, None, :] < (s - t + rows)[:, :, None]
        out += (w * (later & first[:, a : a + QUERY_BLOCK, None])).sum(dim=1)
    return out
