"""The GPU benchmark.

Capture, store, generation, sweep and the whole collect stage against their bounds.


Every figure is a ratio (or a time) measured in the same run on the same machine:

- ``extraction_capture_vs_bare``: ``forward_capture`` (every residual layer x 15 named positions,
  gathered on the device into one buffer, one copy per batch) against the bare forward pass on
  the same batches;
- ``store_write_vs_raw_disk``: ``ActivationStore.append`` of those chunks against ``np.save`` +
  fsync of the same arrays;
- ``extraction_with_store_vs_bound``: ``extract_to_store`` against min(bare forward, raw disk
  MB/s / bytes per token);
- ``generation_capture_vs_nocapture`` and ``generation_vs_hf_static`` (at ``--gen-batch``):
  halluscan's decode with and without capture, and without capture against Hugging Face's
  ``generate`` with a static cache (``--hf-compile``: and a compiled decode step);
- ``sweep_gpu_s`` (the whole heatmap: 15 positions x all layers x 5 folds) and ``sweep_gpu_vs_cpu``
  (one position, ``--cpu-layers`` layers, the same features on both);
- ``study_generate_extract_s``: the study's collect stage (generate, grade, locate, capture into
  the store) on world-facts questions.

Models have random weights built on the device (speed does not depend on the weights) and a
word-level tokenizer over the world-facts questions. ``--shape llama-8b`` is Llama-3-8B's shape
in bfloat16 on CUDA; ``--tiny`` is a tiny model on the CPU, small enough for the test suite.

    python benchmarks/gpu.py --shape llama-8b [--out benchmarks/results/gpu.json]
    python benchmarks/gpu.py --tiny --out /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from extraction import batches, make_items  # noqa: E402

from halluscan.data import build_world_facts  # noqa: E402
from halluscan.engine import extract_to_store  # noqa: E402
from halluscan.engine.extract import forward_capture  # noqa: E402
from halluscan.engine.generate import generate  # noqa: E402
from halluscan.engine.inputs import prefill_prefix, shared_prefix_len, suffix_inputs  # noqa: E402
from halluscan.engine.static import choose_decoder  # noqa: E402
from halluscan.models.hooks import to_host_async  # noqa: E402
from halluscan.models.loading import LoadedModel, _finish  # noqa: E402
from halluscan.models.sites import cache_kwargs  # noqa: E402
from halluscan.positions import VALID  # noqa: E402
from halluscan.probes.features import Features  # noqa: E402
from halluscan.probes.sweep import sweep  # noqa: E402
from halluscan.records import GenerateOptions  # noqa: E402
from halluscan.store import ActivationStore  # noqa: E402
from halluscan.study.config import StudyConfig  # noqa: E402
from halluscan.study.context import StudyContext, StudyPlan  # noqa: E402
from halluscan.study.pipeline import Stores, Timer, collect_stage  # noqa: E402
from halluscan.study.runs import store_layout  # noqa: E402

SHAPE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
SHAPES = {  # LlamaConfig values, in SHAPE_KEYS order
    "llama-8b": dict(
        zip(SHAPE_KEYS, (4096, 32, 32, 8, 14336, 128256, 8192), strict=True), rope_theta=500000.0
    ),
    "tiny": dict(zip(SHAPE_KEYS, (64, 3, 4, 2, 128, 4096, 512), strict=True)),
}
SIZES = {  # examples, generation prompts, sweep examples x dims, study questions
    "llama-8b": dict(n=512, gen=256, sweep_n=2000, sweep_d=4096, study=1550),
    "tiny": dict(n=64, gen=32, sweep_n=200, sweep_d=64, study=48),
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer whose words are those of the world-facts prompts and answers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words: dict[str, int] = {"<pad>": 0, "<eos>": 1}
    for q in build_world_facts().questions:
        for w in f"Q: {q.question}\nA: The answer is {q.answer} .".split():
            words.setdefault(w, len(words))
    for i in range(len(words), vocab_size):
        words[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<pad>", pad_token="<pad>", eos_token="<eos>"
    )


def build(shape: str, device: str, dtype: torch.dtype) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape], pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights made in their dtype, on the device
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = 1
    lm = _finish(model, word_tokenizer(cfg.vocab_size), f"random {shape}", "random", "none")
    lm.device = device
    return lm


@torch.inference_mode()
def bare(lm: LoadedModel, items, bs: int) -> None:
    pad = lm.tokenizer.pad_token_id
    dev = lm.device
    for batch in batches(items, bs):
        seqs = [it.ids for it in batch]
        first = min(min(p for p in it.positions.values() if p is not None) for it in batch)
        n_pre = shared_prefix_len(seqs, min(first, min(len(s) for s in seqs) - 1))
        cache = prefill_prefix(lm.model, seqs[0][:n_pre], len(seqs)) if n_pre else None
        ids, mask, pos, _ = suffix_inputs(seqs, n_pre, pad)
        lm.model(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=pos.to(dev),
            **cache_kwargs(lm.model, cache),
            use_cache=cache is not None,
            logits_to_keep=1,
        )


def capture(lm: LoadedModel, items, bs: int, keep: list | None = None) -> None:
    """What extraction does per batch.

    Gather on the device, start the host copy, go on (wait at the end).
    """
    layers = list(range(lm.n_layers + 1))
    pending = []
    for batch in batches(items, bs):
        gather = torch.tensor(
            [[it.positions[n] if it.positions[n] is not None else 0 for n in VALID] for it in batch]
        )
        seqs = [it.ids for it in batch]
        got = forward_capture(
            lm.model, seqs, gather, {"residual": layers}, 0, dtype=torch.bfloat16, host=False
        )
        host, ready = to_host_async(got["residual"])
        pending.append(ready)
        if keep is not None:
            keep.append((host, batch))
    for ready in pending:
        if ready is not None:
            ready.synchronize()


def store_vs_disk(chunks, folder: Path) -> dict:
    """MB/s of the store's appends and of np.save + fsync of the same arrays."""
    lay = {
        "positions": list(VALID),
        "dtype": "bfloat16",
        "sites": {
            "residual": {
                "layers": list(range(chunks[0][0].shape[1])),
                "dims": [chunks[0][0].shape[-1]],
            }
        },
    }
    store = ActivationStore.open_or_create(folder / "appended", key="k", layout=lay, provenance={})
    nbytes = sum(a.numel() * a.element_size() for a, _ in chunks)
    t = time.perf_counter()
    for a, batch in chunks:
        store.append(
            {"residual": a},
            np.ones((len(batch), len(VALID)), bool),
            [{"qid": it.qid} for it in batch],
        )
    store_s = time.perf_counter() - t
    raw = folder / "raw"
    raw.mkdir()
    t = time.perf_counter()
    for k, (a, _) in enumerate(chunks):
        with open(raw / f"{k}.npy", "wb") as f:
            np.save(f, a.view(torch.int16).numpy())
            f.flush()
            os.fsync(f.fileno())
    raw_s = time.perf_counter() - t
    return {
        "MB": nbytes / 1e6,
        "store_MBps": nbytes / 1e6 / store_s,
        "raw_MBps": nbytes / 1e6 / raw_s,
    }


