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

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from halluscan.errors import HalluscanError
from halluscan.probes import ProbeBank, auc_rows
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


def answer_choice(run: str | Path, *, samples: int = 5, n_test: int = 300, temperature: float = 1.0,
                  seed: int = 0, quiet: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the experiment on study folder ``run``; writes ``run/answer_choice.json`` and returns it."""
    from halluscan.data import load_dataset
    from halluscan.generate import GenerateOptions, generate
    from halluscan.grade import Grader
    from halluscan.models import load_model
    from halluscan.models.loading import model_identity
    from halluscan.pipeline import bank_meta
    from halluscan.scan import Scanner
    from halluscan.store import atomic_write_json
    from halluscan.transfer import run_dir_store

    if samples < 2:
        raise HalluscanError(f"--samples {samples}: answer choice needs at least 2 samples per question")
    if not temperature > 0:
        raise HalluscanError(f"--temperature {temperature}: sampling needs a temperature above 0")
    run = Path(run)
    store = run_dir_store(run)
    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        raise HalluscanError(f"{run}: no metrics.json; give a finished study folder (runs/NAME from `halluscan run`)")
    metrics = json.loads(metrics_path.read_text())
    prov = store.m.get("provenance") or {}
    cfg = prov.get("config") or {}
    if "exact_answer_last" not in store.positions or not cfg:
        raise HalluscanError(f"{run}: the study stored no exact_answer_last activations or no config; re-run it")
    best = metrics.get("best_cells", {}).get("exact_answer_last", {}).get("layer")
    if not isinstance(best, int) or best < 0:
        raise HalluscanError(f"{run}: the sweep found no best layer at exact_answer_last (too few examples?)")

    examples = store.examples()
    test_q, train_q = split_questions([e["qid"] for e in examples], n_test, seed)
    keep = store.valid()[:, store.positions.index("exact_answer_last")] & np.array(
        [e["qid"] in train_q for e in examples]
    )
    bank = ProbeBank.from_store(store, keep, "exact_answer_last", float(cfg.get("probe_c", 0.05)),
                                meta=bank_meta(cfg, prov, best))  # fmt: skip

    lm = load_model(cfg["model"])
    if prov.get("model") and model_identity(prov["model"]) != model_identity(lm.provenance()):
        raise HalluscanError(f"{cfg['model']} is not the model this study ran ({prov['model'].get('model_id')})")
    ds = load_dataset(cfg.get("dataset", "world-facts"))
    grader = Grader(ds.relation_vocab, ds.entity_vocab, cfg.get("locator", "class-blind"))
    scanner = Scanner(lm, bank, grader=grader)
    by_id = {q.qid: q for q in ds.questions}
    missing = sorted(test_q - set(by_id))
    if missing:
        raise HalluscanError(f"{run}: questions {missing[:3]} are not in dataset {cfg.get('dataset')}; wrong dataset?")
    greedy = {e["qid"]: bool(e["correct"]) for e in examples}
    qs = [by_id[q] for q in sorted(test_q)]

    opts = GenerateOptions(max_new_tokens=int(cfg.get("max_new_tokens", 32)), stop=cfg.get("stop", "sentence"),
                           system_prompt=cfg.get("system_prompt", ""), batch_size=int(cfg.get("batch_size", 64)),
                           temperature=temperature, seed=seed)  # fmt: skip
    rep = [q for q in qs for _ in range(samples)]
    bar = tqdm(total=len(rep), desc="sample answers", unit="answer", disable=quiet)
    gens = {}
    order: dict[str, int] = {}
    for batch, _, _ in generate(lm, rep, opts, progress=bar.update):
        for g in batch:
            k = order.get(g.qid, 0)
            order[g.qid] = k + 1
            gens[(g.qid, k)] = g
    bar.close()
    keys = [(q.qid, k) for q in qs for k in range(samples)]
    grades = {key: grader.grade(by_id[key[0]], gens[key]) for key in keys}
    scorable = [key for key in keys if gens[key].response_ids]
    bar = tqdm(total=len(scorable), desc="probe scores", unit="answer", disable=quiet)
    res = scanner.score_many([(by_id[q].question, gens[(q, k)].response_ids, by_id[q].relation) for q, k in scorable],
                             progress=bar.update, attention=False)  # fmt: skip
    bar.close()
    p_wrong = {key: 1.0 for key in keys}  # an empty answer is as wrong as it gets
    located = {key: False for key in keys}
    for key, r in zip(scorable, res, strict=True):
        p_wrong[key], located[key] = r.p_wrong, r.verdict_position == "exact_answer_last"

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
    acc = {k: float(np.mean(v)) for k, v in rows.items()}
    arr = {k: np.array(v, dtype=float) for k, v in rows.items()}
    y_s = np.array([0 if grades[key].correct else 1 for key in scorable])
    s_s = np.array([p_wrong[key] for key in scorable])
    out = {
        "n_questions": len(qs), "samples": samples, "temperature": temperature, "seed": seed,
        "probe_layer": scanner.layer, "n_train_examples": int(keep.sum()),
        "accuracy": acc,
        "probe_minus_greedy": {"mean": acc["probe"] - acc["greedy"],
                               "ci95": paired_interval(arr["probe"], arr["greedy"], seed)},
        "probe_minus_majority": {"mean": acc["probe"] - acc["majority"],
                                 "ci95": paired_interval(arr["probe"], arr["majority"], seed + 1)},
        "sample_auc": float(auc_rows(s_s[None], y_s)[0]) if 0 < y_s.sum() < len(y_s) else None,
        "provenance": {"run": str(run), "model": lm.provenance(), "dataset": prov.get("dataset")},
    }  # fmt: skip
    atomic_write_json(run / "answer_choice.json", out)
    return out
