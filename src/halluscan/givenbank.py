"""A study's given-answer bank: true and false given answers, their sweep and bank, and both banks compared.

The own-answer bank (``runs/NAME/probes``) is trained on the model's greedy answers, labelled by
their grade: it reads whether the model believes what it wrote. A user who scores an answer the
model did not write needs another probe: one trained on given answers labelled by their truth
(``runs/NAME/probes_given``). Both answers of a question are fed off its prompt's KV cache during
the generation pass (:mod:`halluscan.engine.given`), so this stage only sweeps, fits and compares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from halluscan.cluster.sweep import study_sweep
from halluscan.config import StudyConfig
from halluscan.data.pairs import TEMPLATE, given_answers
from halluscan.engine.given import GIVEN_POSITIONS, Forced, forced
from halluscan.engine.store import ActivationStore
from halluscan.models.loading import LoadedModel
from halluscan.probes.bank import ProbeBank
from halluscan.probes.crossfit import cross_auc, question_folds
from halluscan.probes.sweep import SweepResult, wrong_labels
from halluscan.records import Example, Question
from halluscan.runs import RunDir, bank_meta, given_store_key
from halluscan.settings import StudySettings

POSITION = "exact_answer_last"  # where both banks are trained and read


def given_items(settings: StudySettings, lm: LoadedModel, qs: list[Question]) -> list[Forced]:
    """The study's given answers (gold + distractor per question), tokenised as ``score --answer`` does."""
    return forced(lm, given_answers(qs, settings.dataset, settings.config.seed))


def open_given_store(
    run: RunDir, own_key: str, cfg: StudyConfig, lm: LoadedModel, prov: dict[str, Any]
) -> ActivationStore:
    """The given answers' store (every residual layer at :data:`GIVEN_POSITIONS`), resumable like the study's."""
    layout = {
        "positions": list(GIVEN_POSITIONS),
        "dtype": cfg.store_dtype,
        "sites": {"residual": {"layers": list(range(lm.n_layers + 1)), "dims": [lm.hidden_size]}},
    }
    key = given_store_key(own_key, TEMPLATE, GIVEN_POSITIONS)
    return ActivationStore.open_or_create(run.store_given, key=key, layout=layout, provenance=prov)


def _cell(result: SweepResult, layer: int, n: int) -> dict[str, Any]:
    j = result.positions.index(POSITION)
    lo, hi = result.interval(layer, POSITION)
    return {"auc": float(result.auc[result.layers.index(layer), j]), "ci95": [lo, hi], "n": n, "layer": layer}


def given_bank(
    cfg: StudyConfig,
    gstore: ActivationStore,
    own: tuple[ActivationStore, list[Example], SweepResult | None],
    run: RunDir,
    prov: dict[str, Any],
    device: str,
) -> tuple[dict[str, Any], SweepResult | None]:
    """Sweep the given answers, save their bank, and score each bank on each kind of answer.

    ``own`` is the study's store, examples and sweep (None when it had too few of a class).
    Returns the metrics (``metrics["given_bank"]``) and the given sweep (None: too few answers).
    """
    recs = gstore.examples()
    y = np.array([int(r["false"]) for r in recs], dtype=np.int64)
    groups = [str(r["question_id"]) for r in recs]
    n_q = len(set(groups))
    if n_q < 2 * cfg.folds:
        why = f"No given-answer bank: {n_q} questions have a false answer of their type; {2 * cfg.folds} are needed."
        return {"skipped": why, "n_answers": len(recs), "n_questions": n_q}, None
    result = study_sweep(cfg, gstore, y, groups, device, desc="given-answer sweep")
    layer, _ = result.best(POSITION)
    keep = gstore.valid()[:, gstore.positions.index(POSITION)]
    if layer < 0:  # too few located answers of a class at exact_answer_last
        why = f"No given-answer bank: too few given answers of a class have a located exact answer ({int(keep.sum())})."
        return {"skipped": why, "n_answers": len(recs), "n_questions": n_q}, None
    meta = bank_meta(cfg, prov, layer, kind="given") | {"template": TEMPLATE}
    ProbeBank.from_store(gstore, keep, y, POSITION, cfg.probe_c, "residual", meta, device).save(run.probes_given)
    out: dict[str, Any] = {
        "n_answers": len(recs),
        "n_questions": n_q,
        "template": TEMPLATE,
        "best": _cell(result, layer, int(keep.sum())),
        "layer0": _cell(result, result.layers[0], int(keep.sum())),  # the answer's identity alone
        "probe_bank": str(run.probes_given),
        "cross": _cross(cfg, gstore, (y, groups, keep, layer), own, device),
    }
    return out, result


def _cross(
    cfg: StudyConfig,
    gstore: ActivationStore,
    given: tuple[np.ndarray, list[str], np.ndarray, int],
    own: tuple[ActivationStore, list[Example], SweepResult | None],
    device: str,
) -> dict[str, Any]:
    """Each bank (at its best layer) on own greedy answers and on given pairs, held out by question."""
    y, groups, keep, given_layer = given
    store, examples, own_sweep = own
    g = np.asarray(groups)[keep]
    folds = question_folds(y[keep], list(g), cfg.folds, cfg.seed)
    xg = gstore.position(POSITION)[torch.from_numpy(keep), gstore.layers("residual").index(given_layer)]
    given_set = (xg, y[keep], list(g))
    out: dict[str, Any] = {"given_bank": {"given_pairs": None, "own_answers": None}, "own_bank": {}}
    out["given_bank"]["given_pairs"] = {"auc": None, "ci95": None, "n": int(keep.sum()), "layer": given_layer}
    own_layer = own_sweep.best(POSITION)[0] if own_sweep is not None and POSITION in own_sweep.positions else -1
    if own_sweep is None or own_layer < 0:  # no own-answer probe at exact_answer_last
        return out
    okeep = store.valid()[:, store.positions.index(POSITION)]
    xo = store.position(POSITION, cfg.site)[torch.from_numpy(okeep), store.layers(cfg.site).index(own_layer)]
    own_set = (xo, wrong_labels(examples)[okeep], [e.qid for e, k in zip(examples, okeep, strict=True) if k])
    out["own_bank"] = {
        "own_answers": _cell(own_sweep, own_layer, int(okeep.sum())),
        "given_pairs": {**cross_auc(own_set, given_set, folds, cfg.probe_c, device), "layer": own_layer},
    }
    out["given_bank"] = {
        "given_pairs": {**cross_auc(given_set, given_set, folds, cfg.probe_c, device), "layer": given_layer},
        "own_answers": {**cross_auc(given_set, own_set, folds, cfg.probe_c, device), "layer": given_layer},
    }
    return out
