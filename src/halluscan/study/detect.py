"""``halluscan detect``: the whole-tensor detector, judged against the best cell and the controls.

For each training run (a finished study) the detector is cross-validated on the outer folds of
that run's nested headline selection, so its per-fold AUCs are paired with the nested best cell's
and with every control's (token identity, the text, the locator's rule, the relation, the last_q
probe, the log-probabilities), each scored on the same answers. With several runs it is also
trained on all of them at once (one adapter per model) and scored on each run's own test folds,
paired with the detector trained on that run alone. It is then fitted on every answer of the
runs, saved, and scored on held-out runs (``--test``), against the training run's probe at its
fixed cell and the test run's strongest log-prob baseline, with a bootstrap over the test run's
questions. The maths is :mod:`halluscan.probes.tensor` and :mod:`halluscan.analyses`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from halluscan import atomic
from halluscan.analyses import controls as ctl
from halluscan.analyses.baselines import logprob_scores
from halluscan.analyses.nested import NestedRun, nested
from halluscan.analyses.summary import Interval, mean_ci
from halluscan.analyses.transfer import Paired, cell_scores, paired_bootstrap, strongest_logit
from halluscan.analyses.verdict import strongest
from halluscan.errors import HalluscanError
from halluscan.models.sites import RESIDUAL
from halluscan.positions import EXACT, Cell
from halluscan.probes.sweep import GAIN_BOUNDS
from halluscan.probes.tensor import (
    DEFAULT,
    DetectorConfig,
    Grid,
    Labelled,
    fit_detector,
    grid,
    save_detector,
)
from halluscan.provenance import model_label, package_version
from halluscan.records import CV, JsonObject
from halluscan.study.checks import controls
from halluscan.study.transfer import Side, new_questions, training_cell

NESTED_CELL = "best single cell (nested)"
Say = Callable[[str], None]


@dataclass
class Study:
    """One training or test run: its side (answers, labels, features) and its grid."""

    side: Side
    grid: Grid
    name: str

    @property
    def groups(self) -> np.ndarray:
        """The question id of every answer."""
        return np.array([e.qid for e in self.side.examples])

    @property
    def probed(self) -> np.ndarray:
        """The answers the probes read (ambiguous grades have no position)."""
        return np.flatnonzero(self.grid.mask.any(1).numpy())

    def labelled(self, rows: np.ndarray) -> Labelled:
        """The answers ``rows`` with their labels and questions, to train on."""
        return Labelled(self.grid.rows(rows), self.side.y[rows], self.groups[rows])


def model_key(side: Side) -> str:
    """The adapter's name for a run's model: its id, and the file hash of a GGUF."""
    m = side.store.provenance.get("model")
    return model_label(m if isinstance(m, dict) else {})


def open_study(folder: str | Path, bins: int) -> Study:
    """A finished study's answers on the detector's grid (ambiguous grades left out)."""
    side = Side.open(folder, RESIDUAL)
    g = grid(side.features, model_key(side), side.features.positions, bins)
    return Study(side, g, str(side.run.root))


@dataclass(frozen=True)
class InDataset:
    """The detector cross-validated on one run's nested folds, against what those folds scored."""

    run: str
    model: str
    n: int
    n_wrong: int
    auc: float | None
    ci95: Interval | None
    per_fold: list[float]
    cell: Cell  # the nested best cell it is compared with
    versus: dict[str, ctl.Compared]  # gain = the detector's AUC minus the signal's, per fold
    strongest: str | None
    beats_strongest: bool
    beats_cell: bool


