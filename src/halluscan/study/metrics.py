"""The one owner of ``metrics.json`` (and ``suite.json``): typed records in, JSON out, and back.

Every result is a frozen record (:mod:`halluscan.analyses.results`); its JSON is its fields, in
order, with tuples as lists and non-finite floats as null. :func:`to_json` and :func:`from_json`
do that for any record, guided by its type hints, so a new result is one field on a record and
nothing here. ``schema_version`` says which layout a file has: version 1 (files written before
the version was recorded) has the same keys and reads as it is; a newer one is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from halluscan import atomic
from halluscan.analyses.results import Metrics
from halluscan.errors import HalluscanError
from halluscan.records import JsonObject
from halluscan.study.runs import RunDir

SCHEMA_VERSION = 3  # 1: before it recorded its version; 2: the same keys; 3: nested + controls
# Keys whose shape changed in a version: an older file's are dropped (read as absent).
CHANGED = {3: ("headline", "baselines")}
T = TypeVar("T")


def to_json(obj: Any) -> Any:
    """``obj`` as plain JSON.

    Records by field (``flatten`` and ``omit`` metadata honoured), tuples as lists.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: JsonObject = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit"):
                continue
            if f.metadata.get("flatten"):
                out.update(to_json(value))
            else:
                out[f.name] = to_json(value)
        return out
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return atomic.jsonable(obj)


def from_json(cls: type[T], data: Any, where: str = "") -> T:
    """The record ``cls`` read from its JSON ``data``.

    A missing key or a wrong type raises ``KeyError``/``TypeError``.
    """
    return typing.cast(T, _read(cls, data, where or cls.__name__))


def _read(tp: Any, data: Any, where: str) -> Any:
    """``data`` read as type ``tp`` (a record, a container, an optional, a number or text)."""
    if dataclasses.is_dataclass(tp):
        return _record(typing.cast(type, tp), data, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _read(inner[0], data, where) if len(inner) == 1 else data
    if origin is dict:
        _expect(isinstance(data, dict), where, "an object")
        return {k: _read(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if origin is list:
        _expect(isinstance(data, list), where, "a list")
        return [_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is tuple:
        _expect(isinstance(data, list), where, "a list")
        kinds = [args[0]] * len(data) if len(args) == 2 and args[1] is Ellipsis else list(args)
        _expect(len(kinds) == len(data), where, f"{len(kinds)} values")
        return tuple(
            _read(k, v, f"{where}[{i}]") for i, (k, v) in enumerate(zip(kinds, data, strict=True))
        )
    if tp is float:
        _expect(data is None or isinstance(data, int | float), where, "a number")
        # null is how a non-finite number is written
        return math.nan if data is None else float(data)
    if tp in (int, str, bool):
        _expect(isinstance(data, tp), where, tp.__name__)
    return data


def _record(cls: type, data: Any, where: str) -> Any:
    _expect(isinstance(data, dict), where, "an object")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("flatten"):
            values[f.name] = _read(hints[f.name], data, where)
        elif f.name in data:
            values[f.name] = _read(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{where}.{f.name}")
    return cls(**values)


def _expect(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise TypeError(f"{where} is not {what}")


def write(run: RunDir, metrics: Metrics) -> Path:
    """Write ``metrics.json`` of ``run`` (atomically), with the schema version."""
    return atomic.write_json(run.metrics, {**to_json(metrics), "schema_version": SCHEMA_VERSION})


def read(run: RunDir) -> Metrics:
    """The finished study's metrics.

    A one-line error for a missing, damaged, newer or older-layout file.
    """
    if not run.metrics.is_file():
        raise HalluscanError(
            f"{run.root}: no metrics.json; give a finished study folder (runs/NAME from `halluscan "
            "run`)"
        )
    redo = (
        f"run the study again (`halluscan run --name {run.root.name} --runs-dir {run.root.parent}`)"
    )
    try:
        data = json.loads(run.metrics.read_text())
    except (OSError, ValueError) as e:
        raise HalluscanError(f"{run.metrics}: not readable JSON ({e}); {redo}") from None
    version = data.get("schema_version", 1) if isinstance(data, dict) else None
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise HalluscanError(
            f"{run.metrics} has schema version {version}, newer than this halluscan reads "
            f"({SCHEMA_VERSION}); upgrade halluscan, or " + redo
        )
    for since, keys in CHANGED.items():
        if version < since:
            data = {k: v for k, v in data.items() if k not in keys}
    try:
        return from_json(Metrics, data, "metrics")
    except (KeyError, TypeError) as e:
        raise HalluscanError(f"{run.metrics} lacks or mistypes {e.args[0]}; {redo}") from None
