"""A study's given-answer bank.

True and false given answers, their sweep and bank, and both banks compared.


The own-answer bank (``runs/NAME/probes``) is trained on the model's greedy answers, labelled by
their grade: it reads whether the model believes what it wrote. A user who scores an answer the
model did not write needs another probe: one trained on given answers labelled by their truth
(``runs/NAME/probes_given``). Both answers of a question are fed off its prompt's KV cache during
the generation pass (:mod:`halluscan.engine.given`), so this stage only sweeps, fits and compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from halluscan.analyses.given import GivenBank, HeldOut, OwnAnswers, by_kind, cross_banks
from halluscan.data.pairs import TEMPLATE, given_answers, own_wrong
from halluscan.engine.given import Forced, forced
from halluscan.models.sites import RESIDUAL
from halluscan.positions import BANK_POSITION, GIVEN_POSITIONS
from halluscan.probes.crossfit import Answers
from halluscan.probes.sweep import SweepResult, wrong_labels
from halluscan.provenance import Provenance
from halluscan.records import Example
from halluscan.store import ActivationStore
from halluscan.store.layout import Layout, SiteLayout
from halluscan.study.arrays import fit_bank, study_sweep
from halluscan.study.context import StudyContext
from halluscan.study.runs import bank_meta, given_store_key

SITE = RESIDUAL  # given answers are read in the residual stream, whatever the study's site


@dataclass(frozen=True)
class OwnStudy:
    """The study's own answers.

    Its store, its graded examples, and its sweep (None: too few of a class).
    """

    store: ActivationStore
    examples: list[Example]
    sweep: SweepResult | None


def given_items(ctx: StudyContext) -> list[Forced]:
    """The study's given answers (gold + distractors per question), tokenised as ``score`` does."""
    return forced(ctx.lm, given_answers(list(ctx.questions), ctx.dataset, ctx.config.seed))


def own_wrong_items(ctx: StudyContext, examples: list[Example]) -> list[Forced]:
    """The model's own wrong answers of the study, as given answers to teacher-force."""
    answered = {e.qid: (e.correct, e.exact_text) for e in examples}
    return forced(ctx.lm, own_wrong(list(ctx.questions), answered))


def open_given_store(ctx: StudyContext, own_key: str, prov: Provenance) -> ActivationStore:
    """The given answers' store (every residual layer at the given positions); it resumes too."""
    lm = ctx.lm
    site = SiteLayout(tuple(range(lm.n_layers + 1)), (lm.hidden_size,))
    layout = Layout(GIVEN_POSITIONS, ctx.config.store_dtype, {SITE: site})
    key = given_store_key(own_key, TEMPLATE, GIVEN_POSITIONS)
    return ActivationStore.open_or_create(
        ctx.run.store_given, key=key, layout=layout, provenance=prov.to_json()
    )


def given_bank(
    ctx: StudyContext, gstore: ActivationStore, own: OwnStudy, prov: Provenance
) -> tuple[GivenBank, SweepResult | None]:
    """Sweep the given answers, save their bank, and score each bank on each kind of answer.

    Returns the record and the given sweep (None: too few answers).
    """
    recs, folds = gstore.examples(), ctx.config.folds
    y = np.array([int(r["false"]) for r in recs], dtype=np.int64)
    groups = [str(r["question_id"]) for r in recs]
    n_q = len(set(groups))
    if n_q < 2 * folds:
        why = (
            f"No given-answer bank: {n_q} questions have a false answer of their type; {2 * folds} "
            "are needed."
        )
        return GivenBank(len(recs), n_q, skipped=why), None
    result = study_sweep(ctx, gstore, y, groups, SITE, "given-answer sweep")
    layer, _ = result.best(BANK_POSITION)
    keep = gstore.valid()[:, gstore.positions.index(BANK_POSITION)]
    if layer < 0:  # too few located answers of a class at the bank's position
        why = (
            "No given-answer bank: too few given answers of a class have a located exact answer "
            f"({int(keep.sum())})."
        )
        return GivenBank(len(recs), n_q, skipped=why), None
    meta = bank_meta(ctx.config, prov.to_json(), result, kind="given") | {"template": TEMPLATE}
    bank = fit_bank(gstore, y, BANK_POSITION, SITE, ctx.config.cv, meta, ctx.probe_device)
    assert bank is not None  # the sweep found both classes there
    bank.save(ctx.run.probes_given)
    given = Answers(_cell(gstore, SITE, layer, keep), y[keep], list(np.asarray(groups)[keep]))
    kinds = np.array([r.get("kind") or str(r["qid"]).rsplit("#", 1)[-1] for r in recs])[keep]
    right = {e.qid for e in own.examples if e.correct}
    cfg = ctx.config
    kinds_auc = by_kind(given, kinds, right, layer, folds, cfg.seed, cfg.probe_c, ctx.probe_device)
    cross = cross_banks(
        given,
        layer,
        own_answers(own, ctx.site),
        folds,
        ctx.config.seed,
        ctx.config.probe_c,
        ctx.probe_device,
    )
    n = int(keep.sum())
    out = GivenBank(
        len(recs),
        n_q,
        template=TEMPLATE,
        best=HeldOut.of_sweep(result, BANK_POSITION, layer, n),
        # the answer's identity alone
        layer0=HeldOut.of_sweep(result, BANK_POSITION, result.layers[0], n),
        probe_bank=str(ctx.run.probes_given),
        cross=cross,
        by_kind=kinds_auc,
    )
    return out, result


def _cell(store: ActivationStore, site: str, layer: int, keep: np.ndarray) -> torch.Tensor:
    """``[n, d]``: the bank position's activations at ``layer`` for the rows ``keep`` selects."""
    return store.position(BANK_POSITION, site)[
        torch.from_numpy(keep), store.layers(site).index(layer)
    ]


def own_answers(own: OwnStudy, site: str) -> OwnAnswers | None:
    """The own-answer bank's data at its sweep's best layer at the bank position (None: no cell)."""
    sweep = own.sweep
    layer = (
        sweep.best(BANK_POSITION)[0]
        if sweep is not None and BANK_POSITION in sweep.positions
        else -1
    )
    if sweep is None or layer < 0:
        return None
    keep = own.store.valid()[:, own.store.positions.index(BANK_POSITION)]
    qids = [e.qid for e, k in zip(own.examples, keep, strict=True) if k]
    answers = Answers(_cell(own.store, site, layer, keep), wrong_labels(own.examples)[keep], qids)
    return OwnAnswers(
        answers, layer, HeldOut.of_sweep(sweep, BANK_POSITION, layer, int(keep.sum()))
    )