def in_dataset(
    s: Study, cv: CV, cfg: DetectorConfig, device: str, say: Say
) -> tuple[InDataset, NestedRun]:
    """The detector on ``s``'s nested outer folds, paired with the best cell and the controls."""
    features, y, ex = s.side.features, s.side.y, s.side.examples
    groups = s.groups
    exact = [p for p in EXACT if p in features.positions]
    run = nested(features, y, list(groups), exact, cv, device)
    if run is None:
        raise HalluscanError(f"{s.name}: too few answers of a class for the nested folds")
    per_fold = []
    for k, (tr, te) in enumerate(run.splits):
        det = fit_detector([s.labelled(tr)], cfg)
        per_fold.append(ctl.fold_auc(det.score(s.grid.rows(te)), y[te]))
        say(f"  {s.name} fold {k + 1}/{len(run.splits)}: detector {per_fold[-1]:.3f}")
    mine = np.array(per_fold)
    as_probe = NestedRun(replace(run.result, per_fold=per_fold), run.splits)
    versus = {NESTED_CELL: ctl.compare(mine, np.array(run.result.per_fold), run.result.n, "probe")}
    versus |= controls(features, ex, y, groups, as_probe, logprob_scores(ex), cv, device)
    top = strongest({k: v for k, v in versus.items() if k != NESTED_CELL})
    auc, ci = mean_ci(mine)
    return InDataset(
        s.name,
        s.grid.model,
        run.result.n,
        run.result.n_wrong,
        auc,
        ci,
        per_fold,
        run.result.cell,
        versus,
        top,
        bool(top is not None and versus[top].probe_clear),
        versus[NESTED_CELL].probe_clear,
    ), run


@dataclass(frozen=True)
class JointRun:
    """One run's test folds scored by the detector trained on every run's training folds."""

    run: str
    auc: float | None
    ci95: Interval | None
    gain_over_alone: float | None  # minus the detector trained on this run alone, per fold
    gain_over_alone_ci95: Interval | None
    gain_over_cell: float | None  # minus the nested best cell, per fold
    gain_over_cell_ci95: Interval | None


def joint(
    studies: Sequence[Study],
    runs: Sequence[NestedRun],
    alone: Sequence[InDataset],
    cfg: DetectorConfig,
    say: Say,
) -> list[JointRun]:
    """One detector per fold trained on all runs' training folds, scored on each run's test fold."""
    n_folds = {len(r.splits) for r in runs}
    if len(n_folds) != 1:
        raise HalluscanError("detect: the runs have different numbers of folds; use one --folds")
    scores: list[list[float]] = [[] for _ in studies]
    for k in range(n_folds.pop()):
        det = fit_detector(
            [s.labelled(r.splits[k][0]) for s, r in zip(studies, runs, strict=True)], cfg
        )
        for i, (s, r) in enumerate(zip(studies, runs, strict=True)):
            te = r.splits[k][1]
            scores[i].append(ctl.fold_auc(det.score(s.grid.rows(te)), s.side.y[te]))
        say(f"  joint fold {k + 1}: " + ", ".join(f"{a[-1]:.3f}" for a in scores))
    out = []
    for s, r, a, mine in zip(studies, runs, alone, scores, strict=True):
        m = np.array(mine)
        auc, ci = mean_ci(m)
        g1, c1 = mean_ci(m - np.array(a.per_fold), GAIN_BOUNDS)
        g2, c2 = mean_ci(m - np.array(r.result.per_fold), GAIN_BOUNDS)
        out.append(JointRun(s.name, auc, ci, g1, c1, g2, c2))
    return out


@dataclass(frozen=True)
class Held:
    """The detector fitted on every training answer, scored on a held-out run's new questions."""

    test: str
    n: int
    n_wrong: int
    auc: float | None
    ci95: Interval | None
    cell_run: str  # the training run of the test's model whose fixed-cell probe it is paired with
    cell: Cell
    cell_auc: float | None
    cell_ci95: Interval | None
    gain_over_cell: float | None
    gain_over_cell_ci95: Interval | None
    baseline: str | None  # the test run's strongest log-prob score, oriented on cell_run
    baseline_auc: float | None
    gain_over_baseline: float | None
    gain_over_baseline_ci95: Interval | None


