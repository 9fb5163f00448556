"""StudyConfig: every knob of a study, with its default and its checks.

Each knob is also a YAML key and a CLI flag (:mod:`halluscan.study.flags`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.models.placement import DTYPES, check_device
from halluscan.models.sites import RESIDUAL, STUDY_SITES
from halluscan.positions import VALID, check_position_names
from halluscan.records import CV, DEFAULT_C, DEFAULT_SYSTEM_PROMPT, GenerateOptions, JsonObject
from halluscan.text import short_name

# GenerateOptions.decoder; see halluscan.engine.static
DECODERS = ("auto", "eager", "static", "compiled")

# The 15 named positions of the reference study, in heatmap order.
DEFAULT_POSITIONS: tuple[str, ...] = VALID


def knob(default: Any, help_text: str, **more: Any) -> Any:
    """A config field: its default, the help of its CLI flag, and more metadata (``yaml_only``)."""
    return field(default=default, metadata={"help": help_text, **more})


@dataclass(frozen=True)
class StudyConfig:
    """Every knob of a study. Field docs become the CLI help."""

    model: str = knob("smollm2", "hub id, local folder, .gguf file, or 'smollm2' (bundled)")
    revision: str = knob("", "a hub id's branch, tag or commit ('' = main; hub ids only)")
    chat_template: str = knob(
        "auto",
        "auto: the tokenizer's chat template when it has one, else 'Q: ... A:'; on: require it; "
        "off: always 'Q: ... A:'",
        choices=("auto", "on", "off"),
    )
    dataset: str = knob(
        "world-facts",
        "'world-facts', an LLMsKnow set (movies, winobias, winogrande, mnli, math) or a CSV/JSONL"
        " file",
    )
    split: str = knob(
        "test",
        "which file of an LLMsKnow set: test (mnli: validation), or train",
        choices=("test", "validation", "train"),
    )
    data_dir: str = knob("", "folder of the LLMsKnow files ('' = $HALLUSCAN_DATA, else the cache)")
    n_questions: int = knob(0, "use this many questions (0 = all), sampled with the seed")
    name: str = knob(
        "",
        "run name: output goes to RUNS_DIR/NAME ('' = from the model and the dataset: 'demo' for "
        "the bundled model on world-facts, else e.g. 'smollm2-winobias')",
    )
    runs_dir: str = knob("runs", "folder that holds the runs")
    batch_size: int = knob(
        0, "questions generated per batch (0 = auto: 64 on CPU, from the GPU's memory on a GPU)"
    )
    max_new_tokens: int = knob(GenerateOptions.max_new_tokens, "hard cap on generated tokens")
    stop: str = knob(
        GenerateOptions.stop,
        "stop at the end of the first sentence or line, or only at the token cap",
        choices=("sentence", "line", "none"),
    )
    system_prompt: str = knob(
        DEFAULT_SYSTEM_PROMPT, "system prompt for chat models ('' = the template's own default)"
    )
    positions: tuple[str, ...] = knob(DEFAULT_POSITIONS, "named token positions")
    site: str = knob(RESIDUAL, "activation site to extract", choices=(RESIDUAL,))
    sites: tuple[str, ...] = knob(
        (RESIDUAL,),
        "sites to probe and compare: residual (always: the study's own, with its controls), mlp "
        "(the MLP output, the published study's site), attn (the attention output); e.g. "
        "residual,mlp,attn",
    )
    store_dtype: str = knob(
        "bfloat16", "the activations' dtype on disk", choices=("bfloat16", "float32")
    )
    locator: str = knob(
        "auto",
        "how the exact answer is found: 'self' (the model extracts it from its own answer), "
        "'class-blind' (one rule for both classes, by the answer's type), 'auto' ('self' when "
        "it succeeds on 90 percent of a pilot of answers, else 'class-blind') or 'asymmetric' (the "
        "gold alias for correct answers, as the published study did)",
        choices=("auto", "self", "class-blind", "asymmetric"),
    )
    keep_ambiguous: bool = knob(
        False,
        "keep answers whose grade is ambiguous (a negated or second candidate, no choice, a number "
        "from the question) in the probes; by default they are counted and left out",
    )
    folds: int = knob(5, "cross-validation folds of the probe sweep")
    probe_c: float = knob(DEFAULT_C, "inverse L2 strength of the probes (sklearn's C)")
    seed: int = knob(0, "seed for sampling, splits and probes")
    threads: int = knob(0, "torch CPU threads (0 = torch's default)")
    device: str = knob("auto", "auto (a GPU when there is one), cpu, cuda or cuda:N; see README")
    dtype: str = knob(
        "auto",
        "model weights: auto (bfloat16 on a GPU, float32 on CPU), float32, bfloat16, float16",
        choices=DTYPES,
    )
    decoder: str = knob(
        "auto",
        "auto (compiled static decoding on a GPU, eager on CPU), eager, static or compiled",
        choices=DECODERS,
    )
    probe_device: str = knob("", "where probes are fitted ('' = the study's device)")
    given_bank: bool = knob(
        True,
        "also train the given-answer bank (true and false given answers; `score --answer` uses it)",
    )
    token_bank: bool = knob(
        True,
        "also train the token-level bank (a probe per layer on every answer token from the exact "
        "answer on; the activity maps and the live page colour tokens with it)",
    )
    p_true: bool = knob(
        True,
        "the p(True) baseline: the model asked whether its answer is true, in both option orders "
        "(one extra forward per example and order: about half a study's time again on 2 CPU "
        "cores; --no-p-true skips it)",
    )
    samples: int = knob(
        0,
        "sampling-consistency baseline: this many answers per question at temperature 1 (0 = off)",
    )
    quiet: bool = knob(False, "no progress bars")
    ray: str = knob(
        "",
        "generate and sweep on Ray: a cluster address, or none for a local instance ('' = one "
        "process; needs halluscan[ray])",
    )
    workers: int = knob(2, "Ray workers (actors), each with its own copy of the model")
    cpus_per_worker: float = knob(1.0, "CPUs Ray reserves per worker (its torch threads)")
    gpus_per_worker: float = knob(0.0, "GPUs Ray reserves per worker (0: runs on CPU)")
    ray_write: str = knob(
        "object",
        "'object': chunks come back through Ray's object store, 'shared': workers write them into"
        " the store on a shared file system",
        choices=("object", "shared"),
    )
    report_pairs: tuple[Any, ...] = knob(
        (),
        "YAML only: pairs of {question, answer?, relation?} whose activity maps the report draws "
        "side by side (no answer: the model's own)",
        yaml_only=True,
    )

    def __post_init__(self) -> None:
        # a comma list ("residual,mlp") is several sites; residual is always probed: it holds the
        # study's controls (layer 0 is the tokens' identity)
        sites = tuple(x.strip() for s in self.sites for x in str(s).split(",") if x.strip())
        object.__setattr__(self, "sites", (RESIDUAL, *[s for s in sites if s != RESIDUAL]))
        if (
            not self.name
        ):  # the default name: from the model and the dataset, so runs do not collide
            object.__setattr__(self, "name", default_name(self.model, self.dataset))

    def validate(self) -> StudyConfig:
        """Check values that argparse cannot; return self for chaining."""
        for f in dataclasses.fields(self):
            check_type(f.name, getattr(self, f.name), "config:")
        check_position_names(self.positions)
        dup = sorted({p for p in self.positions if self.positions.count(p) > 1})
        if dup:
            raise HalluscanError(
                f"config: positions lists {', '.join(map(repr, dup))} more than once; give each "
                "once"
            )
        self._check_name()
        self._check_sites()
        self._check_numbers()
        for f in dataclasses.fields(self):
            if "choices" in f.metadata:
                _choice(f.name, getattr(self, f.name), f.metadata["choices"])
        self._check_ray()
        if not self.given_bank and any(e.get("answer") for p in self.report_pairs for e in p):
            raise HalluscanError(
                "config: report_pairs gives answers, which the given-answer bank reads, but "
                "given_bank is off; turn it on (drop --no-given-bank) or leave the answers out"
            )
        check_device(self.device, "config: device")
        if self.probe_device:
            check_device(self.probe_device, "config: probe_device")
        return self

    def _check_name(self) -> None:
        if not self.name.strip():
            raise HalluscanError(
                "config: name is empty; give a run name (a folder name under runs_dir)"
            )
        if (
            self.name != self.name.strip()
            or any(c in self.name for c in "/\\\0")
            or self.name in (".", "..")
        ):
            raise HalluscanError(
                f"config: name {self.name!r} is not a plain folder name; give a name without '/', "
                "'\\' or surrounding spaces (choose the parent folder with --runs-dir)"
            )

    def _check_sites(self) -> None:
        bad = [s for s in self.sites if s not in STUDY_SITES]
        if bad or len(set(self.sites)) != len(self.sites):
            raise HalluscanError(
                f"config: sites {', '.join(self.sites) or '(none)'}: give each of "
                f"{', '.join(STUDY_SITES)} at most once (e.g. --sites residual,mlp,attn)"
            )

    def _check_numbers(self) -> None:
        if self.n_questions < 0:
            raise HalluscanError(
                f"config: n_questions={self.n_questions} is negative; give 0 (all) or a positive "
                "count"
            )
        if not (math.isfinite(self.probe_c) and self.probe_c > 0):
            raise HalluscanError(
                f"config: probe_c={self.probe_c} must be a positive number (sklearn's C, e.g. 0.05)"
            )
        if self.threads < 0:
            raise HalluscanError(
                f"config: threads={self.threads} is negative; give 0 (torch's default) or more"
            )
        for key in ("batch_size", "max_new_tokens", "folds", "samples"):
            if getattr(self, key) < (0 if key in ("batch_size", "samples") else 1) or (
                key == "folds" and self.folds < 2
            ):
                raise HalluscanError(
                    f"config: {key}={getattr(self, key)} is too small; give a larger value"
                )

    def _check_ray(self) -> None:
        if self.ray and self.gpus_per_worker > 0 and self.batch_size == 0:
            raise HalluscanError(
                "config: --ray with --gpus-per-worker needs --batch-size (the driver cannot size a "
                "worker's GPU; 256 suits an 8B model in bfloat16 on an 80 GB card)"
            )
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise HalluscanError(
                f"config: workers={self.workers}, cpus_per_worker={self.cpus_per_worker}, "
                f"gpus_per_worker={self.gpus_per_worker}; give at least 1 worker, more than 0 CPUs "
                "and 0 or more GPUs per worker"
            )

    @property
    def cv(self) -> CV:
        """How this study's probes are cross-validated."""
        return CV(self.folds, self.seed, self.probe_c)

    def to_dict(self) -> JsonObject:
        """Plain-JSON form, for provenance."""
        d = dataclasses.asdict(self)
        d["positions"] = list(self.positions)
        d["sites"] = list(self.sites)
        return d

    @classmethod
    def from_dict(cls, d: JsonObject) -> StudyConfig:
        """The config a study recorded, in ``to_dict``'s form.

        Any subset of its keys reads (the rest default). Unknown keys are ignored, so that
        records written by a newer version still read.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        for key in ("positions", "sites"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if isinstance(values.get("report_pairs"), list):
            values["report_pairs"] = tuple(tuple(p) for p in values["report_pairs"])
        return cls(**values).validate()

    def generate_options(self, **overrides: Any) -> GenerateOptions:
        """How this study prompts and stops (``overrides``: ``temperature``, ``seed``, ...)."""
        base = GenerateOptions(
            max_new_tokens=self.max_new_tokens,
            stop=self.stop,
            system_prompt=self.system_prompt,
            batch_size=self.batch_size
            or GenerateOptions.batch_size,  # 0 (auto) before the model is known
            decoder=self.decoder,
        )
        return dataclasses.replace(base, **overrides)


DEMO = "demo"  # the run folder of the bundled model's default study


def default_name(model: str, dataset: str) -> str:
    """The run name a study gets unless given one: ``demo`` for the demo, else model-dataset."""
    if (model, dataset) == ("smollm2", "world-facts"):
        return DEMO
    return f"{short_name(model)}-{short_name(dataset)}"[:80]


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise HalluscanError(f"config: {key}={value!r} is not one of {', '.join(allowed)}")


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_type(key: str, value: Any, where: str) -> None:
    """Raise a clear error when ``value`` is not of the type of config key ``key``."""
    typ = typing.get_type_hints(StudyConfig)[key]
    if key in ("positions", "sites"):
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        want = (
            "a list of position names, e.g. [last_q, exact_answer_last, '-1']"
            if key == "positions"
            else "a list of sites, e.g. [residual, mlp, attn]"
        )
    elif key == "report_pairs":
        ok = isinstance(value, list | tuple) and all(_is_pair(v) for v in value)
        want = (
            "a list of pairs, each [{question: ..., answer: ...}, {question: ..., answer: ...}] "
            "(answer optional)"
        )
    elif typ is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        want = _TYPE_NAMES[float]
    else:
        ok = isinstance(value, typ) and (typ is bool or not isinstance(value, bool))
        want = _TYPE_NAMES[typ]
    if not ok:
        hint = (
            " (YAML reads 1e-2 as text; write 0.01 or 1.0e-2)"
            if typ is float and isinstance(value, str)
            else ""
        )
        raise HalluscanError(
            f"{where} {key} must be {want}, got {value!r} ({type(value).__name__}){hint}"
        )


def _is_pair(v: Any) -> bool:
    def entry(e: Any) -> bool:
        if not (
            isinstance(e, dict) and isinstance(e.get("question"), str) and e["question"].strip()
        ):
            return False
        return set(e) <= {"question", "answer", "relation"} and all(
            isinstance(e.get(k, ""), str) for k in ("answer", "relation")
        )

    return isinstance(v, list | tuple) and len(v) == 2 and all(entry(e) for e in v)
