"""Provenance records: what produced a result (model, data, config, versions, seed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from halluscan.records import JsonObject


@dataclass(frozen=True)
class ModelInfo:
    """Which model made a result: its id, where it came from, its revision, shape, dtype, device."""

    model_id: str
    source: str  # "hub", "local", "gguf"
    revision: str  # hub commit, or sha256 of the file / config for local models
    architecture: str
    n_layers: int
    hidden_size: int
    dtype: str
    device: str
    # how questions were put to it: "chat template" or "Q: ... A:" (older records: "")
    prompt_format: str = ""

    def to_json(self) -> JsonObject:
        """The record as provenance files keep it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DatasetInfo:
    """Which questions: the dataset's name, its content hash, and how many a study asked."""

    name: str
    sha256: str
    n_questions: int


@dataclass(frozen=True)
class Provenance:
    """What produced a store or a report: model, dataset, config, seed, versions and host."""

    halluscan_version: str
    created: str
    model: ModelInfo
    dataset: DatasetInfo
    config: JsonObject
    seed: int | None
    versions: dict[str, str]
    host: JsonObject  # machine and torch threads

    @classmethod
    def now(cls, model: ModelInfo, dataset: DatasetInfo, config: JsonObject) -> Provenance:
        """A record made now, with this process's versions and host."""
        import torch
        import transformers

        versions = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        }
        host = {"machine": platform.machine(), "threads": torch.get_num_threads()}
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(
            package_version(), created, model, dataset, config, config.get("seed"), versions, host
        )

    def to_json(self) -> JsonObject:
        """The record as ``provenance.json`` and the store's manifest keep it."""
        return dataclasses.asdict(self)


def package_version() -> str:
    """Installed halluscan version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("halluscan")
    except PackageNotFoundError:
        return "0+unknown"


def digest(obj: Any) -> str:
    """Stable SHA-256 of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def model_identity(model: JsonObject | ModelInfo) -> tuple[Any, ...]:
    """What makes two model provenance records the same model.

    A GGUF by its file hash, others by id and revision.
    """
    m = model.to_json() if isinstance(model, ModelInfo) else model
    if m.get("source") == "gguf":
        return ("gguf", m.get("revision"))
    return (m.get("model_id"), m.get("revision"))


def model_label(model: JsonObject | ModelInfo) -> str:
    """A model's name for a reader and a detector's adapter: its id, and a GGUF's file hash."""
    m = model.to_json() if isinstance(model, ModelInfo) else model
    ident = model_identity(m)
    return str(m.get("model_id")) + (f" [{ident[1]}]" if ident[0] == "gguf" else "")
