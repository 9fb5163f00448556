"""What the model's extraction of its own exact answers costs, against the study's generation.

On the bundled model and ``--n`` world-facts questions (the study's prompts, every residual
layer captured, the default batch): the generation stage, then the self-extraction pass on the
same answers (every answer, as ``--locator self`` runs it) and on the pilot ``--locator auto``
runs before a study (64 answers), in the same process. The share of answers extracted is
reported too. Writes ``benchmarks/results/selfextract.json``.

    python benchmarks/selfextract.py [--n 512]
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
from halluscan.engine.selfextract import self_extract
from halluscan.models import load_model
from halluscan.study.config import StudyConfig
from halluscan.study.locating import PILOT

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "selfextract.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model("smollm2")
    qs = random.Random(0).sample(list(build_world_facts().questions), args.n)
    cfg = StudyConfig()
    opts = replace(cfg.generate_options(), capture_dtype=cfg.store_dtype, batch_size=64)
    layers = list(range(lm.n_layers + 1))
    t = time.perf_counter()
    gens = [g for batch, _, _ in generate(lm, qs, opts, layers) for g in batch]
    gen_s = time.perf_counter() - t
    by_id = {q.qid: q for q in qs}
    items = [(by_id[g.qid].question, g.response) for g in gens]
    t = time.perf_counter()
    found = self_extract(lm, items, opts.batch_size)
    full_s = time.perf_counter() - t
    t = time.perf_counter()
    self_extract(lm, items[:PILOT], opts.batch_size)
    pilot_s = time.perf_counter() - t
    res = {
        "n_questions": args.n,
        "generation_s": round(gen_s, 2),
        "self_extraction_every_answer_s": round(full_s, 2),
        "every_answer_vs_generation": round(full_s / gen_s, 3),
        "pilot_answers": PILOT,
        "pilot_extraction_s": round(pilot_s, 2),
        # the pilot also generates its 64 answers (without capture): about PILOT / n of this
        "pilot_vs_generation": round((pilot_s + gen_s * PILOT / args.n) / gen_s, 3),
        "extracted_share": round(sum(s is not None for _, s in found) / len(found), 3),
        "torch": torch.__version__,
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