def held_out(det_scores: np.ndarray, test: Study, train: Study, c: float, device: str) -> Held:
    """Paired bootstraps: the detector against ``train``'s fixed-cell probe and test log-probs."""
    fresh = new_questions(train.side, test.side)
    cell, _, _ = training_cell(train.side, CV(c=c), device)
    feats = test.side.features.restrict(fresh)
    probe = cell_scores(train.side.features, train.side.y, feats, cell, c, device)
    rows = np.flatnonzero(np.isfinite(probe) & np.isfinite(det_scores) & fresh)
    y = test.side.y[rows]
    if len(set(y.tolist())) < 2:
        raise HalluscanError(f"{test.name}: its new answers hold one class only; use a larger run")
    groups = list(test.groups[rows])
    vs_cell = paired_bootstrap(det_scores[rows], probe[rows], y, groups)
    lp_train, lp_test = logprob_scores(train.side.examples), logprob_scores(test.side.examples)
    base = strongest_logit(lp_train, train.side.y, lp_test, test.side.y, rows)
    vs_base: Paired | None = None
    if base is not None:
        b = base[1] * lp_test[base[0]][rows]
        ok = np.isfinite(b)
        kept = [g for g, k in zip(groups, ok, strict=True) if k]
        vs_base = paired_bootstrap(det_scores[rows][ok], b[ok], y[ok], kept)
    return Held(
        test.name,
        len(rows),
        int(y.sum()),
        vs_cell.auc_a,
        vs_cell.ci_a,
        train.name,
        cell,
        vs_cell.auc_b,
        vs_cell.ci_b,
        vs_cell.gain,
        vs_cell.gain_ci,
        None if base is None else base[0],
        None if vs_base is None else vs_base.auc_b,
        None if vs_base is None else vs_base.gain,
        None if vs_base is None else vs_base.gain_ci,
    )


RESULTS = "detect.json"


@dataclass(frozen=True)
class Detection:
    """Everything ``halluscan detect`` measured, and where the detector was saved."""

    train: list[str]
    test: list[str]
    folder: str
    config: DetectorConfig
    in_dataset: list[InDataset]
    joint: list[JointRun]
    held_out: list[Held]
    seconds: float
    provenance: JsonObject


def _same_positions(studies: Sequence[Study]) -> None:
    held = {s.grid.positions for s in studies}
    if len(held) > 1:
        raise HalluscanError(
            "detect: the runs store different positions; run their studies with the same "
            "--positions"
        )


def _train_run_of(test: Study, train: Sequence[Study]) -> Study:
    """The first training run of the test run's model (its probe is the paired reference)."""
    for s in train:
        if s.grid.model == test.grid.model:
            return s
    raise HalluscanError(
        f"{test.name}: its model ({test.grid.model}) is not among the training runs' models; "
        "the detector has no adapter for it"
    )


def detect(
    train: Sequence[str | Path],
    test: Sequence[str | Path],
    folder: str | Path,
    cv: CV,
    cfg: DetectorConfig = DEFAULT,
    device: str = "cpu",
    say: Say = print,
    cross: bool = True,
) -> Detection:
    """Cross-validate the detector on each ``train`` run (unless ``cross`` is off), then fit it.

    Fitted on all of them, it is saved to ``folder`` and scored on ``test``; the results go to
    ``folder/detect.json``.
    """
    t0 = time.perf_counter()
    if not train:
        raise HalluscanError("detect: give at least one training run (--runs runs/NAME ...)")
    studies = [open_study(f, cfg.bins) for f in train]
    tests = [open_study(f, cfg.bins) for f in test]
    _same_positions([*studies, *tests])
    refs = [_train_run_of(t, studies) for t in tests]  # refuse before the long part
    inside, runs = [], []
    for s in studies if cross else []:
        say(f"detector on {s.name}: cross-validated on its nested folds")
        r, run = in_dataset(s, cv, cfg, device, say)
        inside.append(r)
        runs.append(run)
    both = joint(studies, runs, inside, cfg, say) if cross and len(studies) > 1 else []
    say("detector: fitted on every training answer")
    det = fit_detector([s.labelled(s.probed) for s in studies], cfg)
    held = []
    for t, ref in zip(tests, refs, strict=True):
        held.append(held_out(det.score(t.grid), t, ref, cv.c, device))
    prov: JsonObject = {
        "halluscan": package_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [s.name for s in studies],
        "models": {s.grid.model: s.side.store.provenance.get("model") for s in studies},
        "n_train": {s.name: len(s.probed) for s in studies},
    }
    save_detector(det, folder, {"provenance": prov})
    out = Detection(
        [s.name for s in studies],
        [t.name for t in tests],
        str(folder),
        cfg,
        inside,
        both,
        held,
        round(time.perf_counter() - t0, 1),
        prov,
    )
    atomic.write_json(Path(folder) / RESULTS, asdict(out))
    return out
