"""The chain of stages behind ``halluscan run``: collect (generate, grade, locate, extract) -> probe -> report.

Each stage lives in its own module and talks to the next through records and the store; this
module only chains them, times them, and writes ``metrics.json`` into the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from halluscan import analysis, atomic, provenance, runs
from halluscan.config import StudyConfig
from halluscan.engine.collect import collect
from halluscan.engine.store import ActivationStore
from halluscan.models import load_model
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import SweepResult, sweep, wrong_labels
from halluscan.runs import RunDir
from halluscan.settings import StudySettings

BANK_POSITION = "exact_answer_last"  # where the probe bank for per-response scoring is trained


class Timer:
    """Collects wall-clock seconds per stage."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the ``with`` block and add it to ``stage``."""
        t = time.perf_counter()
        yield
        self.s[stage] = round(self.s.get(stage, 0.0) + time.perf_counter() - t, 2)


def probe_sweep(cfg: StudyConfig, store: ActivationStore, y: np.ndarray, groups: list[str]) -> SweepResult:
    """The (layer, position) sweep over the store, with a progress bar."""
    bar = tqdm(total=len(store.positions), desc="probe sweep", unit="pos", disable=cfg.quiet)
    result = sweep(
        lambda p: store.position(p, cfg.site),
        store.valid(),
        y,
        groups,
        store.layers(cfg.site),
        store.positions,
        folds=cfg.folds,
        seed=cfg.seed,
        c=cfg.probe_c,
        progress=bar.update,
    )
    bar.close()
    return result


def fit_bank(cfg: StudyConfig, store: ActivationStore, y: np.ndarray, meta: dict[str, Any], run: RunDir) -> bool:
    """Fit and save one probe per layer at ``exact_answer_last`` on every example that has it (False: cannot)."""
    if BANK_POSITION not in store.positions:
        return False
    keep = store.valid()[:, store.positions.index(BANK_POSITION)]
    if len(set(y[keep].tolist())) < 2:
        return False
    ProbeBank.from_store(store, keep, y, BANK_POSITION, cfg.probe_c, cfg.site, meta).save(run.probes)
    return True


def run_study(cfg: StudyConfig) -> dict[str, Any]:
    """Run the whole study; writes RUNS_DIR/NAME/{store,metrics.json,report.html,...}; returns metrics."""
    from halluscan.data import select_questions
    from halluscan.report.maps import response_maps
    from halluscan.report.study import write_study_report

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    timer = Timer()
    with timer("load_dataset"):
        settings = StudySettings.build(cfg)
        qs = select_questions(settings.dataset, cfg.n_questions, cfg.seed)
    with timer("load_model"):
        lm = load_model(cfg.model)
    run, ds = RunDir.of(cfg), settings.dataset
    prov = provenance.record(
        lm.provenance(), {"name": ds.name, "sha256": ds.sha256, "n_questions": len(qs)}, cfg.to_dict()
    )
    key = runs.store_key(lm.provenance(), ds.sha256, cfg)
    layout = runs.store_layout(cfg, lm.n_layers, lm.hidden_size)
    store = ActivationStore.open_or_create(run.store, key=key, layout=layout, provenance=prov)
    with timer("generate_extract"):
        collect(settings, lm, qs, store)
    examples = runs.study_examples(store)
    y, groups = wrong_labels(examples), [e.qid for e in examples]
    with timer("probe_sweep"):
        result = probe_sweep(cfg, store, y, groups)
        controls = analysis.controls(result, examples, y, cfg.folds, cfg.seed)
    metrics = analysis.study_metrics(cfg.name, examples, result, controls, cfg.site)
    with timer("probe_bank"):
        best = result.best(BANK_POSITION)[0] if BANK_POSITION in result.positions else None
        has_bank = fit_bank(cfg, store, y, runs.bank_meta(cfg, prov, best), run)
        metrics["probe_bank"] = str(run.probes) if has_bank else None
    with timer("response_maps"):  # the bank as saved, as `halluscan score` will read it
        maps = response_maps(settings, lm, ProbeBank.load(run.probes), examples, run.responses) if has_bank else []
    metrics["response_maps"] = [{k: v for k, v in m.items() if k != "div"} for m in maps]
    with timer("report"):
        metrics["timings_s"] = dict(timer.s)
        metrics["provenance"] = prov
        atomic.write_json(run.provenance, prov)
        write_study_report(run, metrics, examples, result, maps)
    metrics["timings_s"] = dict(timer.s)
    atomic.write_json(run.metrics, metrics)
    return metrics
