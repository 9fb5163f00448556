"""Where a model runs: ``auto`` made concrete, and a model too big for one GPU spread over several."""

from __future__ import annotations

import logging
from typing import Any

from halluscan.errors import HalluscanError

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """``auto`` made concrete: CUDA + bfloat16 when a GPU is visible, else CPU + float32; checks CUDA requests."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HalluscanError(f"--device {device}: no CUDA GPU is visible here; use --device cpu (or auto)")
        if _index(device) >= torch.cuda.device_count():
            raise HalluscanError(
                f"--device {device}: only {torch.cuda.device_count()} GPU(s) are visible (cuda:0..); pick one of them"
            )
    elif device != "cpu":
        raise HalluscanError(f"--device {device!r}: give auto, cpu, cuda or cuda:N")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise HalluscanError(f"--dtype {dtype!r}: give auto, float32, bfloat16 or float16")
    return device, dtype


def spread(model: Any, device: str) -> bool:
    """Spread ``model`` over the visible GPUs when it does not fit on the first one (True when it did)."""
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
        "the model (%.1f GB) does not fit on one GPU; spreading it over %d GPUs", size / 1e9, torch.cuda.device_count()
    )
    dispatch_model(model, device_map=infer_auto_device_map(model, no_split_module_classes=model._no_split_modules))
    return True


def _index(device: str) -> int:
    """The GPU index of ``cuda`` (0) or ``cuda:N``."""
    return int(device[5:]) if device[5:].isdigit() else 0
