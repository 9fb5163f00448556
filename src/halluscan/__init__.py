"""halluscan: find hallucinations in a language model's answers by reading its internal states.

Public API (nothing runs at import; heavy modules load on first use)::

    from halluscan import StudyConfig, run_study, load_model, load_dataset
    from halluscan import Scanner, ProbeBank, LinearProbe, ActivationStore, Item, extract_to_store

The package's folders follow the stages: ``data`` and ``models`` (inputs), ``engine``
(decoding, extraction, the store), ``probes``, ``scan``, ``report``; ``pipeline`` chains them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halluscan.config import DEFAULT_POSITIONS, StudyConfig
from halluscan.errors import HalluscanError

__version__ = "0.1.0"

_LAZY = {
    "run_study": "halluscan.pipeline",
    "load_model": "halluscan.models",
    "load_dataset": "halluscan.data",
    "build_world_facts": "halluscan.data",
    "Grader": "halluscan.grade",
    "LinearProbe": "halluscan.probes",
    "ProbeBank": "halluscan.probes",
    "Scanner": "halluscan.scan",
    "ActivationStore": "halluscan.engine",
    "Item": "halluscan.engine",
    "extract_to_store": "halluscan.engine",
    "capture_residual": "halluscan.models.hooks",
}

if TYPE_CHECKING:
    from halluscan.data import build_world_facts, load_dataset
    from halluscan.engine import ActivationStore, Item, extract_to_store
    from halluscan.grade import Grader
    from halluscan.models import load_model
    from halluscan.models.hooks import capture_residual
    from halluscan.pipeline import run_study
    from halluscan.probes import LinearProbe, ProbeBank
    from halluscan.scan import Scanner


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'halluscan' has no attribute {name!r}")


__all__ = ["DEFAULT_POSITIONS", "HalluscanError", "StudyConfig", *_LAZY]
