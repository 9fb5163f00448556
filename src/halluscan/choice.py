"""Answer choice: sample several answers per question and let the probe pick one.

On the held-out questions of a study, for each question draw ``k`` sampled answers and pick
one three ways: the greedy answer (the study's own), a majority vote over the sampled
exact answers, and the sample the probe scores as least likely wrong. The probe bank is
fitted on the study's *other* questions only (greedy answers, ``exact_answer_last``, the
sweep's best layer), so no held-out question is seen in fitting the probe; the layer itself
is the full study's best, chosen with all questions (a small leak, kept for simplicity).
Accuracy of each choice, the oracle (any sample right) and the mean sample come with paired
bootstrap intervals of the probe's gain over greedy decoding and over the majority vote.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from halluscan import atomic, runs
from halluscan.engine.sampling import Key, sample_answers
from halluscan.errors import HalluscanError
from halluscan.models import load_model
from halluscan.models.loading import model_identity
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import auc_rows, wrong_labels
from halluscan.records import Generation, Grade, Question
from halluscan.runs import RunDir
from halluscan.scan import Scanner
from halluscan.settings import StudySettings
from halluscan.text import normalize


def split_questions(qids: list[str], n_test: int, seed: int) -> tuple[set[str], set[str]]:
    """Held-out and training question ids (disjoint; the held-out ones drawn with ``seed``)."""
    uniq = sorted(set(qids))
    if not 0 < n_test < len(uniq):
        raise HalluscanError(f"--questions {n_test}: give between 1 and {len(uniq) - 1} held-out questions")
    random.Random(seed).shuffle(uniq)
    return set(uniq[:n_test]), set(uniq[n_test:])


def majority(answers: list[str]) -> int:
    """Index of the first sample whose (normalised) answer is the most common one."""
    keys = [normalize(a) for a in answers]
    top = Counter(keys).most_common(1)[0][0]
    return keys.index(top)


def paired_interval(a: np.ndarray, b: np.ndarray, seed: int, n_boot: int = 2000) -> list[float]:
    """95 % bootstrap interval of mean(a - b) over questions (paired)."""
    rng = np.random.default_rng(seed)
    d = a.astype(float) - b.astype(float)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


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
) -> dict[str, Any]:
    """Run the experiment on study folder ``run``; writes its ``answer_choice.json`` and returns it."""
    if samples < 2:
        raise HalluscanError(f"--samples {samples}: answer choice needs at least 2 samples per question")
    if not temperature > 0:
        raise HalluscanError(f"--temperature {temperature}: sampling needs a temperature above 0")
    folder = RunDir(Path(run))
    store = folder.open_store()
    metrics = folder.read_metrics()
    cfg = runs.stored_config(store)
    if "exact_answer_last" not in store.positions:
        raise HalluscanError(f"{run}: the study stored no exact_answer_last activations; re-run it")
    best = metrics.get("best_cells", {}).get("exact_answer_last", {}).get("layer")
    if not isinstance(best, int) or best < 0:
        raise HalluscanError(f"{run}: the sweep found no best layer at exact_answer_last (too few examples?)")

    examples = runs.study_examples(store)
    test_q, train_q = split_questions([e.qid for e in examples], n_test, seed)
    keep = store.valid()[:, store.positions.index("exact_answer_last")] & np.array([e.qid in train_q for e in examples])
    meta = runs.bank_meta(cfg, store.provenance, best)
    bank = ProbeBank.from_store(store, keep, wrong_labels(examples), "exact_answer_last", cfg.probe_c, meta=meta)
    lm = load_model(cfg.model, device=device, dtype=dtype)
    trained_on = store.provenance.get("model")
    if trained_on and model_identity(trained_on) != model_identity(lm.provenance()):
        raise HalluscanError(f"{cfg.model} is not the model this study ran ({trained_on.get('model_id')})")
    settings = StudySettings.build(cfg)
    by_id = {q.qid: q for q in settings.dataset.questions}
    missing = sorted(test_q - set(by_id))
    if missing:
        raise HalluscanError(f"{run}: questions {missing[:3]} are not in dataset {cfg.dataset}; wrong dataset?")
    qs = [by_id[q] for q in sorted(test_q)]
    opts = replace(settings.generation, temperature=temperature, seed=seed)
    stored = runs.load_samples(folder, samples, temperature, seed)  # the study's own samples, when it drew them
    reused = stored is not None and all((q.qid, k) in stored for q in qs for k in range(samples))
    gens = stored if stored is not None and reused else sample_answers(lm, qs, samples, opts, quiet)
    keys = [(q.qid, k) for q in qs for k in range(samples)]
    grades = {key: settings.grader.grade(by_id[key[0]], gens[key]) for key in keys}
    scanner = Scanner(lm, bank, generation=settings.generation, grader=settings.grader)
    scored = [key for key in keys if gens[key].response_ids]  # an empty answer cannot be scored
    p_wrong, located = _probe_scores(scanner, by_id, gens, keys, scored, quiet)
    greedy = {e.qid: e.correct for e in examples}
    rows = _choices(qs, samples, greedy, grades, gens, p_wrong, located)
    acc = {k: float(np.mean(v)) for k, v in rows.items()}
    arr = {k: np.array(v, dtype=float) for k, v in rows.items()}
    y_s = np.array([0 if grades[key].correct else 1 for key in scored])
    s_s = np.array([p_wrong[key] for key in scored])
    out = {
        "n_questions": len(qs),
        "samples": samples,
        "temperature": temperature,
        "seed": seed,
        "probe_layer": scanner.layer,
        "samples_reused_from_study": reused,
        "n_train_examples": int(keep.sum()),
        "accuracy": acc,
        "probe_minus_greedy": _gain(acc, arr, "greedy", seed),
        "probe_minus_majority": _gain(acc, arr, "majority", seed + 1),
        "sample_auc": float(auc_rows(s_s[None], y_s)[0]) if 0 < y_s.sum() < len(y_s) else None,
        "provenance": {"run": str(run), "model": lm.provenance(), "dataset": store.provenance.get("dataset")},
    }
    atomic.write_json(folder.answer_choice, out)
    return out


def _probe_scores(
    scanner: Scanner,
    by_id: dict[str, Question],
    gens: dict[Key, Generation],
    keys: list[Key],
    scorable: list[Key],
    quiet: bool,
) -> tuple[dict[Key, float], dict[Key, bool]]:
    """The probe's p(wrong) of every sample (``scorable`` ones scored), and whether its exact answer was located."""
    bar = tqdm(total=len(scorable), desc="probe scores", unit="answer", disable=quiet)
    items = [(by_id[q].question, gens[(q, k)].response_ids, by_id[q].relation) for q, k in scorable]
    scores = scanner.score_many(items, progress=bar.update, attention=False)
    bar.close()
    p_wrong = {key: 1.0 for key in keys}  # an empty answer is as wrong as it gets
    located = {key: False for key in keys}
    for key, r in zip(scorable, scores, strict=True):
        p_wrong[key], located[key] = r.p_wrong, r.verdict_position == "exact_answer_last"
    return p_wrong, located