def generation(lm: LoadedModel, qs, bs: int, hf_compile: bool) -> dict:
    """New tokens per second.

    Halluscan's decode with and without capture, and Hugging Face's static cache.


    Each is warmed up on the same batches first (the first decode on a GPU pays one-time costs
    of several seconds), then timed twice; the faster time counts.
    """
    opts = GenerateOptions(batch_size=bs, max_new_tokens=32, stop="none", capture_dtype="bfloat16")
    layers = list(range(lm.n_layers + 1))
    out = {}

    def ours(lay: list[int] | None) -> int:
        return sum(len(g.response_ids) for gens, _, _ in generate(lm, qs, opts, lay) for g in gens)

    out["decoder"] = choose_decoder(opts, lm, bs)  # compiled (static cache + CUDA graphs) on a GPU
    for name, lay in (("capture", layers), ("nocapture", None)):
        new = ours(lay)  # warm-up (and the compilation of each shape, on a GPU)
        s = min(timed(lambda lay=lay: ours(lay), lm.device) for _ in range(2))
        out[name] = {"seconds": s, "new_tokens": new, "tok_per_s": new / s}
    prompts = [lm.prompt_ids(q.question, "") for q in qs]
    enc = lm.tokenizer.pad({"input_ids": prompts}, return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False, cache_implementation="static")
    kw["disable_compile"] = not hf_compile  # eager unless asked: compiling takes minutes per shape
    ids, mask = enc["input_ids"].to(lm.device), enc["attention_mask"].to(lm.device)

    def hf() -> None:
        for b in range(0, len(prompts), bs):
            lm.model.generate(input_ids=ids[b : b + bs], attention_mask=mask[b : b + bs], **kw)

    with torch.inference_mode():
        hf()  # warm-up (and the compilation, with --hf-compile)
        s = min(timed(hf, lm.device) for _ in range(2))
    name = "hf_static_compiled" if hf_compile else "hf_static_eager"
    out[name] = {"seconds": s, "new_tokens": 32 * len(prompts), "tok_per_s": 32 * len(prompts) / s}
    return out


