"""Provenance records: what produced a result (model, data, config, versions, seed)."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from typing import Any


def package_version() -> str:
    """Installed halluscan version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("halluscan")
    except PackageNotFoundError:
        return "0+unknown"


def record(
    model: dict[str, Any], dataset: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any]:
    """A full provenance record for a store or a report."""
    import torch
    import transformers

    return {
        "halluscan_version": package_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "dataset": dataset,
        "config": config,
        "seed": config.get("seed"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "host": {"machine": platform.machine(), "threads": torch.get_num_threads()},
    }


def digest(obj: Any) -> str:
    """Stable SHA-256 of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def model_identity(model: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two model provenance records the same model.

    A GGUF by its file hash, others by id and revision.
    """
    if model.get("source") == "gguf":
        return ("gguf", model.get("revision"))
    return (model.get("model_id"), model.get("revision"))
