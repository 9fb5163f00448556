"""The chain of stages behind ``halluscan run``: collect (generate, grade, locate, extract) -> probe -> report.

Each stage lives in its own module and talks to the next through records and the store; this
module only chains them, times them, and writes ``metrics.json`` into the run folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from halluscan import analysis, atomic, baselines, errortypes, givenbank, provenance, runs
from halluscan.cluster.sweep import study_sweep
from halluscan.config import StudyConfig
from halluscan.engine.collect import collect
from halluscan.engine.given import collect_given
from halluscan.engine.store import ActivationStore
from halluscan.errors import HalluscanError
from halluscan.models import load_model
from halluscan.models.loading import LoadedModel
from halluscan.models.placement import auto_batch_size
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import SweepResult, wrong_labels
from halluscan.records import Example, Grade, Question
from halluscan.runs import RunDir
from halluscan.settings import StudySettings

log = logging.getLogger(__name__)

BANK_POSITION = "exact_answer_last"  # where the probe bank for per-response scoring is trained


class Timer:
    """Collects wall-clock seconds per stage."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}
        self.notes: dict[str, Any] = {}  # records of how stages ran (``ray``), copied into the metrics

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the ``with`` block and add it to ``stage``."""
        t = time.perf_counter()
        yield
        self.s[stage] = round(self.s.get(stage, 0.0) + time.perf_counter() - t, 2)


def fit_bank(
    cfg: StudyConfig, store: ActivationStore, y: np.ndarray, meta: dict[str, Any], run: RunDir, device: str = "cpu"
) -> bool:
    """Fit and save one probe per layer at ``exact_answer_last`` on every example that has it (False: cannot)."""
    if BANK_POSITION not in store.positions:
        return False
    keep = store.valid()[:, store.positions.index(BANK_POSITION)]
    if len(set(y[keep].tolist())) < 2:
        return False
    ProbeBank.from_store(store, keep, y, BANK_POSITION, cfg.probe_c, cfg.site, meta, device).save(run.probes)
    return True


def too_few(cfg: StudyConfig, y: np.ndarray) -> str | None:
    """Why the sweep cannot run on labels ``y`` (a sentence for the report), or None when it can."""
    n_wrong = int(y.sum())
    counts = {"correct": len(y) - n_wrong, "wrong": n_wrong}
    small = min(counts, key=lambda k: counts[k])
    if counts[small] >= cfg.folds:
        return None
    return (
        f"No probe heatmap: the {cfg.folds}-fold cross-validation needs at least {cfg.folds} examples of each class, "
        f"but this study has {counts['correct']} correct and {counts['wrong']} wrong answers; "
        f"{cfg.folds - counts[small]} more {small} answers are needed (use more questions, or fewer --folds)."
    )


def check_folds(cfg: StudyConfig, n_questions: int) -> None:
    """Refuse, before any generation, folds that the question count can never fill."""
    if cfg.folds * 2 > n_questions:
        raise HalluscanError(
            f"--folds {cfg.folds} needs at least {2 * cfg.folds} questions ({cfg.folds} of each class), but the "
            f"study has {n_questions}; use fewer --folds or more questions"
        )


def batch_for(cfg: StudyConfig, lm: LoadedModel, qs: list[Question]) -> int:
    """The automatic batch size of this study on ``lm``'s device (its longest prompt decides)."""
    opts = cfg.generate_options()
    longest = max(len(lm.prompt_ids(q.question, cfg.system_prompt)) for q in qs)
    item = torch.finfo(getattr(torch, cfg.store_dtype)).bits // 8
    return auto_batch_size(lm.model, lm.device, longest + opts.max_new_tokens, opts.tail + opts.max_new_tokens, item)


