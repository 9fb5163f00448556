"""Extraction benchmark: halluscan's extraction vs a bare forward pass and an LLMsKnow-style path.

On the bundled model, in one run, with the same sequences and the same batches:

- ``bare``: the model's forward pass in length-sorted, left-padded batches, the prefix that all
  sequences share (system prompt, template) run once from the KV cache, as halluscan does; no
  hooks, nothing kept (``bare_unshared``: the same without prefix sharing);
- ``halluscan``: the same batches through :func:`halluscan.engine.extract_to_store`: residual
  stream at every layer x 15 named positions, gathered in hooks, written to the store;
- ``llmsknow_style``: one example at a time, ``output_hidden_states=True``, full logits, the whole
  sequence's hidden states copied out, positions picked afterwards (the reference code's shape).

Memory is measured by ``memory.py`` (peak RSS growth, 4,000 vs 500 examples, in child processes).
Each timing is the best of ``--repeats`` alternating rounds (the machine is shared and noisy).
Writes benchmarks/results/extraction.json.

    python benchmarks/extraction.py [--n 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from halluscan.data import build_world_facts
from halluscan.engine import Item, extract_to_store
from halluscan.engine.inputs import prefill_prefix, shared_prefix_len, suffix_inputs
from halluscan.models import load_model
from halluscan.models.sites import cache_kwargs
from halluscan.positions import resolve
from halluscan.store import ActivationStore
from halluscan.study.config import DEFAULT_POSITIONS

SYSTEM = "Answer the question in one short sentence."


def make_items(lm, n: int, seed: int = 0) -> list[Item]:
    """Prompt + a templated answer for ``n`` world-facts questions (new ids past 1,550)."""
    qs = list(build_world_facts().questions)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = qs[rng.randrange(len(qs))]
        prompt = lm.prompt_ids(q.question, SYSTEM)
        head = lm.tokenizer("The answer is", add_special_tokens=False).input_ids
        ans = lm.tokenizer(f" {q.answer}", add_special_tokens=False).input_ids
        tail = lm.tokenizer(".", add_special_tokens=False).input_ids
        resp = head + ans + tail
        exact = (len(head), len(head) + len(ans) - 1)
        pos = {name: resolve(name, len(prompt), len(resp), exact) for name in DEFAULT_POSITIONS}
        out.append(Item(f"{i:06d}", tuple(prompt + resp), pos))
    return out


def batches(items: list[Item], bs: int) -> list[list[Item]]:
    order = sorted(items, key=lambda it: (len(it.ids), it.qid))
    return [order[b : b + bs] for b in range(0, len(order), bs)]


@torch.inference_mode()
def run_bare(lm, items: list[Item], bs: int, share_prefix: bool) -> float:
    """The model's forward pass on the same batches; nothing captured or kept."""
    pad = lm.tokenizer.pad_token_id
    t = time.perf_counter()
    for batch in batches(items, bs):
        seqs = [it.ids for it in batch]
        first = min(min(p for p in it.positions.values() if p is not None) for it in batch)
        n_pre = (
            shared_prefix_len(seqs, min(first, min(len(s) for s in seqs) - 1))
            if share_prefix
            else 0
        )
        cache = prefill_prefix(lm.model, seqs[0][:n_pre], len(seqs)) if n_pre else None
        ids, mask, pos, _ = suffix_inputs(seqs, n_pre, pad)
        lm.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            **cache_kwargs(lm.model, cache),
            use_cache=cache is not None,
            logits_to_keep=1,
        )
    return time.perf_counter() - t


def run_halluscan(lm, items: list[Item], bs: int, root: Path, dtype: str = "bfloat16") -> float:
    residual = {"layers": list(range(lm.n_layers + 1)), "dims": [lm.model.config.hidden_size]}
    layout = {"positions": list(DEFAULT_POSITIONS), "dtype": dtype, "sites": {"residual": residual}}
    store = ActivationStore.open_or_create(root, key="bench", layout=layout, provenance={})
    t = time.perf_counter()
    extract_to_store(lm.model, lm.tokenizer.pad_token_id, items, store, batch_size=bs)
    return time.perf_counter() - t


@torch.inference_mode()
def run_llmsknow_style(lm, items: list[Item]) -> float:
    kept = []
    t = time.perf_counter()
    for it in items:
        out = lm.model(input_ids=torch.tensor([it.ids]), output_hidden_states=True)
        hs = torch.stack(out.hidden_states)[:, 0].cpu()  # [layer, T, H]: the whole sequence
        idx = [it.positions[n] if it.positions[n] is not None else 0 for n in DEFAULT_POSITIONS]
        kept.append(hs[:, idx].clone())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "extraction.json"))
    args = ap.parse_args()
    lm = load_model("smollm2")
    items = make_items(lm, args.n)
    n_tok = sum(len(it.ids) for it in items)
    times: dict[str, list[float]] = {
        "bare": [],
        "bare_unshared": [],
        "halluscan": [],
        "llmsknow_style": [],
    }
    run_bare(lm, items[:32], args.batch_size, True)  # warm-up
    for r in range(args.repeats):
        times["bare"].append(run_bare(lm, items, args.batch_size, share_prefix=True))
        times["bare_unshared"].append(run_bare(lm, items, args.batch_size, share_prefix=False))
        with tempfile.TemporaryDirectory() as d:
            times["halluscan"].append(run_halluscan(lm, items, args.batch_size, Path(d) / "s"))
        if r == 0 or args.repeats <= 2:
            times["llmsknow_style"].append(run_llmsknow_style(lm, items))
    best = {k: min(v) for k, v in times.items()}
    tps = {k: n_tok / v for k, v in best.items()}
    res = {
        "model": lm.model_id,
        "n_examples": args.n,
        "tokens": n_tok,
        "batch_size": args.batch_size,
        "positions": len(DEFAULT_POSITIONS),
        "layers": lm.n_layers + 1,
        "threads": torch.get_num_threads(),
        "seconds": times,
        "tokens_per_s": tps,
        "ratio_vs_bare": tps["halluscan"] / tps["bare"],
        "ratio_vs_bare_unshared": tps["halluscan"] / tps["bare_unshared"],
        "ratio_vs_llmsknow_style": tps["halluscan"] / tps["llmsknow_style"],
        "bytes_per_example": (lm.n_layers + 1)
        * len(DEFAULT_POSITIONS)
        * lm.model.config.hidden_size
        * 2,
    }
    print(
        f"bare forward      {tps['bare']:8.1f} tok/s  (same batches, shared prompt prefix run once)"
    )
    print(f"bare, no sharing  {tps['bare_unshared']:8.1f} tok/s")
    print(f"halluscan extract {tps['halluscan']:8.1f} tok/s  ({res['ratio_vs_bare']:.3f} x bare)")
    speedup = res["ratio_vs_llmsknow_style"]
    print(
        f"llmsknow style    {tps['llmsknow_style']:8.1f} tok/s  (halluscan is {speedup:.2f} x "
        "faster)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
