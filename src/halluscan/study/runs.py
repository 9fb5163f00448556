"""The run folder.

The one module that knows the layout of ``RUNS_DIR/NAME`` and reads a finished run back.


A study writes into its run folder::

    store/              the activation store (see :mod:`halluscan.store.store`)
    probes/             the probe bank at exact_answer_last (see :mod:`halluscan.probes.bank`)
    responses/          activity and attention figures of the report's pairs
    metrics.json        the numbers; provenance.json: what made them
    report.html         the report; heatmap.png, heatmap.html: the probe AUC heatmap
    answer_choice.json  written by ``halluscan choose``
    store_given/        activations of the given true and false answers; probes_given/: their bank
    heatmap_given.png   the given-answer sweep
    store_sites/        the other sites' activations (--sites mlp attn); heatmap_SITE.png each
    samples.json        the sampled answers of ``--samples`` (reused by ``halluscan choose``)
    suite.json          a suite's results, with suite.html (its studies are subfolders)
    .lock               held (flock) by the one process that works on the folder

It also owns what ties a store to its study (the key and the layout) and what a probe bank
records of its study, so that scoring can reuse the study's prompt and stop rule.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from halluscan import atomic, provenance
from halluscan.errors import HalluscanError
from halluscan.models.sites import first_layer
from halluscan.positions import BANK_POSITION
from halluscan.provenance import ModelInfo
from halluscan.records import (
    BANK_SETTINGS,
    RUN_BANKS,
    TOKEN_BANK,
    Example,
    Generation,
    JsonObject,
)
from halluscan.store.layout import Layout, SiteLayout
from halluscan.study.config import StudyConfig

if TYPE_CHECKING:
    from halluscan.probes.sweep import SweepResult
    from halluscan.store import ActivationStore

RUNS_DIR = StudyConfig.runs_dir
# Config fields that change what goes into the store (the rest only change the analysis).
STORE_FIELDS = (
    "model",
    "dataset",
    "n_questions",
    "batch_size",  # a batch is a chunk, and padding within a batch can change greedy answers
    "max_new_tokens",
    "stop",
    "system_prompt",
    "positions",
    "site",
    "store_dtype",
    "locator",
    "seed",
)


# What a study writes into its run folder: RunDir attribute -> path inside the folder.
LAYOUT = {
    "store": "store",
    "probes": RUN_BANKS["own"],
    "responses": "responses",
    "metrics": "metrics.json",
    "provenance": "provenance.json",
    "report": "report.html",
    "heatmap_png": "heatmap.png",
    "heatmap_gain_png": "heatmap_gain.png",
    "heatmap_html": "heatmap.html",
    "answer_choice": "answer_choice.json",
    "lock": ".lock",
    "store_given": "store_given",
    "probes_given": RUN_BANKS["given"],
    "probes_tokens": TOKEN_BANK,
    "heatmap_given_png": "heatmap_given.png",
    "store_sites": "store_sites",
    "suite_json": "suite.json",
    "samples": "samples.json",
    "suite_html": "suite.html",
}


@dataclass(frozen=True)
class RunDir:
    """A run folder and the paths of what a study writes into it."""

    root: Path
    store: Path = field(init=False, repr=False)  # the activation store
    probes: Path = field(init=False, repr=False)  # the probe bank (exact_answer_last)
    responses: Path = field(init=False, repr=False)  # per-response figures
    metrics: Path = field(init=False, repr=False)  # the study's numbers
    # what made them: model, dataset, config, versions, seed
    provenance: Path = field(init=False, repr=False)
    report: Path = field(init=False, repr=False)  # the report
    heatmap_png: Path = field(init=False, repr=False)  # the probe AUC heatmap
    heatmap_gain_png: Path = field(init=False, repr=False)  # its gain over layer 0
    heatmap_html: Path = field(init=False, repr=False)  # the interactive heatmap
    answer_choice: Path = field(init=False, repr=False)  # what `halluscan choose` found
    lock: Path = field(init=False, repr=False)  # the lock file (see ``hold``)
    # activations of the given (true/false) answers
    store_given: Path = field(init=False, repr=False)
    probes_given: Path = field(init=False, repr=False)  # the given-answer probe bank
    probes_tokens: Path = field(init=False, repr=False)  # the token-level bank
    heatmap_given_png: Path = field(init=False, repr=False)  # the given-answer sweep's heatmap
    store_sites: Path = field(init=False, repr=False)  # the other sites' activations
    # a suite's results (its studies are subfolders)
    suite_json: Path = field(init=False, repr=False)
    # the study's sampled answers (--samples), for answer choice
    samples: Path = field(init=False, repr=False)
    suite_html: Path = field(init=False, repr=False)  # and its page

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        for name, rel in LAYOUT.items():
            object.__setattr__(self, name, self.root / rel)

    def heatmap_site_png(self, site: str) -> Path:
        """The heatmap of another site than the residual stream."""
        return self.root / f"heatmap_{site}.png"

    @classmethod
    def named(cls, name: str, runs_dir: str | Path = RUNS_DIR) -> RunDir:
        """The run folder called ``name`` under ``runs_dir``."""
        return cls(Path(runs_dir) / name)

    def open_store(self) -> ActivationStore:
        """The run's store (``root`` may also be a store folder itself)."""
        from halluscan.store import ActivationStore

        return ActivationStore.open(self.store if self.store.is_dir() else self.root)

    def has_metrics(self) -> bool:
        """Whether the study finished (wrote its metrics)."""
        return self.metrics.is_file()

    @contextmanager
    def hold(self, what: str, create: bool = True) -> Iterator[None]:
        """Hold the folder's lock for the ``with`` block.

        A second process is refused with a one-line error.


        The lock is an ``flock`` on ``.lock``: the kernel drops it when its process dies, so a run
        killed with SIGKILL never blocks the re-run that resumes it. The file records who holds it.
        ``create=False``: the folder must exist already (commands that read a finished study).
        """
        import fcntl

        if not create and not self.root.is_dir():
            raise HalluscanError(
                f"{self.root}: no such run folder; give a finished study folder (runs/NAME)"
            )
        top = self.root  # the highest folder this call creates, removed again if left empty
        while not top.parent.exists():
            top = top.parent
        created = not self.root.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise HalluscanError(
                f"could not create {self.lock}: {e.strerror or e}; choose a writable --runs-dir"
            ) from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HalluscanError(
                    f"{self.root} is in use by {_holder(fd)}; wait for it to finish, or use "
                    "another --name"
                ) from None
            os.ftruncate(fd, 0)
            note = {
                "pid": os.getpid(),
                "what": what,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "argv": sys.argv,
            }
            os.write(fd, json.dumps(note).encode())
            yield
        finally:
            if created:  # a run refused before it wrote anything leaves no empty folder behind
                self._remove_if_only_lock(top)
            os.close(fd)  # closing the descriptor releases the lock

    def _remove_if_only_lock(self, top: Path) -> None:
        try:
            if [p.name for p in self.root.iterdir()] != [self.lock.name]:
                return
            self.lock.unlink()
            for folder in (self.root, *self.root.parents):
                folder.rmdir()
                if folder == top:
                    return
        except OSError:
            pass