def error_types(
    cfg: StudyConfig,
    store: ActivationStore,
    examples: list[Example],
    sampled: dict[tuple[str, int], Grade],
    cell: tuple[str, int],
) -> dict[str, Any]:
    """Each question's error types from its samples, and a probe per type at the best cell."""
    types = errortypes.question_types(examples, sampled, cfg.samples)
    probed = errortypes.probe_types(store, examples, types, cell, cfg.folds, cfg.seed, cfg.probe_c)
    return {"samples": cfg.samples, "types": probed}


def collect_stage(
    settings: StudySettings,
    lm: LoadedModel,
    qs: list[Question],
    store: ActivationStore,
    given: tuple[list[Any], ActivationStore] | None,
    timer: Timer,
) -> float:
    """Generate, grade, locate and store, in this process or on Ray; seconds spent on given answers (0 on Ray)."""
    if not settings.config.ray:
        return collect(settings, lm, qs, store, given)
    from halluscan.cluster.driver import collect_on_ray

    timer.notes["ray"] = collect_on_ray(settings, lm, qs, store, given).to_json()
    return 0.0


def run_study(cfg: StudyConfig) -> dict[str, Any]:
    """Run the whole study; writes RUNS_DIR/NAME/{store,metrics.json,report.html,...}; returns metrics.

    The run folder is locked for the whole run. With too few examples of one class for the
    sweep, the report still gives the accuracy and the graded answers, and says why there are
    no probes (``metrics["no_probes"]``).
    """
    from halluscan.data import select_questions

    cfg.validate()
    if cfg.ray:  # before anything runs: a missing Ray is a one-line error
        from halluscan.cluster import require_ray

        require_ray()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    timer = Timer()
    with timer("load_dataset"):
        settings = StudySettings.build(cfg)
        qs = select_questions(settings.dataset, cfg.n_questions, cfg.seed)
    check_folds(cfg, len(qs))
    with timer("load_model"):
        lm = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    if not cfg.batch_size:  # auto: from the device, and recorded as the number it became
        cfg = replace(cfg, batch_size=batch_for(cfg, lm, qs))
        settings = replace(settings, config=cfg, generation=cfg.generate_options())
    run, ds = RunDir.of(cfg), settings.dataset
    model_prov = lm.provenance()
    if cfg.ray:  # the activations are the workers': their device and dtype
        from halluscan.cluster import worker_provenance

        model_prov = worker_provenance(model_prov, cfg)
    prov = provenance.record(model_prov, {"name": ds.name, "sha256": ds.sha256, "n_questions": len(qs)}, cfg.to_dict())
    with run.hold("halluscan run"):
        key = runs.store_key(model_prov, ds.sha256, cfg)
        layout = runs.store_layout(cfg, lm.n_layers, lm.hidden_size)
        store = ActivationStore.open_or_create(run.store, key=key, layout=layout, provenance=prov)
        items = givenbank.given_items(settings, lm, qs) if cfg.given_bank else []
        gstore = givenbank.open_given_store(run, key, cfg, lm, prov) if items else None
        with timer("generate_extract"):
            forked = collect_stage(settings, lm, qs, store, (items, gstore) if gstore is not None else None, timer)
        if gstore is not None:
            if not cfg.ray:  # on Ray the workers fork them, and their time is the workers'
                timer.s["given_answers_in_generation"] = round(forked, 2)  # part of generate_extract
            with timer("given_bank"):  # answers not fed during generation (a resumed run, the static decoder)
                collect_given(lm, items, gstore, replace(settings.generation, capture_dtype=cfg.store_dtype))
        examples = runs.study_examples(store)
        return _analyse(cfg, settings, lm, (store, gstore), examples, prov, timer)


