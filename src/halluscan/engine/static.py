"""Decoding with a static KV cache: each step has one shape and can run as one CUDA graph.

The eager decoder (:class:`halluscan.engine.decode.EagerFeed`) lets finished rows leave the
batch: right on a CPU, where work is what costs. On a GPU a decode step is launch-bound (tens of
thousands of small kernels per batch), so :class:`StaticFeed` keeps every row, feeds the same
``[B, 1]`` shape each step into a preallocated cache, and runs the step through
``torch.compile(mode="reduce-overhead")``: CUDA graphs, a few launches per step. The capture
hooks are traced into the same graph (each writes its slice into the capture buffer), so
capturing adds copies to the graph, not syncs.

The cache and the compiled step are kept per model and shape (batch, cache length rounded up to
:data:`LENGTH_BUCKET`), so a study's batches reuse a few graphs.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch

from halluscan.engine.inputs import suffix_inputs
from halluscan.models.loading import LoadedModel
from halluscan.models.sites import cache_kwargs
from halluscan.records import GenerateOptions

LENGTH_BUCKET = 64  # cache lengths are rounded up to this, so batches share compiled graphs
# below this ``auto`` decodes eagerly (one answer: compiling costs more than it saves)
MIN_STATIC_BATCH = 8

# (model id, batch, length, device, dtype) -> its StaticCache; model id -> {compile mode: its
# compiled step}
_caches: dict[tuple[Any, ...], Any] = {}
_steps: dict[int, dict[str, Any]] = {}
_owner: list[Any] = []  # a weak reference to the model the caches belong to


def choose_decoder(opts: GenerateOptions, lm: LoadedModel, batch: int) -> str:
    """``opts.decoder`` made concrete.

    ``auto`` is ``compiled`` for a batch on one GPU, else ``eager``.
    """
    if opts.decoder != "auto":
        return opts.decoder
    on_gpu = lm.device.startswith("cuda") and not getattr(lm.model, "hf_device_map", None)
    return "compiled" if on_gpu and batch >= MIN_STATIC_BATCH else "eager"


def _cache(model: Any, batch: int, length: int) -> Any:
    """A zeroed StaticCache of ``batch`` rows x ``length`` tokens, reused by batches of that shape.

    Only the latest model's caches are kept: another model (or a new load) lets their memory go.
    """
    from transformers import StaticCache

    if _owner and _owner[0]() is not model:
        _caches.clear()
        _steps.clear()
    _owner[:] = [weakref.ref(model)]
    p = next(model.parameters())
    key = (id(model), batch, length, p.device, p.dtype)
    cache = _caches.get(key)
    if cache is None:
        if len(_caches) >= 16:  # many shapes: let the oldest ones' memory go
            _caches.clear()
        cache = _caches[key] = StaticCache(
            config=model.config, max_batch_size=batch, max_cache_len=length
        )
    else:
        with torch.inference_mode():  # its tensors were made under inference mode
            cache.reset()
    return cache


def _forward(model: Any, ids: Any, mask: Any, pos: Any, at: Any, cache: Any) -> torch.Tensor:
    """One decode step's next-token logits ``[B, V]``."""
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=pos,
        cache_position=at,
        **cache_kwargs(model, cache),
    )
    return out.logits[:, -1]


def compiled_step(
    model: Any, mode: str | None = "reduce-overhead", backend: str = "inductor"
) -> Any:
    """``_forward`` compiled for ``model`` (one per model and mode; ``backend`` is for tests)."""
    per_model = _steps.setdefault(id(model), {})
    key = f"{backend}:{mode}"
    if key not in per_model:
        import torch._dynamo

        # one graph per (batch, cache length) shape: allow a study's worth of them
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        per_model[key] = torch.compile(
            _forward, backend=backend, dynamic=False, mode=mode if backend == "inductor" else None
        )
    return per_model[key]


class StaticFeed:
    """Feeds a batch through a static KV cache.

    Every row, every step, one shape (``compiled``: one graph).
    """

    shrinks = False  # rows that finish stay in the batch (their tokens are fed and ignored)

    def __init__(
        self,
        lm: LoadedModel,
        prompts: Sequence[Sequence[int]],
        opts: GenerateOptions,
        step: Any = None,
    ):
        model = self.model = lm.model
        dev = next(model.parameters()).device
        ids, mask, pos, _ = suffix_inputs(prompts, 0, lm.tokenizer.pad_token_id)
        self.width = ids.shape[1]
        length = -(-(self.width + opts.max_new_tokens) // LENGTH_BUCKET) * LENGTH_BUCKET
        self.cache = _cache(model, len(prompts), length)
        # One mask for every step: the prompt's padding is 0, every later slot 1 (the causal rule
        # hides slots not yet written), so the shape never changes.
        self.mask = torch.cat([mask, mask.new_ones(len(prompts), length - self.width)], dim=1).to(
            dev
        )
        self.ids, self.pos = ids.to(dev), pos.to(dev)
        self.step_fn = step or _forward
        self.fed = 0

    def prefill(self) -> torch.Tensor:
        """Run the prompts eagerly (their length varies by batch); their last tokens' logits."""
        at = torch.arange(self.width, device=self.ids.device)
        out = self.model(
            input_ids=self.ids,
            attention_mask=self.mask,
            position_ids=self.pos,
            cache_position=at,
            logits_to_keep=1,
            **cache_kwargs(self.model, self.cache),
        )
        self.pos = self.pos[:, -1:]
        return out.logits[:, -1]

    def drop(self, sel: torch.Tensor) -> None:
        """Never called: a static batch keeps its rows."""
        raise AssertionError("a static batch keeps its rows")  # pragma: no cover (shrinks is False)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; the next logits."""
        self.fed += 1
        at = torch.tensor([self.width + self.fed - 1], device=tokens.device)
        return self.step_fn(
            self.model, tokens[:, None], self.mask, self.pos + self.fed, at, self.cache
        )
