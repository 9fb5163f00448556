"""What the baselines cost.

The log-prob statistics in the generation pass, and p(True), against the generation stage.


On the bundled model and ``--n`` world-facts questions (the study's prompts, every residual layer
captured, the default batch): the generation stage with and without recording each token's
log-probability and entropy (two runs of each, alternating, the faster counts), and p(True) in
both orders on the same answers. Writes ``benchmarks/results/baselines.json``.

    python benchmarks/baselines.py [--n 300]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch

from halluscan.data import build_world_facts
from halluscan.engine.generate import generate
from halluscan.engine.ptrue import ORDERS, p_true
from halluscan.models import load_model
from halluscan.study.config import StudyConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "baselines.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model("smollm2")
    qs = random.Random(0).sample(list(build_world_facts().questions), args.n)
    cfg = StudyConfig()
    opts = replace(cfg.generate_options(), capture_dtype=cfg.store_dtype)
    layers = list(range(lm.n_layers + 1))
    times: dict[bool, list[float]] = {True: [], False: []}
    gens = []
    for stats in (True, False, True, False):
        t = time.perf_counter()
        gens = [
            g
            for batch, _, _ in generate(lm, qs, replace(opts, token_stats=stats), layers)
            for g in batch
        ]
        times[stats].append(time.perf_counter() - t)
    items = [
        (q.question, g.response)
        for q, g in zip(
            sorted(qs, key=lambda q: q.qid), sorted(gens, key=lambda g: g.qid), strict=True
        )
    ]
    t = time.perf_counter()
    for order in ORDERS:
        p_true(lm, items, order, opts.batch_size)
    pt = time.perf_counter() - t
    gen_with, gen_without = min(times[True]), min(times[False])
    res = {
        "n_questions": args.n,
        "generation_s_with_token_stats": round(gen_with, 2),
        "generation_s_without_token_stats": round(gen_without, 2),
        "logprob_baselines_added_fraction": round(gen_with / gen_without - 1, 4),
        "p_true_both_orders_s": round(pt, 2),
        "p_true_vs_generation": round(pt / gen_without, 3),
        "runs_s": {str(k): [round(x, 2) for x in v] for k, v in times.items()},
        "torch": torch.__version__,
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