def _analyse(
    cfg: StudyConfig,
    settings: StudySettings,
    lm: LoadedModel,
    stores: tuple[ActivationStore, ActivationStore | None],
    examples: list[Example],
    prov: dict[str, Any],
    timer: Timer,
) -> dict[str, Any]:
    """Sweep, banks, maps, report and metrics of a collected study (or the report without probes).

    ``stores``: the study's store and its given answers' store (None: no given-answer bank).
    """
    from halluscan.report.maps import response_maps
    from halluscan.report.study import write_study_report

    run, (store, gstore) = RunDir.of(cfg), stores
    device = cfg.probe_device or lm.device
    y, groups = wrong_labels(examples), [e.qid for e in examples]
    why = too_few(cfg, y)
    given: SweepResult | None = None

    def given_stage(metrics: dict[str, Any], own: SweepResult | None) -> None:
        nonlocal given
        if gstore is not None:
            with timer("given_bank"):
                metrics["given_bank"], given = givenbank.given_bank(
                    cfg, gstore, (store, examples, own), run, prov, device
                )

    if why is not None:
        log.warning("warning: %s", why)
        metrics = {"name": cfg.name, **analysis.summarise(examples), "no_probes": why, "probe_bank": None}
        given_stage(metrics, None)
        draw = lambda: write_study_report(run, metrics, examples, None, [], given)  # noqa: E731
        return _finish(run, metrics, prov, timer, draw)
    with timer("probe_sweep"):
        result = study_sweep(cfg, store, y, groups, device, site=cfg.site)
        controls = analysis.controls(result, examples, y, cfg.folds, cfg.seed)
    metrics = analysis.study_metrics(cfg.name, examples, result, controls, cfg.site)
    scores = baselines.logprob_scores(examples)
    if cfg.p_true:
        with timer("p_true"):
            scores |= baselines.p_true_scores(lm, examples, cfg.batch_size, cfg.quiet)
    sampled = None
    if cfg.samples:
        with timer("sampling"):
            gens, sampled = baselines.sample_grades(lm, settings, examples, cfg.samples, cfg.seed, cfg.quiet)
            runs.save_samples(RunDir.of(cfg), gens, 1.0, cfg.seed)  # `halluscan choose` reuses them
            located = {key: g.exact_text for key, g in sampled.items()}
            scores["sampling_consistency"] = baselines.consistency_scores(examples, located, cfg.samples)
    f = metrics["finding"]
    cell = (f["best_exact_position"], f["best_exact_layer"])
    if cell[1] >= 0:  # an exact-answer cell had enough examples of both classes
        with timer("baselines"):
            metrics |= baselines.compare(result, examples, y, scores, cell, cfg.seed)
    if sampled is not None and cell[1] >= 0:
        with timer("error_types"):
            metrics["error_types"] = error_types(cfg, store, examples, sampled, cell)
    with timer("probe_bank"):
        best = result.best(BANK_POSITION)[0] if BANK_POSITION in result.positions else None
        has_bank = fit_bank(cfg, store, y, runs.bank_meta(cfg, prov, best), run, device)
        metrics["probe_bank"] = str(run.probes) if has_bank else None
    given_stage(metrics, result)
    with timer("response_maps"):  # the bank as saved, as `halluscan score` will read it
        maps = response_maps(settings, lm, ProbeBank.load(run.probes), examples, run.responses) if has_bank else []
    metrics["response_maps"] = [{k: v for k, v in m.items() if k != "div"} for m in maps]
    draw = lambda: write_study_report(run, metrics, examples, result, maps, given)  # noqa: E731
    return _finish(run, metrics, prov, timer, draw)


def _finish(
    run: RunDir, metrics: dict[str, Any], prov: dict[str, Any], timer: Timer, draw: Callable[[], None]
) -> dict[str, Any]:
    """Record provenance, ``draw()`` the report (it reads ``metrics``), then write ``metrics.json`` last."""
    with timer("report"):
        metrics["timings_s"] = dict(timer.s)
        metrics["provenance"] = prov
        atomic.write_json(run.provenance, prov)
        draw()
    metrics["timings_s"] = dict(timer.s)
    metrics |= timer.notes
    atomic.write_json(run.metrics, metrics)
    return metrics
