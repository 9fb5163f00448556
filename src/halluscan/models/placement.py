"""Where a model runs.

``auto`` made concrete, and a model too big for one GPU spread over several.
"""

from __future__ import annotations

import logging
from typing import Any

from halluscan.errors import HalluscanError

log = logging.getLogger(__name__)


DEVICES = ("auto", "cpu", "cuda")  # and cuda:N
DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` if it is auto, cpu, cuda or cuda:N, else a one-line error naming ``flag``."""
    if device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise HalluscanError(f"{flag} {device!r}: give auto, cpu, cuda or cuda:N")


def check_dtype(dtype: str, flag: str = "--dtype") -> str:
    """``dtype`` if it names a weight dtype, else a one-line error naming ``flag``."""
    if dtype in DTYPES:
        return dtype
    raise HalluscanError(f"{flag} {dtype!r}: give {', '.join(DTYPES[:-1])} or {DTYPES[-1]}")


def auto_dtype(device: str, dtype: str = "auto") -> str:
    """``dtype``, with ``auto`` made concrete: bfloat16 on a GPU, float32 on the CPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """``auto`` made concrete.

    CUDA + bfloat16 when a GPU is visible, else CPU + float32; checks CUDA requests.
    """
    import torch

    check_device(device)
    check_dtype(dtype)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HalluscanError(
                f"--device {device}: no CUDA GPU is visible here; use --device cpu (or auto)"
            )
        if _index(device) >= torch.cuda.device_count():
            raise HalluscanError(
                f"--device {device}: only {torch.cuda.device_count()} GPU(s) are visible "
                "(cuda:0..); pick one of them"
            )
    return device, auto_dtype(device, dtype)


def worker_placement(gpus_per_worker: float, dtype: str = "auto") -> tuple[str, str]:
    """Where a Ray worker puts the model.

    ``cuda`` (the GPU Ray gave it) when it reserves one, else ``cpu``.


    The driver cannot see a worker's devices, so this follows the worker's reservation, with the
    same ``auto`` dtype rule as :func:`resolve_device`.
    """
    device = "cuda" if gpus_per_worker > 0 else "cpu"
    return device, auto_dtype(device, check_dtype(dtype))


def spread(model: Any, device: str) -> bool:
    """Spread ``model`` over the visible GPUs when it does not fit on the first (True if it did)."""
    import torch

    if getattr(model, "hf_device_map", None):
        return True  # already placed by its loader
    if not device.startswith("cuda") or torch.cuda.device_count() < 2:
        return False
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    free = torch.cuda.mem_get_info(_index(device))[0]
    if size < 0.8 * free:
        return False
    from accelerate import dispatch_model, infer_auto_device_map

    log.warning(
        "the model (%.1f GB) does not fit on one GPU; spreading it over %d GPUs",
        size / 1e9,
        torch.cuda.device_count(),
    )
    dispatch_model(
        model,
        device_map=infer_auto_device_map(model, no_split_module_classes=model._no_split_modules),
    )
    return True


def _index(device: str) -> int:
    """The GPU index of ``cuda`` (0) or ``cuda:N``."""
    return int(device[5:]) if device[5:].isdigit() else 0


CPU_BATCH = 64  # the automatic batch size on a CPU
MAX_AUTO_BATCH = 256  # larger batches gain little decode speed and make each store chunk huge
# of the memory left after the weights: the rest is allocator slack and the CUDA graphs' pools
GPU_SHARE = 0.6


def auto_batch_size(model: Any, device: str, tokens: int, captured: int, capture_bytes: int) -> int:
    """A batch size for generation that fits the GPU's memory (``CPU_BATCH`` on a CPU).

    Per row: the KV cache of ``tokens`` (the longest prompt + new tokens), the capture buffer
    (``captured`` positions × every residual layer × hidden size × ``capture_bytes``), one layer's
    prefill activations and the logits. It reads the card's *total* memory, not its free memory,
    so that a study's batch size (part of its store's key) is the same on every run on that card:
    an 8B model in bfloat16 on an 80 GB card gets 256.
    """
    import torch

    if not device.startswith("cuda"):
        return CPU_BATCH
    cfg = model.config
    p = next(model.parameters())
    item = p.element_size()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    layers = cfg.num_hidden_layers
    kv = 2 * layers * kv_heads * head_dim * item * tokens
    capture = (layers + 1) * captured * cfg.hidden_size * capture_bytes
    work = (
        tokens
        * (
            3 * (getattr(cfg, "intermediate_size", None) or 4 * cfg.hidden_size)
            + 4 * cfg.hidden_size
        )
        * item
    )
    per_row = kv + capture + work + 2 * cfg.vocab_size * 4
    gpus = (
        range(torch.cuda.device_count())
        if getattr(model, "hf_device_map", None)
        else [_index(device)]
    )
    total = sum(torch.cuda.get_device_properties(i).total_memory for i in gpus)
    weights = sum(q.numel() * q.element_size() for q in model.parameters())
    fit = int(GPU_SHARE * (total - weights) // per_row)
    return max(1, min(MAX_AUTO_BATCH, fit // 8 * 8 or fit))
