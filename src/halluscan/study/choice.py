"""Answer choice: sample several answers per held-out question and let the probe pick one.

On the held-out questions of a study, draw ``k`` sampled answers per question and pick one three
ways (:mod:`halluscan.analyses.choice`). The probe bank is fitted on the study's *other*
questions only (greedy answers, the bank position), and its layer is the best of a sweep on those
questions alone, so no held-out question is seen in fitting the probe or in choosing its layer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from halluscan import atomic, progress
from halluscan.analyses.choice import (
    Candidate,
    ChoiceResult,
    choices,
    gains,
    sample_auc,
    split_questions,
)
from halluscan.engine.sampling import Key, sample_answers
from halluscan.errors import HalluscanError
from halluscan.models import load_model
from halluscan.models.loading import LoadedModel
from halluscan.positions import BANK_POSITION
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import sweep, wrong_labels
from halluscan.provenance import model_identity
from halluscan.records import Example, Generation, Question, ToScore
from halluscan.scan import Scanner
from halluscan.store import ActivationStore
from halluscan.study import runs
from halluscan.study.arrays import fit_bank, store_features
from halluscan.study.context import StudyPlan
from halluscan.study.metrics import to_json


def _train_bank(
    run: runs.RunDir, store: ActivationStore, examples: list[Example], train_q: set[str]
) -> ProbeBank:
    """The bank fitted on the training questions' greedy answers only.

    Its layer is chosen by a cross-validated sweep on those answers alone: the held-out questions
    never pick the cell that scores them.
    """
    cfg = runs.stored_config(store)
    if BANK_POSITION not in store.positions:
        raise HalluscanError(
            f"{run.root}: the study stored no {BANK_POSITION} activations; re-run it"
        )
    keep = np.array([e.qid in train_q for e in examples])
    y = wrong_labels(examples)
    features = store_features(store, cfg.site).restrict(keep, [BANK_POSITION])
    groups = [e.qid for e in examples]
    result = sweep(features, y, groups, folds=cfg.folds, seed=cfg.seed, c=cfg.probe_c)
    if result.best(BANK_POSITION)[0] < 0:
        raise HalluscanError(
            f"{run.root}: the training questions give no best layer at {BANK_POSITION} (too few "
            "answers of a class?); use fewer --questions"
        )
    meta = runs.bank_meta(cfg, store.provenance, result)
    bank = fit_bank(store, y, BANK_POSITION, cfg.site, cfg.cv, meta, keep=keep)
    assert bank is not None  # the sweep found both classes there
    return bank


def answer_choice(
    run: str | Path,
    *,
    samples: int = 5,
    n_test: int = 300,
    temperature: float = 1.0,
    seed: int = 0,
    quiet: bool = False,
    device: str = "auto",
    dtype: str = "auto",
) -> ChoiceResult:
    """Run the experiment on study folder ``run``.

    Writes its ``answer_choice.json`` and returns it.
    """
    if samples < 2:
        raise HalluscanError(
            f"--samples {samples}: answer choice needs at least 2 samples per question"
        )
    if not temperature > 0:
        raise HalluscanError(f"--temperature {temperature}: sampling needs a temperature above 0")
    folder = runs.RunDir(Path(run))
    store = folder.open_store()
    examples = runs.study_examples(store)
    test_q, train_q = split_questions([e.qid for e in examples], n_test, seed)
    bank = _train_bank(folder, store, examples, train_q)
    plan = StudyPlan.of(runs.stored_config(store))
    lm = _study_model(plan, store.provenance.get("model"), device, dtype)
    qs = _held_out(plan, test_q, run)
    opts = replace(plan.config.generate_options(), temperature=temperature, seed=seed)
    stored = runs.load_samples(folder, samples, temperature, seed)  # the study's own samples
    reused = stored is not None and all((q.qid, k) in stored for q in qs for k in range(samples))
    gens = stored if stored is not None and reused else sample_answers(lm, qs, samples, opts, quiet)
    scanner = Scanner(lm, bank, generation=plan.config.generate_options(), grader=plan.grader)
    cands = _candidates(scanner, plan, qs, gens, samples, quiet)
    greedy = {e.qid: e.correct for e in examples}
    acc, over_greedy, over_majority = gains(choices([greedy[q.qid] for q in qs], cands), seed)
    model, data = lm.provenance().to_json(), store.provenance.get("dataset")
    prov = {"run": str(run), "model": model, "dataset": data}
    out = ChoiceResult(
        len(qs),
        samples,
        temperature,
        seed,
        scanner.layer,
        reused,
        int(bank.meta["n_train"]),
        acc,
        over_greedy,
        over_majority,
        sample_auc(cands),
        prov,
    )
    atomic.write_json(folder.answer_choice, to_json(out))
    return out


def _study_model(plan: StudyPlan, trained_on: Any, device: str, dtype: str) -> LoadedModel:
    """The study's model, as the study loaded it; refused when its file is another."""
    c = plan.config
    lm = load_model(
        c.model, device=device, dtype=dtype, revision=c.revision, chat_template=c.chat_template
    )
    if trained_on and model_identity(trained_on) != model_identity(lm.provenance()):
        raise HalluscanError(
            f"{c.model} is not the model this study ran ({trained_on.get('model_id')})"
        )
    return lm


def _held_out(plan: StudyPlan, test_q: set[str], run: str | Path) -> list[Question]:
    """The held-out questions, in id order; refused when the dataset no longer has them."""
    by_id = {q.qid: q for q in plan.dataset.questions}
    missing = sorted(test_q - set(by_id))
    if missing:
        raise HalluscanError(
            f"{run}: questions {missing[:3]} are not in dataset {plan.config.dataset}; wrong "
            "dataset?"
        )
    return [by_id[q] for q in sorted(test_q)]


def _candidates(
    scanner: Scanner,
    plan: StudyPlan,
    qs: list[Question],
    gens: dict[Key, Generation],
    samples: int,
    quiet: bool,
) -> list[list[Candidate]]:
    """Every sample of every question, graded and scored by the probe.

    An empty answer cannot be scored: it counts as wrong as it gets.

    """
    by_id = {q.qid: q for q in qs}
    keys = [(q.qid, k) for q in qs for k in range(samples)]
    scorable = [key for key in keys if gens[key].response_ids]
    bar = progress.bar(len(scorable), "probe scores", "answer", quiet)
    items = [
        ToScore(by_id[q].question, gens[(q, k)].response_ids, by_id[q].relation)
        for q, k in scorable
    ]
    scored = dict(
        zip(scorable, scanner.score_many(items, progress=bar.update, attention=False), strict=True)
    )
    bar.close()
    out = []
    for q in qs:
        row = []
        for k in range(samples):
            g, r = plan.grader.grade(q, gens[(q.qid, k)]), scored.get((q.qid, k))
            text = g.exact_text or gens[(q.qid, k)].response
            p, located = (r.p_wrong, r.verdict_position == BANK_POSITION) if r else (1.0, False)
            row.append(Candidate(g.correct, text, p, located, scored=r is not None))
        out.append(row)
    return out
