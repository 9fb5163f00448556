"""StudyConfig: defaults, then a YAML file, then CLI flags (each knob has all three)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.positions import VALID, check_position_names

# The 15 named positions of the reference study, in heatmap order.
DEFAULT_POSITIONS: tuple[str, ...] = VALID


@dataclass(frozen=True)
class StudyConfig:
    """Every knob of a study. Field docs become the CLI help."""

    model: str = field(default="smollm2", metadata={"help": "hub id, local folder, .gguf file, or 'smollm2' (bundled)"})
    dataset: str = field(default="world-facts", metadata={"help": "'world-facts' or a CSV/JSONL file"})
    n_questions: int = field(default=0, metadata={"help": "use this many questions (0 = all), sampled with the seed"})
    name: str = field(default="demo", metadata={"help": "run name: output goes to RUNS_DIR/NAME"})
    runs_dir: str = field(default="runs", metadata={"help": "folder that holds the runs"})
    batch_size: int = field(default=64, metadata={"help": "questions generated per batch"})
    max_new_tokens: int = field(default=32, metadata={"help": "hard cap on generated tokens"})
    stop: str = field(default="sentence", metadata={"help": "stop at end of first 'sentence', 'line', or 'none'"})
    system_prompt: str = field(
        default="Answer the question in one short sentence.",
        metadata={"help": "system prompt for chat models ('' = the template's own default)"},
    )
    positions: tuple[str, ...] = field(default=DEFAULT_POSITIONS, metadata={"help": "named token positions"})
    site: str = field(default="residual", metadata={"help": "activation site to extract"})
    store_dtype: str = field(default="bfloat16", metadata={"help": "bfloat16 or float32 on disk"})
    locator: str = field(
        default="class-blind",
        metadata={"help": "'class-blind' (same rule for both classes) or 'asymmetric' (alias for correct)"},
    )
    folds: int = field(default=5, metadata={"help": "cross-validation folds of the probe sweep"})
    probe_c: float = field(default=0.05, metadata={"help": "inverse L2 strength of the probes (sklearn's C)"})
    seed: int = field(default=0, metadata={"help": "seed for sampling, splits and probes"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})

    def validate(self) -> StudyConfig:
        """Check values that argparse cannot; return self for chaining."""
        check_position_names(self.positions)
        _choice("stop", self.stop, ("sentence", "line", "none"))
        _choice("store_dtype", self.store_dtype, ("bfloat16", "float32"))
        _choice("locator", self.locator, ("class-blind", "asymmetric"))
        _choice("site", self.site, ("residual",))
        for key in ("batch_size", "max_new_tokens", "folds"):
            if getattr(self, key) < 1 or (key == "folds" and self.folds < 2):
                raise HalluscanError(f"config: {key}={getattr(self, key)} is too small; give a larger value")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for provenance."""
        d = dataclasses.asdict(self)
        d["positions"] = list(self.positions)
        return d


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise HalluscanError(f"config: {key}={value!r} is not one of {', '.join(allowed)}")


def _field_type(f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(StudyConfig)
    return hints[f.name]


def load_yaml(path: str | Path) -> dict[str, Any]:
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
        raise HalluscanError(f"{p}: unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    if "positions" in data:
        data["positions"] = tuple(str(x) for x in data["positions"])
    return data


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per StudyConfig field; defaults are None so that YAML can sit between."""
    parser.add_argument("--config", help="YAML file of config keys (flags override it)")
    for f in dataclasses.fields(StudyConfig):
        flag = "--" + f.name.replace("_", "-")
        typ = _field_type(f)
        help_ = f.metadata.get("help", "") + f" (default: {f.default!r})"
        if typ is bool:
            parser.add_argument(flag, action="store_true", default=None, help=help_)
        elif f.name == "positions":
            parser.add_argument(flag, nargs="+", default=None, help=help_)
        else:
            parser.add_argument(flag, type=typ, default=None, help=help_)


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """Defaults, then --config YAML, then explicit flags."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_yaml(args.config))
    for f in dataclasses.fields(StudyConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = tuple(v) if f.name == "positions" else v
    return StudyConfig(**values).validate()