def _holder(fd: int) -> str:
    """Who holds a run folder's lock, from what it wrote into the lock file."""
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"process {note['pid']} ({note['what']}, since {note['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def output_dir(what: str, runs_dir: str | Path = RUNS_DIR) -> str:
    """Default output folder of a command that writes outside a study (``score``, ``transfer``)."""
    return str(Path(runs_dir) / what)


def store_key(model: ModelInfo, dataset_sha256: str, cfg: StudyConfig) -> str:
    """What a store is tied to.

    The model's provenance, the dataset, and the config fields that change the store.


    The model's provenance (file hash or revision, dtype, device) goes under its own key: under
    ``model``, the config's model name (a STORE_FIELD) would replace it, and a store would resume
    with another file or dtype behind the same name.
    """
    conf = cfg.to_dict()
    fields = {k: conf[k] for k in STORE_FIELDS}
    if cfg.chat_template != "auto":  # a forced prompt format (auto follows the model's file)
        fields["chat_template"] = cfg.chat_template
    # the prompt format follows from the model and chat_template (stores made before it kept it)
    prov = {k: v for k, v in model.to_json().items() if k != "prompt_format"}
    return provenance.digest({"model_provenance": prov, "dataset": dataset_sha256, **fields})


RESOLVED_LATER = {"batch_size": 0, "locator": "auto"}  # set when the model loads


def check_reuse(run: RunDir, cfg: StudyConfig, dataset_sha256: str) -> None:
    """Refuse, before any model loads, a run folder whose store another study made.

    Names the first setting that differs and the command that works (another ``--name``). The
    model's own identity (its file or revision) is checked again once it has loaded.
    """
    if not (run.store / "manifest.json").is_file():
        return
    from halluscan.store import ActivationStore

    prov = ActivationStore.open(run.store).provenance
    before = prov.get("config") or {}
    now = cfg.to_dict()
    diff = [
        (k, before[k], now[k])
        for k in STORE_FIELDS
        if k in before and before[k] != now[k] and RESOLVED_LATER.get(k, object()) != now[k]
    ]
    data = (prov.get("dataset") or {}).get("sha256")
    if data and data != dataset_sha256:
        diff.insert(0, ("dataset content", f"sha256 {data[:12]}", f"sha256 {dataset_sha256[:12]}"))
    if diff:
        key, old, new = diff[0]
        raise HalluscanError(
            f"{run.root} holds a study made with {key}={old!r}, not {new!r}; give this one its own "
            f"folder with --name (e.g. --name {cfg.name}-2), or delete {run.root}"
        )


