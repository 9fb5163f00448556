"""The chain of stages behind ``halluscan run``.

Collect (generate, grade, locate, extract) -> probe -> report.


Each stage lives in its own module and receives the :class:`~halluscan.study.context.StudyContext`;
this module chains them, times them, and hands the results to the metrics owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from halluscan import atomic
from halluscan.analyses import summary as analysis
from halluscan.analyses.baselines import logprob_scores
from halluscan.analyses.given import GivenBank
from halluscan.analyses.results import Metrics, RayReport
from halluscan.analyses.verdict import LAST_Q
from halluscan.engine.collect import batches, collect
from halluscan.engine.given import GivenFeed, GivenWork, collect_given
from halluscan.positions import BANK_POSITION, Cell
from halluscan.probes.sweep import SweepResult, wrong_labels
from halluscan.progress import bar as progress_bar
from halluscan.provenance import DatasetInfo, Provenance
from halluscan.records import Example
from halluscan.store import ActivationStore, ChunkWriter
from halluscan.study import given as given_stage
from halluscan.study import locating, runs, tokens
from halluscan.study import metrics as metrics_io
from halluscan.study.arrays import fit_bank, study_sweep
from halluscan.study.baselines import consistency, error_types, p_true_scores, sample
from halluscan.study.checks import Checks, run_checks
from halluscan.study.config import StudyConfig
from halluscan.study.context import StudyContext, StudyPlan

log = logging.getLogger(__name__)


@dataclass
class Timer:
    """Collects wall-clock seconds per stage, and how the collection ran on Ray."""

    s: dict[str, float] = field(default_factory=dict)
    ray: RayReport | None = None

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the ``with`` block and add it to ``stage``."""
        t = time.perf_counter()
        yield
        self.s[stage] = round(self.s.get(stage, 0.0) + time.perf_counter() - t, 2)


@dataclass(frozen=True)
class Stores:
    """A study's stores.

    Its own answers', and its given answers' (None without the given-answer bank).
    """

    own: ActivationStore
    given: GivenWork | None


def too_few(cfg: StudyConfig, y: np.ndarray) -> str | None:
    """Why the sweep cannot run on labels ``y`` (a sentence for the report), or None when it can."""
    n_wrong = int(y.sum())
    counts = {"correct": len(y) - n_wrong, "wrong": n_wrong}
    small = min(counts, key=lambda k: counts[k])
    if counts[small] >= cfg.folds:
        return None
    return (
        f"No probe heatmap: the {cfg.folds}-fold cross-validation needs at least {cfg.folds} "
        f"examples of each class, but this study has {counts['correct']} correct and "
        f"{counts['wrong']} wrong answers; {cfg.folds - counts[small]} more {small} answers are "
        "needed (use more questions, or fewer --folds)."
    )


def run_study(cfg: StudyConfig) -> Metrics:
    """Run the whole study.

    Writes RUNS_DIR/NAME/{store,metrics.json,report.html,...}; returns its metrics.


    The run folder is locked for the whole run. With too few examples of one class for the
    sweep, the report still gives the accuracy and the graded answers, and says why there are
    no probes (``Metrics.no_probes``).
    """
    cfg.validate()
    if cfg.ray:  # before anything runs: a missing Ray is a one-line error
        from halluscan.cluster import require_ray

        require_ray()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    timer = Timer()
    with timer("load_dataset"):
        plan = StudyPlan.of(cfg)
    # every refusal that needs no model comes before it loads: the lock, another study's store
    with plan.run.hold("halluscan run"):
        runs.check_reuse(plan.run, plan.config, plan.dataset.sha256)
        with timer("load_model"):
            ctx = StudyContext.build(plan)
        prov = study_provenance(ctx)
        stores = open_stores(ctx, prov)
        with timer("generate_extract"):
            forked = collect_stage(ctx, stores, timer)
        stores = replace(stores, own=in_batch_order(ctx, stores.own))
        if stores.given is not None:
            if not ctx.config.ray:  # on Ray the workers fork them, and their time is the workers'
                # part of generate_extract
                timer.s["given_answers_in_generation"] = round(forked, 2)
            # answers not fed during generation (a resumed run, the static decoder), and the
            # model's own wrong answers (known only now), teacher-forced as given answers
            with timer("given_bank"):
                own = given_stage.own_wrong_items(ctx, runs.study_examples(stores.own))
                collect_given(
                    ctx.lm,
                    [*stores.given.items, *own],
                    stores.given.store,
                    ctx.collect_job().generation,
                )
        return analyse(ctx, stores, runs.study_examples(stores.own), prov, timer)


def in_batch_order(ctx: StudyContext, store: ActivationStore) -> ActivationStore:
    """The store read in the order one process writes it fresh, whatever order chunks came in.

    That is the batches' order: by prompt length, then by the question's place in the study.
    On Ray, chunks arrive as workers finish; read in this order, a Ray run and a one-process run
    feed the probes the same rows in the same order (see the README on what is equal).
    """
    place = {q.qid: i for i, q in enumerate(ctx.questions)}
    return store.ordered(lambda r: (r["n_prompt"], place.get(r["qid"], len(place))))


