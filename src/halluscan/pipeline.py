"""The chain of stages behind ``halluscan run``: generate -> grade -> locate -> extract -> probe -> report."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from halluscan import provenance
from halluscan.config import StudyConfig
from halluscan.errors import HalluscanError
from halluscan.generate import GenerateOptions, generate
from halluscan.grade import Grader, spans_overlap
from halluscan.models import load_model
from halluscan.models.loading import LoadedModel
from halluscan.positions import EXACT, resolve, token_span
from halluscan.probes import ProbeBank, SweepResult, metadata_prior_auc, sweep, wrong_labels
from halluscan.records import Dataset, Generation, Grade, Question
from halluscan.store import ActivationStore, ChunkWriter, atomic_write_json

# Config fields that change what goes into the store (the rest only change the analysis).
STORE_FIELDS = ("model", "dataset", "n_questions", "max_new_tokens", "stop", "system_prompt", "positions", "site",
                "store_dtype", "locator", "seed")  # fmt: skip


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


def select_questions(ds: Dataset, n: int, seed: int) -> list[Question]:
    """All questions, or a seeded random sample of ``n`` of them (kept in dataset order)."""
    qs = list(ds.questions)
    if not qs:
        raise HalluscanError(f"dataset {ds.name!r} has no questions; give a file with at least one row")
    if 0 < n < len(qs):
        keep = set(random.Random(seed).sample(range(len(qs)), n))
        qs = [q for i, q in enumerate(qs) if i in keep]
    return qs


def example_record(q: Question, g: Generation, gr: Grade, idx: dict[str, int | None]) -> dict[str, Any]:
    """The JSON record stored beside an example's activations."""
    span = lambda s: [s.start, s.end] if s else None  # noqa: E731
    return {
        "qid": q.qid, "relation": q.relation, "question": q.question, "gold": q.answer,
        "response": g.response, "correct": gr.correct, "exact_text": gr.exact_text,
        "exact_span": span(gr.exact_span), "alias_span": span(gr.alias_span), "locator": gr.locator,
        "stopped_by": g.stopped_by, "n_prompt": len(g.prompt_ids), "response_ids": list(g.response_ids),
        "positions": idx,
    }  # fmt: skip


def gather_batch(
    gens: list[Generation], grades: list[Grade], states: torch.Tensor, tail: int, positions: list[str]
) -> tuple[torch.Tensor, np.ndarray, list[dict[str, int | None]]]:
    """Pick each example's named positions out of its captured states -> [B, layer, pos, H]."""
    b, n_layers, _, h = states.shape
    acts = torch.zeros(b, n_layers, len(positions), h, dtype=states.dtype)
    valid = np.zeros((b, len(positions)), dtype=bool)
    all_idx = []
    for i, (g, gr) in enumerate(zip(gens, grades, strict=True)):
        p, r = len(g.prompt_ids), len(g.response_ids)
        exact = token_span(gr.exact_span, g.token_starts, len(g.response)) if gr.exact_span else None
        idx = {name: resolve(name, p, r, exact) for name in positions}
        for j, name in enumerate(positions):
            k = idx[name]
            col = None if k is None else (k - (p - tail) if k < p else tail + k - p)
            if col is not None and 0 <= col < states.shape[2]:
                acts[i, :, j] = states[i, :, col]
                valid[i, j] = True
            else:
                idx[name] = None
        all_idx.append(idx)
    return acts, valid, all_idx


def extract_study(cfg: StudyConfig, lm: LoadedModel, ds: Dataset, qs: list[Question], store: ActivationStore) -> None:
    """Generate, grade, locate and store activations for the questions not yet in the store."""
    done = store.stored_ids()
    todo = [q for q in qs if q.qid not in done]
    by_id = {q.qid: q for q in qs}
    grader = Grader(ds.relation_vocab, ds.entity_vocab, cfg.locator)
    opts = GenerateOptions(cfg.max_new_tokens, cfg.stop, cfg.system_prompt, cfg.batch_size)
    layers = list(range(lm.n_layers + 1))
    positions = list(cfg.positions)
    bar = tqdm(total=len(qs), initial=len(qs) - len(todo), desc="generate+extract", unit="q", disable=cfg.quiet)
    with ChunkWriter(store) as writer:  # disk writes overlap the next batch's generation
        for gens, states, tail in generate(lm, todo, opts, layers, progress=bar.update):
            assert states is not None
            grades = [grader.grade(by_id[g.qid], g) for g in gens]
            acts, valid, idx = gather_batch(gens, grades, states, tail, positions)
            recs = [example_record(by_id[g.qid], g, gr, ix) for g, gr, ix in zip(gens, grades, idx, strict=True)]
            writer.put({cfg.site: acts}, valid, recs)
            bar.set_postfix(acc=f"{np.mean([e['correct'] for e in recs]):.2f}")
    bar.close()


