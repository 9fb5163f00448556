"""halluscan: find hallucinations in a language model's answers by reading its internal states.

Public API (nothing runs at import; heavy modules load on first use)::

    from halluscan import StudyConfig, run_study, load_model, load_dataset
    from halluscan import Scanner, ProbeBank, LinearProbe, Features, ActivationStore, Item,
    extract_to_store

The kernel (``records``, ``text``, ``atomic``, ``errors``, ``positions``, ``provenance``) sits at
the top; the wings are folders: ``data``, ``models``, ``grade``, ``store``, ``probes``,
``analyses``, ``engine``, ``scan``, ``report``, ``cluster``; ``study`` chains them and ``cli``
is the console face. See the README's "Layout of the code".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halluscan.errors import HalluscanError
from halluscan.study.config import DEFAULT_POSITIONS, StudyConfig

__version__ = "0.1.0"

_LAZY = {
    "run_study": "halluscan.study.pipeline",
    "load_model": "halluscan.models",
    "load_dataset": "halluscan.data",
    "build_world_facts": "halluscan.data",
    "Grader": "halluscan.grade",
    "LinearProbe": "halluscan.probes",
    "ProbeBank": "halluscan.probes",
    "Features": "halluscan.probes",
    "Scanner": "halluscan.scan",
    "ActivationStore": "halluscan.store",
    "Item": "halluscan.engine",
    "extract_to_store": "halluscan.engine",
    "capture_residual": "halluscan.models.hooks",
}

if TYPE_CHECKING:
    from halluscan.data import build_world_facts, load_dataset
    from halluscan.engine import Item, extract_to_store
    from halluscan.grade import Grader
    from halluscan.models import load_model
    from halluscan.models.hooks import capture_residual
    from halluscan.probes import Features, LinearProbe, ProbeBank
    from halluscan.scan import Scanner
    from halluscan.store import ActivationStore
    from halluscan.study.pipeline import run_study


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'halluscan' has no attribute {name!r}")


__all__ = ["DEFAULT_POSITIONS", "HalluscanError", "StudyConfig", *_LAZY]