def given_store_key(own_key: str, template: str, positions: tuple[str, ...]) -> str:
    """The key of a study's given-answer store.

    Its own store's key, the answer template and positions.
    """
    return provenance.digest(
        {"study": own_key, "given_template": template, "given_positions": list(positions)}
    )


def save_samples(
    run: RunDir, gens: dict[tuple[str, int], Generation], temperature: float, seed: int
) -> Path:
    """Keep a study's sampled answers (``--samples``) so that answer choice reuses them."""
    from dataclasses import asdict

    k = 1 + max((i for _, i in gens), default=-1)
    rows = [{"k": i, **asdict(g)} for (_, i), g in sorted(gens.items())]
    return atomic.write_json(
        run.samples, {"samples": k, "temperature": temperature, "seed": seed, "answers": rows}
    )


def load_samples(
    run: RunDir, samples: int, temperature: float, seed: int
) -> dict[tuple[str, int], Generation] | None:
    """The sampled answers if drawn as asked (``samples`` or more, same temperature, seed)."""
    if not run.samples.is_file():
        return None
    try:
        d = json.loads(run.samples.read_text())
        if d["samples"] < samples or d["temperature"] != temperature or d["seed"] != seed:
            return None
        out = {}
        for r in d["answers"]:
            if r["k"] < samples:
                fields: JsonObject = {
                    k: tuple(v) if isinstance(v, list) else v for k, v in r.items() if k != "k"
                }
                out[(r["qid"], r["k"])] = Generation(**fields)
        return out
    except (ValueError, KeyError, TypeError):  # unreadable or from another version: sample again
        return None


def store_layout(cfg: StudyConfig, n_layers: int, hidden: int) -> Layout:
    """The store layout of a study.

    Its positions and dtype, every layer of its site at ``hidden`` dims.
    """
    layers = tuple(range(first_layer(cfg.site), n_layers + 1))
    return Layout(tuple(cfg.positions), cfg.store_dtype, {cfg.site: SiteLayout(layers, (hidden,))})


def study_examples(store: ActivationStore) -> list[Example]:
    """The graded examples of a study's store, in store order."""
    return [Example.from_json(d) for d in store.examples()]


def stored_config(store: ActivationStore) -> StudyConfig:
    """The config of the study that made ``store``."""
    conf = store.provenance.get("config")
    if not conf:
        raise HalluscanError(f"{store.root}: the store records no study config; re-run the study")
    return StudyConfig.from_dict(conf)


def bank_meta(
    cfg: StudyConfig, prov: JsonObject, sweep: SweepResult | None, kind: str = "own"
) -> JsonObject:
    """What a probe bank records of its study.

    Model, data, and the prompt and stopping that scoring must reuse; and the cell it reads.

    The sweep's best layer at the bank's position becomes the verdict's probe (``best_layer``),
    with its cross-validated AUC on the training run (``train_auc``, ``train_auc_ci95``): the
    best of the position's layers, so somewhat optimistic. Without a best cell both are left
    out. ``kind``: ``own`` (trained on the model's own answers) or ``given`` (on given true and
    false answers).
    """
    meta = {
        "site": cfg.site,
        "model": prov.get("model"),
        "dataset": prov.get("dataset"),
        "seed": cfg.seed,
    }
    meta["kind"] = kind
    meta |= {k: getattr(cfg, k) for k in BANK_SETTINGS}
    if sweep is not None and BANK_POSITION in sweep.positions:
        layer, auc = sweep.best(BANK_POSITION)
        if layer >= 0:
            lo, hi = sweep.interval(layer, BANK_POSITION)
            meta |= {
                "best_layer": layer,
                "train_auc": round(auc, 4),
                "train_auc_ci95": [round(lo, 4), round(hi, 4)],
            }
    return meta


def default_study(model: str, runs_dir: str | Path = RUNS_DIR, quiet: bool = False) -> StudyConfig:
    """The default study of ``model``: what ``halluscan run --model MODEL`` runs.

    Its bank is what ``halluscan score`` uses without ``--probes`` (``runs/demo`` for the bundled
    model, ``runs/MODEL-world-facts`` for another).
    """
    return StudyConfig(model=model, runs_dir=str(runs_dir), quiet=quiet)