def summarise(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (overall, by relation), exact-answer coverage and locator agreement."""
    rel = Counter(e["relation"] for e in examples)
    corr = [e for e in examples if e["correct"]]
    wrong = [e for e in examples if not e["correct"]]
    found = lambda xs: float(np.mean([e["exact_span"] is not None for e in xs])) if xs else 0.0  # noqa: E731
    agree = [spans_overlap(_span(e["exact_span"]), _span(e["alias_span"])) for e in corr]
    return {
        "n_graded": len(examples),
        "accuracy": float(np.mean([e["correct"] for e in examples])),
        "accuracy_by_relation": {
            r: float(np.mean([e["correct"] for e in examples if e["relation"] == r])) for r in sorted(rel)
        },
        "n_by_relation": dict(sorted(rel.items())),
        "exact_answer_found": {"correct": found(corr), "wrong": found(wrong)},
        "exact_answer_missing": sum(e["exact_span"] is None for e in examples),
        "locator_agreement_correct": float(np.mean(agree)) if agree else 0.0,
        "locator_rules": dict(Counter(e["locator"] for e in examples)),
        "stopped_by": dict(Counter(e["stopped_by"] for e in examples)),
    }


def _span(s: list[int] | None) -> Any:
    from halluscan.records import Span

    return Span(*s) if s else None


def probe_study(
    cfg: StudyConfig, store: ActivationStore, examples: list[dict[str, Any]]
) -> tuple[SweepResult, dict[str, float]]:
    """The (layer, position) sweep and the two controls."""
    y = wrong_labels(examples)
    groups = [e["qid"] for e in examples]
    bar = tqdm(total=len(store.positions), desc="probe sweep", unit="pos", disable=cfg.quiet)
    res = sweep(lambda p: store.position(p, cfg.site), store.valid(), y, groups, store.layers(cfg.site),
                store.positions, folds=cfg.folds, seed=cfg.seed, c=cfg.probe_c, progress=bar.update)  # fmt: skip
    bar.close()
    exact = [p for p in res.positions if p in EXACT]
    l0 = res.auc[0, [res.positions.index(p) for p in exact]] if exact else np.array([np.nan])
    controls = {
        "relation_prior_auc": metadata_prior_auc([e["relation"] for e in examples], y, groups, cfg.folds, cfg.seed),
        "layer0_exact_auc": float(np.nanmax(l0)) if not np.all(np.isnan(l0)) else float("nan"),
        "layer0_last_q_auc": float(res.auc[0, res.positions.index("last_q")])
        if "last_q" in res.positions
        else float("nan"),
    }
    return res, controls


def finding(res: SweepResult, controls: dict[str, float]) -> dict[str, Any]:
    """Check whether the best exact-answer cell beats last_q and both controls."""
    exact = [(p, *res.best(p)) for p in res.positions if p in EXACT]
    pos, layer, auc = max(exact, key=lambda t: -1 if np.isnan(t[2]) else t[2]) if exact else ("", -1, float("nan"))
    last_q = res.best("last_q")[1] if "last_q" in res.positions else float("nan")
    return {
        "best_exact_position": pos, "best_exact_layer": layer, "best_exact_auc": auc,
        "exact_beats_last_q": bool(auc > last_q), "exact_beats_layer0": bool(auc > controls["layer0_exact_auc"]),
        "exact_beats_relation_prior": bool(auc > controls["relation_prior_auc"]),
    }  # fmt: skip


def run_study(cfg: StudyConfig) -> dict[str, Any]:
    """Run the whole study; writes RUNS_DIR/NAME/{store,metrics.json,report.html,...}; returns metrics."""
    from halluscan import plots, report
    from halluscan.data import load_dataset

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    timer = Timer()
    with timer("load_dataset"):
        ds = load_dataset(cfg.dataset)
        qs = select_questions(ds, cfg.n_questions, cfg.seed)
    with timer("load_model"):
        lm = load_model(cfg.model)
    out = Path(cfg.runs_dir) / cfg.name
    conf = cfg.to_dict()
    prov = provenance.record(lm.provenance(), {"name": ds.name, "sha256": ds.sha256, "n_questions": len(qs)}, conf)
    key = provenance.digest({"model": lm.provenance(), "dataset": ds.sha256, **{k: conf[k] for k in STORE_FIELDS}})
    layout = {
        "positions": list(cfg.positions),
        "dtype": cfg.store_dtype,
        "sites": {cfg.site: {"layers": list(range(lm.n_layers + 1)), "dims": [int(lm.model.config.hidden_size)]}},
    }
    store = ActivationStore.open_or_create(out / "store", key=key, layout=layout, provenance=prov)
    with timer("generate_extract"):
        extract_study(cfg, lm, ds, qs, store)
    examples = store.examples()
    with timer("probe_sweep"):
        res, controls = probe_study(cfg, store, examples)
    metrics: dict[str, Any] = {"name": cfg.name, **summarise(examples)}
    metrics["heatmap"] = {"site": cfg.site, "layers": res.layers, "positions": res.positions, "folds": res.folds,
                          "auc": _nan_to_none(res.auc), "auc_std": _nan_to_none(res.auc_std),
                          "n_per_position": res.n}  # fmt: skip
    metrics["best_cells"] = best_cells(res, controls)
    metrics["controls"] = controls
    metrics["finding"] = finding(res, controls)
    with timer("probe_bank"):
        metrics["probe_bank"] = save_probe_bank(cfg, store, examples, out / "probes", prov,
                                                best_layer=res.best("exact_answer_last")[0]
                                                if "exact_answer_last" in res.positions else None)  # fmt: skip
    with timer("response_maps"):
        maps = response_maps(cfg, lm, ds, examples, out / "probes", out / "responses") if metrics["probe_bank"] else []
    metrics["response_maps"] = [{k: v for k, v in m.items() if k != "div"} for m in maps]
    with timer("report"):
        title = f"{lm.model_id} · {ds.name} · n={len(examples)} · {cfg.folds}-fold CV"
        png = plots.heatmap_png(res.auc, res.layers, res.positions, out / "heatmap.png", title)
        fig = plots.heatmap_figure(res.auc, res.auc_std, res.n, res.layers, res.positions, title)
        plots.heatmap_html(fig, out / "heatmap.html")
        metrics["timings_s"] = dict(timer.s)
        metrics["provenance"] = prov
        atomic_write_json(out / "provenance.json", prov)
        div = fig.to_html(include_plotlyjs=True, full_html=False)
        report.write_report(out, metrics, examples, png, div, maps)
    metrics["timings_s"] = dict(timer.s)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def save_probe_bank(cfg: StudyConfig, store: ActivationStore, examples: list[dict[str, Any]], folder: Path,
                    prov: dict[str, Any], position: str = "exact_answer_last",
                    best_layer: int | None = None) -> str | None:  # fmt: skip
    """Fit one probe per layer at ``position`` on every example that has it, for per-response scoring."""
    if position not in store.positions:
        return None
    keep = store.valid()[:, store.positions.index(position)]
    if len(set(wrong_labels(examples)[keep].tolist())) < 2:
        return None
    meta = bank_meta(cfg.to_dict(), prov, best_layer)
    ProbeBank.from_store(store, keep, position, cfg.probe_c, cfg.site, meta).save(folder)
    return str(folder)


def bank_meta(config: dict[str, Any], prov: dict[str, Any], best_layer: int | None) -> dict[str, Any]:
    """What a probe bank records of its study: model, data, and the prompt and stopping that scoring must reuse.

    ``best_layer`` (the sweep's best layer at the bank's position) becomes the verdict's probe; a
    missing or negative one (no best cell) is left out.
    """
    meta = {"site": config.get("site", "residual"), "model": prov.get("model"), "dataset": prov.get("dataset"),
            "seed": config.get("seed", 0), "system_prompt": config.get("system_prompt", ""),
            "max_new_tokens": config.get("max_new_tokens", 32), "stop": config.get("stop", "sentence")}  # fmt: skip
    if isinstance(best_layer, int) and best_layer >= 0:
        meta["best_layer"] = best_layer
    return meta


def pick_pair(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A hallucinated and a correct response to questions of one relation (the first in store order).

    Prefers ``capital_of_country``; only responses whose exact answer was located qualify.
    """
    rels = sorted({e["relation"] for e in examples}, key=lambda r: (r != "capital_of_country", r))
    for rel in rels:
        pool = [e for e in examples if e["relation"] == rel and e["exact_span"]]
        wrong = next((e for e in pool if not e["correct"]), None)
        right = next((e for e in pool if e["correct"]), None)
        if wrong and right:
            return [wrong, right]
    return []


def response_maps(cfg: StudyConfig, lm: LoadedModel, ds: Dataset, examples: list[dict[str, Any]], bank_dir: Path,
                  folder: Path) -> list[dict[str, Any]]:  # fmt: skip
    """Activity surfaces and attention heatmaps for the automatic pair and the config's ``report_pairs``."""
    from halluscan import plots
    from halluscan.scan import Scanner

    scanner = Scanner(lm, ProbeBank.load(bank_dir), grader=Grader(ds.relation_vocab, ds.entity_vocab, cfg.locator),
                      system_prompt=cfg.system_prompt, max_new_tokens=cfg.max_new_tokens)  # fmt: skip
    jobs: list[tuple[str, list[Any]]] = []
    auto = pick_pair(examples)
    if auto:
        jobs.append(("auto", [scanner.score_ids(e["question"], e["response_ids"], relation=e["relation"])
                              for e in auto]))  # fmt: skip
    for k, pair in enumerate(cfg.report_pairs, start=1):
        jobs.append((f"pair{k}", [scanner.score(e["question"], e.get("answer") or None,
                                                relation=e.get("relation", "custom")) for e in pair]))  # fmt: skip
    out = []
    for name, results in jobs:
        act = plots.activity_files(results, folder, f"{name}_activity")
        att = [plots.attention_files(r, folder, f"{name}_{i}_attention")[0] for i, r in enumerate(results, start=1)]
        graded = [("wrong" if not e["correct"] else "correct") for e in auto] if name == "auto" else [None] * 2
        out.append({
            "name": name,
            "responses": [{"question": r.question, "response": r.response, "verdict": r.verdict, "p_wrong": r.p_wrong,
                           "graded": g} for r, g in zip(results, graded, strict=True)],
            "activity_png": str(act[0]), "activity_html": str(act[1]), "attention_png": [str(p) for p in att],
            "div": plots.activity_figure(results).to_html(include_plotlyjs=False, full_html=False),
        })  # fmt: skip
    return out


def best_cells(res: SweepResult, controls: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Position -> best layer, its mean AUC, fold std, 95 % interval, and whether it is informative.

    A cell is informative when its interval's lower end clears both controls: the relation-only
    AUC and the embedding layer (token identity) at the same position.
    """
    out: dict[str, dict[str, Any]] = {}
    for j, p in enumerate(res.positions):
        layer, auc = res.best(p)
        if layer < 0:
            out[p] = {"layer": layer, "auc": None, "std": None, "ci95": None, "informative": False}
            continue
        lo, hi = res.interval(layer, p)
        layer0 = float(res.auc[0, j]) if res.layers[0] == 0 else float("nan")
        bar = max(controls["relation_prior_auc"], layer0 if not np.isnan(layer0) else 0.5)
        out[p] = {"layer": layer, "auc": auc, "std": float(res.auc_std[res.layers.index(layer), j]),
                  "ci95": [lo, hi], "informative": bool(lo > bar)}  # fmt: skip
    return out


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in a]
