"""Generation benchmark: halluscan's batched short-answer generation vs plain HF ``generate``.

Same model, same questions, same machine, one run. The baseline is the plain study's set-up:
``model.generate`` at batch 16, the chat template's default system prompt, greedy, up to 64
new tokens, no activation capture. halluscan's path generates with its defaults *and*
captures the residual stream at every layer. The figure that matters to a user is
questions per second (time to answer and extract a question set); tokens per second is
given too. Writes benchmarks/results/generation.json.

    python benchmarks/generation.py [--n 128]
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
from halluscan.models import load_model
from halluscan.records import GenerateOptions
from halluscan.study.config import StudyConfig


def hf_generate(lm, questions, batch_size: int, max_new: int) -> dict:
    tok = lm.tokenizer
    prompts = [lm.prompt_ids(q.question, "") for q in questions]
    n_new = 0
    t = time.perf_counter()
    for b in range(0, len(prompts), batch_size):
        batch = prompts[b : b + batch_size]
        enc = tok.pad({"input_ids": batch}, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = lm.model.generate(
                **enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id
            )
        new = out[:, enc["input_ids"].shape[1] :]
        n_new += int((new != tok.pad_token_id).sum())
    return rates(len(questions), n_new, time.perf_counter() - t)


def rates(n_questions: int, n_new: int, seconds: float) -> dict:
    """Seconds, questions and new tokens per second."""
    return {
        "seconds": seconds,
        "questions_per_s": n_questions / seconds,
        "new_tokens": n_new,
        "new_tokens_per_s": n_new / seconds,
    }


def ours(lm, questions, opts: GenerateOptions, capture: bool) -> dict:
    layers = list(range(lm.n_layers + 1)) if capture else None
    n_new = n_prompt = 0
    t = time.perf_counter()
    for gens, _states, _tail in generate(lm, questions, opts, layers):
        n_new += sum(len(g.response_ids) for g in gens)
        n_prompt += sum(len(g.prompt_ids) for g in gens)
    return {**rates(len(questions), n_new, time.perf_counter() - t), "prompt_tokens": n_prompt}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generation.json"))
    args = ap.parse_args()
    lm = load_model("smollm2")
    qs = random.Random(0).sample(list(build_world_facts().questions), args.n)
    cfg = StudyConfig()
    opts = cfg.generate_options()
    res = {
        "hf_generate_bs16": hf_generate(lm, qs, 16, 64),
        "halluscan_capture_all_layers": ours(lm, qs, opts, capture=True),
        "halluscan_no_capture": ours(lm, qs, opts, capture=False),
        "halluscan_capture_no_prefix_sharing": ours(
            lm, qs, replace(opts, share_prefix=False), capture=True
        ),
    }
    base = res["hf_generate_bs16"]["questions_per_s"]
    res["speedup_questions_per_s_vs_hf_generate"] = (
        res["halluscan_capture_all_layers"]["questions_per_s"] / base
    )
    res["capture_overhead"] = (
        1 - res["halluscan_no_capture"]["seconds"] / res["halluscan_capture_all_layers"]["seconds"]
    )
    res["prefix_sharing_speedup"] = (
        res["halluscan_capture_no_prefix_sharing"]["seconds"]
        / res["halluscan_capture_all_layers"]["seconds"]
    )
    res["n_questions"] = args.n
    res["threads"] = torch.get_num_threads()
    for k, v in res.items():
        if isinstance(v, dict):
            print(
                f"{k}: {v['questions_per_s']:.2f} q/s, {v['new_tokens_per_s']:.1f} new tok/s, "
                f"{v['seconds']:.1f} s"
            )
    print(
        "speedup vs HF generate (questions/s): "
        f"{res['speedup_questions_per_s_vs_hf_generate']:.2f}x"
    )
    print(
        f"capture overhead: {res['capture_overhead']:.1%}; prefix sharing: "
        f"{res['prefix_sharing_speedup']:.2f}x"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
