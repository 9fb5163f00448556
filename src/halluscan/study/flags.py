"""A study's config from a YAML file and CLI flags: defaults, then ``--config`` YAML, then flags.

Every :class:`~halluscan.study.config.StudyConfig` field is a YAML key and a ``--flag``; the
flag is the key with dashes for underscores.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.records import JsonObject
from halluscan.study.config import StudyConfig, check_type


def _field_type(f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(StudyConfig)
    return hints[f.name]


def load_yaml(path: str | Path) -> JsonObject:
    """Read a YAML config file and check its keys against StudyConfig."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise HalluscanError(f"{p}: config file not found; check the path given to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise HalluscanError(f"{p}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from e
    if not isinstance(data, dict):
        raise HalluscanError(f"{p}: expected a mapping of config keys at the top level")
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HalluscanError(
            f"{p}: unknown config key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(known))}"
        )
    pos = data.get("positions")
    if isinstance(pos, list) and all(
        isinstance(x, str | int) and not isinstance(x, bool) for x in pos
    ):
        data["positions"] = tuple(str(x) for x in pos)  # an unquoted -1 is read as a number
    for key, value in data.items():
        check_type(key, value, f"{p}: config key")
    return data


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per StudyConfig field; defaults are None so that YAML can sit between.

    ``skip``: fields the command sets another way (``suite`` takes ``--datasets``).
    """
    parser.add_argument("--config", help="YAML file of config keys (flags override it)")
    for f in dataclasses.fields(StudyConfig):
        if f.metadata.get("yaml_only") or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = _field_type(f)
        help_ = f.metadata.get("help", "") + f" (default: {f.default!r})"
        if typ is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        elif f.name in ("positions", "sites"):
            parser.add_argument(flag, nargs="+", default=None, help=help_)
        elif f.name == "ray":  # a bare --ray starts a local instance
            parser.add_argument(
                flag, nargs="?", const="local", default=None, metavar="ADDRESS", help=help_
            )
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, type=typ, default=None, choices=choices, help=help_)


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """Defaults, then --config YAML, then explicit flags."""
    values: JsonObject = {}
    if getattr(args, "config", None):
        values.update(load_yaml(args.config))
    for f in dataclasses.fields(StudyConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return StudyConfig.from_dict(values)  # lists (YAML, nargs) become the config's tuples there


EXAMPLE_HEAD = """\
# A halluscan study: every config key, with its default and what it does. Use it with
#   halluscan run --config examples/study.yaml [flags, which override it]
# Keys use underscores where the flags use dashes (n_questions here, --n-questions there).
# Written by halluscan.study.flags.example_yaml(); a test keeps it in step with the config.
"""
PAIR_EXAMPLE = """\
# e.g. report_pairs: [[{question: "What is the capital of Australia?", answer: "Sydney."},
#                      {question: "What is the capital of Australia?"}]]
"""


def example_yaml() -> str:
    """A YAML file of every config key at its default, each under its help as a comment."""
    import textwrap

    import yaml

    parts = [EXAMPLE_HEAD]
    for f in dataclasses.fields(StudyConfig):
        help_ = f.metadata.get("help", "")
        if "choices" in f.metadata:
            help_ += "; one of: " + ", ".join(f.metadata["choices"])
        lines = textwrap.wrap(help_, 98)
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        value = yaml.safe_dump({f.name: default}, default_flow_style=True, width=10_000)
        extra = PAIR_EXAMPLE if f.name == "report_pairs" else ""
        parts.append("".join(f"# {x}\n" for x in lines) + extra + value.strip("{}\n") + "\n")
    return "\n".join(parts)
