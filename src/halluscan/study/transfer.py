"""Transfer between studies: probes fitted on one run folder's store, scored on another's.

``halluscan probe --train A --test B`` scores B at the cell chosen on A (A's nested headline
cell, else A's own inner cross-validation), against B's strongest log-prob baseline oriented on
A; B's heatmap under A's probes follows, its maximum labelled optimistic. Questions that B
shares with A are left out of every number. With several runs it gives the matrix of those
fixed-cell AUCs (train on row, test on column; the diagonal is each run's nested AUC). The maths
is :mod:`halluscan.analyses.transfer`; this module reads the stores and checks that they can be
compared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from halluscan.analyses.baselines import logprob_scores
from halluscan.analyses.nested import pick
from halluscan.analyses.results import Transfer
from halluscan.analyses.transfer import (
    FixedCell,
    cell_scores,
    paired_bootstrap,
    strongest_logit,
)
from halluscan.errors import HalluscanError
from halluscan.positions import EXACT, Cell
from halluscan.probes.features import Features
from halluscan.probes.sweep import bootstrap_auc, wrong_labels
from halluscan.probes.transfer import transfer_auc
from halluscan.records import CV, DEFAULT_C, Example
from halluscan.store import ActivationStore
from halluscan.study import metrics as metrics_io
from halluscan.study.arrays import check_same_model, store_features
from halluscan.study.runs import RunDir, study_examples
from halluscan.text import normalize

log = logging.getLogger(__name__)
REFUSE_SHARE = 0.5  # refuse when at least this share of the test questions was trained on


class SharedQuestions(HalluscanError):
    """A test run that asks mostly the training run's questions: no transfer test."""


@dataclass(frozen=True)
class TransferHeatmap:
    """AUC per (layer, position) on a test run of probes fitted on a training run."""

    layers: list[int]
    positions: list[str]
    auc: np.ndarray  # [layer, position]


@dataclass(frozen=True)
class Side:
    """One run of a transfer: its folder, store, answers, labels and features."""

    run: RunDir
    store: ActivationStore
    examples: list[Example]
    y: np.ndarray
    site: str

    @cached_property
    def features(self) -> Features:
        """The store's features (read when first needed: after the stores were checked)."""
        if not self.examples:
            raise HalluscanError(f"{self.store.root}: the store holds no answers; run its study")
        # ambiguous grades are left out, as the study's own probes leave them out
        keep = np.array([e.ambiguous is None for e in self.examples])
        return store_features(self.store, self.site).restrict(keep)

    @classmethod
    def of(cls, store: ActivationStore, site: str) -> Side:
        """A store's side (its run folder is the one above a ``store`` folder)."""
        root = Path(store.root)
        run = RunDir(root.parent if root.name == RunDir(root).store.name else root)
        examples = study_examples(store)
        return cls(run, store, examples, wrong_labels(examples), site)

    @classmethod
    def open(cls, folder: str | Path, site: str) -> Side:
        """The side of a run folder (or of a store folder)."""
        return cls.of(RunDir(Path(folder)).open_store(), site)


def _check(train: Side, test: Side, site: str) -> None:
    """Refuse stores of other models, layers or positions."""
    check_same_model(train.store, test.store, site)
    if test.store.layers(site) != train.store.layers(site) or (
        test.store.positions != train.store.positions
    ):
        raise HalluscanError(
            f"{test.store.root}: its layers or positions differ from {train.store.root}'s; train "
            "and test runs need the same model and positions"
        )


def new_questions(train: Side, test: Side) -> np.ndarray:
    """``[test example]`` True for questions the training run never saw; refuses a large overlap."""
    seen = {normalize(e.question) for e in train.examples}
    fresh = np.array([normalize(e.question) not in seen for e in test.examples], dtype=bool)
    n_q = len({e.qid for e in test.examples})
    shared = len({e.qid for e, f in zip(test.examples, fresh, strict=True) if not f})
    if n_q and shared / n_q >= REFUSE_SHARE:
        raise SharedQuestions(
            f"{test.run.root}: {shared} of its {n_q} questions are in {train.run.root}; that is "
            "no transfer test. Use a test run on other questions"
        )
    if shared:
        log.warning(
            "transfer: %d of %d questions of %s are also in %s; they are left out",
            shared,
            n_q,
            test.run.root,
            train.run.root,
        )
    return fresh


def training_cell(train: Side, cv: CV, device: str) -> tuple[Cell, str, float | None]:
    """The cell chosen on the training run, how it was chosen, and its AUC there."""
    if train.run.has_metrics():
        head = metrics_io.read(train.run).headline
        if head is not None:
            return Cell(head.position, head.layer), "nested cross-validation", head.auc
    held = train.features.positions
    x = {p: train.features.at(p) for p in ([p for p in EXACT if p in held] or held)}
    valid = {p: train.features.has(p) for p in x}
    groups = np.array([e.qid for e in train.examples])
    every = np.arange(len(train.y))
    cell = pick(x, valid, list(train.features.layers), train.y, groups, every, cv, device)
    if cell is None:
        raise HalluscanError(
            f"{train.run.root}: too few answers of a class to choose a cell; use a larger study"
        )
    return cell, "cross-validation on the training run", None