def study_provenance(ctx: StudyContext) -> Provenance:
    """The study's provenance.

    The model (as the Ray workers hold it with ``--ray``), dataset, config, versions.
    """
    model = ctx.lm.provenance()
    if ctx.config.ray:  # the activations are the workers': their device and dtype
        spec = ctx.worker_setup().spec
        model = replace(model, device=spec.device, dtype=f"torch.{spec.dtype}")
    data = DatasetInfo(ctx.dataset.name, ctx.dataset.sha256, len(ctx.questions))
    return Provenance.now(model, data, ctx.config.to_dict())


def open_stores(ctx: StudyContext, prov: Provenance) -> Stores:
    """The study's store (refused when made with another key), and its given answers' store."""
    key = runs.store_key(prov.model, ctx.dataset.sha256, ctx.config)
    layout = runs.store_layout(ctx.config, ctx.lm.n_layers, ctx.lm.hidden_size)
    store = ActivationStore.open_or_create(
        ctx.run.store, key=key, layout=layout, provenance=prov.to_json()
    )
    items = given_stage.given_items(ctx) if ctx.config.given_bank else []
    given = GivenWork(items, given_stage.open_given_store(ctx, key, prov)) if items else None
    return Stores(store, given)


def collect_stage(ctx: StudyContext, stores: Stores, timer: Timer) -> float:
    """Generate, grade, locate and store, in this process or on Ray.

    Seconds spent on given answers (0 on Ray).
    """
    if ctx.config.ray:
        from halluscan.cluster.driver import collect_on_ray

        stats = collect_on_ray(
            ctx.ray_plan(),
            ctx.worker_setup(),
            ctx.lm,
            list(ctx.questions),
            stores.own,
            stores.given,
        )
        timer.ray = stats.report()
        return 0.0

    todo = stores.own.left_to_do(ctx.questions, key=lambda q: q.qid)
    job = ctx.collect_job()
    n = len(ctx.questions)
    bar = progress_bar(n, "generate+extract", "q", ctx.config.quiet, initial=n - len(todo))

    def progress(examples: list[Example]) -> None:
        bar.update(len(examples))
        bar.set_postfix(acc=f"{np.mean([e.correct for e in examples]):.2f}")

    with ChunkWriter(stores.own) as writer:
        if stores.given is None:
            return collect(
                ctx.lm, job, batches(ctx.lm, todo, job.generation), writer, None, progress
            )
        with ChunkWriter(stores.given.store) as given_writer:
            feed = GivenFeed(stores.given.left(), given_writer)
            return collect(
                ctx.lm, job, batches(ctx.lm, todo, job.generation), writer, feed, progress
            )


def analyse(
    ctx: StudyContext, stores: Stores, examples: list[Example], prov: Provenance, timer: Timer
) -> Metrics:
    """Sweep, baselines, banks, maps, report and metrics of a collected study (or no probes)."""
    from halluscan.study.report import write_study_report

    y, groups = wrong_labels(examples), [e.qid for e in examples]
    extraction = locating.of_study(examples) if ctx.config.locator == locating.SELF else ctx.pilot
    keep = np.array([ctx.config.keep_ambiguous or e.ambiguous is None for e in examples])
    if not keep.all():  # ambiguous grades stay in the store and the counts, not in the probes
        stores = replace(stores, own=stores.own.only(keep))
    why = too_few(ctx.config, y[keep])
    own = given_stage.OwnStudy(stores.own, examples, None)
    if why is not None:
        log.warning("warning: %s", why)
        metrics = Metrics(
            ctx.config.name,
            analysis.summarise(examples, ctx.config.keep_ambiguous, ctx.dataset.notes),
            no_probes=why,
            probe_bank=None,
            self_extraction=extraction,
        )
        given, gsweep = _given(ctx, stores, own, prov, timer)
        draw = lambda m: write_study_report(ctx.run, m, examples, None, [], gsweep)  # noqa: E731
        return finish(ctx, replace(metrics, given_bank=given), prov, timer, draw)
    with timer("probe_sweep"):
        result = study_sweep(ctx, stores.own, y, groups, ctx.site, "probe sweep")
        metrics = replace(sweep_metrics(ctx, examples, result, y), self_extraction=extraction)
    metrics = baselines_stage(ctx, stores.own, examples, result, metrics, timer)
    with timer("probe_bank"):
        has_bank = own_bank(ctx, stores.own, result, y, prov)
    metrics = replace(metrics, probe_bank=str(ctx.run.probes) if has_bank else None)
    given, gsweep = _given(ctx, stores, replace(own, sweep=result), prov, timer)
    metrics = other_sites(ctx, stores.own, examples, prov, metrics, timer)
    metrics = tokens.token_stage(ctx, examples, keep, prov, metrics, timer)
    with timer("response_maps"):  # the bank as saved, as `halluscan score` will read it
        from halluscan.study.maps import response_maps

        maps = response_maps(ctx, examples) if has_bank else []
    metrics = replace(metrics, given_bank=given, response_maps=[m.record for m in maps])
    draw = lambda m: write_study_report(ctx.run, m, examples, result, maps, gsweep)  # noqa: E731
    return finish(ctx, metrics, prov, timer, draw)