def sweep_times(n: int, d: int, layers: int, device: str, cpu_layers: int) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    y = (torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.4).numpy().astype(np.int64)
    signal = torch.from_numpy(y).to(device, torch.float32)[:, None, None]

    def features(_pos: str, n_layers: int = layers) -> torch.Tensor:
        x = torch.randn(n, n_layers, d, generator=g, device=device)
        x[:, :, :8] += signal * torch.linspace(0, 1, n_layers, device=device)[None, :, None]
        return x

    positions = list(VALID)
    valid = np.ones((n, len(positions)), bool)
    groups = [str(i) for i in range(n)]
    every = Features(tuple(range(layers)), tuple(positions), valid, features)
    gpu_s = timed(lambda: sweep(every, y, groups, c=0.05, device=device), device)
    one = features("x", cpu_layers)
    first = Features(tuple(range(cpu_layers)), tuple(positions[:1]), valid[:, :1], lambda _p: one)

    def single(dev: str):  # one position, cpu_layers layers, the same features on each device
        return sweep(first, y, groups, c=0.05, device=dev)

    cpu_one = time.perf_counter()
    a = single("cpu")
    cpu_one = time.perf_counter() - cpu_one
    single(device)  # warm-up
    dev_one = timed(lambda: single(device), device)
    b = single(device)
    return {
        "sweep_s": gpu_s,
        "one_position_cpu_s": cpu_one,
        "one_position_device_s": dev_one,
        "max_abs_auc_diff_device_vs_cpu": float(np.nanmax(np.abs(a.auc - b.auc))),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-8b")
    ap.add_argument(
        "--tiny", action="store_true", help="the tiny shape on the CPU (what the test suite runs)"
    )
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--gen-batch", type=int, default=256)
    ap.add_argument("--cpu-layers", type=int, default=4)
    ap.add_argument("--hf-compile", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["generation", "sweep", "study"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = ap.parse_args()
    shape = "tiny" if args.tiny else args.shape
    device = "cpu" if args.tiny else "cuda"
    size = SIZES[shape]
    bs, gbs = (16, 16) if args.tiny else (args.batch_size, args.gen_batch)
    lm = build(shape, device, torch.float32 if args.tiny else torch.bfloat16)
    res: dict = {
        "shape": shape,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "batch_size": bs,
        "gen_batch": gbs,
    }
    items = make_items(lm, size["n"])
    n_tok = sum(len(it.ids) for it in items)
    bare(lm, items[:bs], bs), capture(lm, items[:bs], bs)  # warm-up
    bare_s = min(timed(lambda: bare(lm, items, bs), device) for _ in range(2))
    cap_s = min(timed(lambda: capture(lm, items, bs), device) for _ in range(2))
    res["tok_per_s"] = {"bare": n_tok / bare_s, "capture": n_tok / cap_s}
    res["extraction_capture_vs_bare"] = bare_s / cap_s
    print(
        f"bare {n_tok / bare_s:,.0f} tok/s, capture {n_tok / cap_s:,.0f} tok/s "
        f"({bare_s / cap_s:.3f})",
        flush=True,
    )
    chunks: list = []
    capture(lm, items, bs, chunks)
    with tempfile.TemporaryDirectory(dir=os.environ.get("HALLUSCAN_BENCH_DIR")) as d:
        disk = store_vs_disk(chunks, Path(d))
        res["store"] = disk
        res["store_write_vs_raw_disk"] = disk["store_MBps"] / disk["raw_MBps"]
        print(f"store {disk['store_MBps']:,.0f} MB/s, raw {disk['raw_MBps']:,.0f} MB/s", flush=True)
        lay = {
            "positions": list(VALID),
            "dtype": "bfloat16",
            "sites": {
                "residual": {"layers": list(range(lm.n_layers + 1)), "dims": [lm.hidden_size]}
            },
        }
        st = ActivationStore.open_or_create(Path(d) / "e2e", key="k", layout=lay, provenance={})
        e2e_s = timed(lambda: extract_to_store(lm.model, 0, items, st, batch_size=bs), device)
        bytes_per_tok = disk["MB"] * 1e6 / n_tok
        bound = min(n_tok / bare_s, disk["raw_MBps"] * 1e6 / bytes_per_tok)
        res["extraction_with_store_tok_per_s"] = n_tok / e2e_s
        res["extraction_with_store_vs_bound"] = (n_tok / e2e_s) / bound
        print(f"extract_to_store {n_tok / e2e_s:,.0f} tok/s vs bound {bound:,.0f}", flush=True)
    qs = list(build_world_facts().questions)
    if "generation" not in args.skip:
        gen = generation(lm, qs[: size["gen"]], gbs, args.hf_compile)
        res["generation"] = gen
        res["generation_capture_vs_nocapture"] = (
            gen["capture"]["tok_per_s"] / gen["nocapture"]["tok_per_s"]
        )
        hf = gen["hf_static_compiled" if args.hf_compile else "hf_static_eager"]
        res["generation_vs_hf_static"] = gen["nocapture"]["tok_per_s"] / hf["tok_per_s"]
        print(json.dumps(gen), flush=True)
    if "sweep" not in args.skip:
        sw = sweep_times(size["sweep_n"], size["sweep_d"], lm.n_layers + 1, device, args.cpu_layers)
        res["sweep"] = sw
        res["sweep_gpu_s"] = sw["sweep_s"]
        res["sweep_gpu_vs_cpu"] = sw["one_position_cpu_s"] / sw["one_position_device_s"]
        print(json.dumps(sw), flush=True)
    if "study" not in args.skip:
        with tempfile.TemporaryDirectory(dir=os.environ.get("HALLUSCAN_BENCH_DIR")) as d:
            cfg = StudyConfig(batch_size=gbs, quiet=True, store_dtype="bfloat16", runs_dir=d,
                              n_questions=size["study"], given_bank=False)  # fmt: skip
            plan = StudyPlan.of(cfg, build_world_facts())
            ctx = StudyContext(plan, lm, cfg, cfg.generate_options())
            lay = store_layout(cfg, lm.n_layers, lm.hidden_size)
            st = ActivationStore.open_or_create(ctx.run.store, key="k", layout=lay, provenance={})
            res["study_questions"] = len(plan.questions)
            res["study_generate_extract_s"] = timed(
                lambda: collect_stage(ctx, Stores(st, None), Timer()), device
            )
            res["study_stored"] = st.n_examples
        print(
            f"study: {size['study']} questions in {res['study_generate_extract_s']:.1f} s",
            flush=True,
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