def _choices(
    qs: list[Question],
    samples: int,
    greedy: dict[str, bool],
    grades: dict[Key, Grade],
    gens: dict[Key, Generation],
    p_wrong: dict[Key, float],
    located: dict[Key, bool],
) -> dict[str, list[float]]:
    """Per question, whether each way of choosing (and the oracle, and the mean sample) is right."""
    rows: dict[str, list[float]] = {"greedy": [], "majority": [], "probe": [], "oracle": [], "sample_mean": []}
    for q in qs:
        ks = list(range(samples))
        right = [grades[(q.qid, k)].correct for k in ks]
        texts = [grades[(q.qid, k)].exact_text or gens[(q.qid, k)].response for k in ks]
        cands = [k for k in ks if located[(q.qid, k)]] or ks
        pick = min(cands, key=lambda k: p_wrong[(q.qid, k)])
        rows["greedy"].append(greedy[q.qid])
        rows["majority"].append(right[majority(texts)])
        rows["probe"].append(right[pick])
        rows["oracle"].append(any(right))
        rows["sample_mean"].append(float(np.mean(right)))
    return rows


def _gain(acc: dict[str, float], arr: dict[str, np.ndarray], other: str, seed: int) -> dict[str, Any]:
    return {"mean": acc["probe"] - acc[other], "ci95": paired_interval(arr["probe"], arr[other], seed)}