def other_sites(
    ctx: StudyContext,
    own: ActivationStore,
    examples: list[Example],
    prov: Provenance,
    metrics: Metrics,
    timer: Timer,
) -> Metrics:
    """``--sites``: each other site extracted, swept and compared with the residual stream."""
    from halluscan.study import sites

    if not sites.others(ctx):
        return metrics
    with timer("extract_sites"):
        store = sites.extract_sites(ctx, examples, prov, own.key)
    with timer("site_sweeps"):
        found = sites.compare_sites(ctx, store, examples, own.valid(), metrics.nested)
    return replace(metrics, sites=found)


def sweep_metrics(
    ctx: StudyContext, examples: list[Example], result: SweepResult, y: np.ndarray
) -> Metrics:
    """The metrics that come from the examples and the sweep.

    Summary, heatmap, best cells, controls, finding.
    """
    cfg = ctx.config
    ctrl = analysis.controls(result, examples, y, cfg.folds, cfg.seed)
    return Metrics(
        cfg.name,
        analysis.summarise(examples, ctx.config.keep_ambiguous, ctx.dataset.notes),
        heatmap=analysis.heatmap(result, ctx.site),
        best_cells=analysis.best_cells(result, ctrl),
        controls=ctrl,
        finding=analysis.finding(result, ctrl),
    )


def baselines_stage(
    ctx: StudyContext,
    store: ActivationStore,
    examples: list[Example],
    result: SweepResult,
    m: Metrics,
    timer: Timer,
) -> Metrics:
    """The model's own signals, then every check against the nested headline cell.

    With ``--samples`` also the types of error, probed at the headline cell.
    """
    cfg = ctx.config
    scores = logprob_scores(examples)
    if cfg.p_true:
        with timer("p_true"):
            scores |= p_true_scores(ctx, examples)
    sampled = None
    if cfg.samples:
        with timer("sampling"):
            sampled = sample(ctx, examples)
            # `halluscan choose` reuses them
            runs.save_samples(ctx.run, sampled.generations, 1.0, cfg.seed)
            scores["sampling_consistency"] = consistency(ctx, examples, sampled)
    checks = run_checks(ctx, store, examples, result, scores, timer)
    if checks is None:  # no exact-answer cell had enough examples of both classes
        return m
    m = with_checks(m, checks)
    if sampled is not None:
        with timer("error_types"):
            cell = Cell(checks.headline.position, checks.headline.layer)
            m = replace(m, error_types=error_types(ctx, store, examples, sampled, cell))
    return m


def with_checks(m: Metrics, checks: Checks) -> Metrics:
    """The metrics with the checks' records, and the finding told what they found."""
    head, versus = checks.headline, checks.versus
    assert m.finding is not None
    last_q = versus.get(LAST_Q)
    finding = replace(
        m.finding,
        exact_beats_last_q=bool(last_q is not None and (last_q.gain or 0.0) > 0),
        strongest_control=head.strongest,
        gain_over_strongest=head.gain,
        gain_ci95=head.gain_ci95,
        beats_strongest=head.clear,
        warnings=checks.warnings,
    )
    return replace(
        m,
        finding=finding,
        headline=head,
        versus=versus,
        nested=checks.nested,
        nested_located=checks.located,
        locator_audit=checks.audit,
    )


def own_bank(
    ctx: StudyContext,
    store: ActivationStore,
    result: SweepResult,
    y: np.ndarray,
    prov: Provenance,
) -> bool:
    """Fit and save a probe per layer at the bank position on the examples there (False: cannot)."""
    meta = runs.bank_meta(ctx.config, prov.to_json(), result)
    bank = fit_bank(store, y, BANK_POSITION, ctx.site, ctx.config.cv, meta, ctx.probe_device)
    if bank is not None:
        bank.save(ctx.run.probes)
    return bank is not None


def _given(
    ctx: StudyContext, stores: Stores, own: given_stage.OwnStudy, prov: Provenance, timer: Timer
) -> tuple[GivenBank | None, SweepResult | None]:
    """The given-answer bank's stage (None, None without it)."""
    if stores.given is None:
        return None, None
    with timer("given_bank"):
        return given_stage.given_bank(ctx, stores.given.store, own, prov)


def finish(
    ctx: StudyContext,
    metrics: Metrics,
    prov: Provenance,
    timer: Timer,
    draw: Callable[[Metrics], None],
) -> Metrics:
    """Record provenance, ``draw(metrics)`` the report, then write ``metrics.json`` last."""
    with timer("report"):
        atomic.write_json(ctx.run.provenance, prov.to_json())
        draw(replace(metrics, timings_s=dict(timer.s), provenance=prov))
    metrics = replace(metrics, timings_s=dict(timer.s), provenance=prov, ray=timer.ray)
    metrics_io.write(ctx.run, metrics)
    return metrics