def fixed_cell(
    train: Side, test: Side, site: str, c: float = DEFAULT_C, device: str = "cpu"
) -> tuple[FixedCell, TransferHeatmap]:
    """The test run scored at the training run's cell, and its heatmap under the training probes."""
    _check(train, test, site)
    fresh = new_questions(train, test)
    cell, how, train_auc = training_cell(train, CV(c=c), device)
    test_f = test.features.restrict(fresh)
    heat = transfer_auc(train.features, train.y, test_f, test.y, c, device)
    p = cell_scores(train.features, train.y, test_f, cell, c, device)
    rows = np.flatnonzero(np.isfinite(p))
    y = test.y[rows]
    if len(set(y.tolist())) < 2:
        raise HalluscanError(
            f"{test.run.root}: its new answers at {cell.position} hold one class only; use a test "
            "run with more questions"
        )
    groups = [test.examples[i].qid for i in rows]
    train_lp, test_lp = logprob_scores(train.examples), logprob_scores(test.examples)
    base = strongest_logit(train_lp, train.y, test_lp, test.y, rows)
    b = None if base is None else base[1] * test_lp[base[0]][rows]
    ok = np.ones(len(rows), bool) if b is None else np.isfinite(b)
    kept = [g for g, k in zip(groups, ok, strict=True) if k]  # answers both scores read
    pair = paired_bootstrap(p[rows][ok], b[ok] if b is not None else p[rows][ok], y[ok], kept)
    if not ok.all():  # the probe's own AUC on all its answers; the gain on those both read
        auc_a, ci_a = bootstrap_auc(p[rows], y, groups)
        pair = replace(pair, auc_a=auc_a, ci_a=None if ci_a is None else (ci_a[0], ci_a[1]))
    j = int(np.nanargmax(np.nan_to_num(heat, nan=-1.0)))
    layers, positions = list(train.features.layers), list(train.features.positions)
    result = FixedCell(
        str(train.run.root),
        str(test.run.root),
        cell,
        how,
        train_auc,
        pair.auc_a,
        pair.ci_a,
        int(len(rows)),
        int(y.sum()),
        base[0] if base else None,
        None if base is None else ("higher = wrong" if base[1] > 0 else "lower = wrong"),
        pair.auc_b if base else None,
        pair.ci_b if base else None,
        pair.gain if base else None,
        pair.gain_ci if base else None,
        None if np.all(np.isnan(heat)) else float(np.nanmax(heat)),
        Cell(positions[j % len(positions)], layers[j // len(positions)]),
        int(np.isfinite(heat).sum()),
        int(len({e.qid for e, f in zip(test.examples, fresh, strict=True) if not f})),
    )
    return result, TransferHeatmap(layers, positions, heat)


def transfer_runs(
    train: str | Path, test: str | Path, site: str, c: float = DEFAULT_C, device: str = "cpu"
) -> tuple[FixedCell, TransferHeatmap]:
    """:func:`fixed_cell` for two run folders."""
    return fixed_cell(Side.open(train, site), Side.open(test, site), site, c, device)


def transfer_stores(
    train: ActivationStore,
    test: ActivationStore,
    site: str,
    c: float = DEFAULT_C,
    device: str = "cpu",
) -> TransferHeatmap:
    """The test store's heatmap under probes fitted on every answer of the training store.

    Refuses stores of other models, layers or positions, and a test of the training questions.
    """
    a, b = Side.of(train, site), Side.of(test, site)
    _check(a, b, site)
    fresh = new_questions(a, b)
    auc = transfer_auc(a.features, a.y, b.features.restrict(fresh), b.y, c, device)
    return TransferHeatmap(list(a.features.layers), list(a.features.positions), auc)


def transfer_matrix(
    runs: list[Path], site: str, c: float = DEFAULT_C, device: str = "cpu"
) -> Transfer:
    """Fixed-cell AUC, gain over the logits and optimistic maximum for every (train, test) pair.

    The diagonal is each run's nested AUC and its gain over its strongest oriented logit baseline.
    A pair whose test run asks mostly the training run's questions stays empty (None).
    """
    sides = [Side.open(r, site) for r in runs]
    k = len(runs)
    auc: list[list[float | None]] = [[None] * k for _ in range(k)]
    gain: list[list[float | None]] = [[None] * k for _ in range(k)]
    top: list[list[float | None]] = [[None] * k for _ in range(k)]
    for i, a in enumerate(sides):
        for j, b in enumerate(sides):
            if i == j:
                auc[i][j], gain[i][j] = _own(a)
                continue
            try:
                f, _ = fixed_cell(a, b, site, c, device)
            except SharedQuestions as e:  # that pair is no transfer test; the others still are
                log.warning("transfer: %s", e)
                continue
            auc[i][j], gain[i][j], top[i][j] = f.auc, f.gain, f.max_auc
    return Transfer([str(r) for r in runs], auc, gain, top)


def _own(side: Side) -> tuple[float | None, float | None]:
    """A run's nested AUC and its gain over its strongest oriented log-prob baseline."""
    if not side.run.has_metrics():
        return None, None
    m = metrics_io.read(side.run)
    if m.headline is None:
        return None, None
    logits = [v for k, v in (m.versus or {}).items() if k.startswith(("logprob", "entropy"))]
    scored = [v for v in logits if v.auc is not None]
    best = max(scored, key=lambda v: v.auc or 0.0) if scored else None
    return m.headline.auc, None if best is None else best.gain
