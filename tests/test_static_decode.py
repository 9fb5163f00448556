"""Static-cache decoding (the GPU's decoder) and the automatic batch size, checked on the CPU.

The static feed must give the eager feed's tokens and captured states; its step must trace as
one graph with the capture hooks inside (what CUDA graphs need); ``auto`` must keep the CPU on
the eager path; and the automatic batch size must reach 256 for an 8B model on an 80 GB card.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from halluscan.engine import static
from halluscan.engine.decode import Row, decode
from halluscan.records import GenerateOptions
from tests.conftest import WORDS, tiny_folder


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from halluscan.models import load_model

    return load_model(str(tiny_folder(tmp_path_factory.mktemp("tiny"))))


def prompts_of(lm, n=6):
    words = WORDS[5:]
    return [
        lm.tokenizer.encode(" ".join(words[i : i + 2 + i % 4]), add_special_tokens=False)
        for i in range(n)
    ]


def decoded(lm, prompts, opts, feed=None):
    """Rows and, per (row, step), the states decode yielded for that row."""
    rows, states = [Row() for _ in prompts], {}
    for st in decode(lm, prompts, opts, rows, [0, 1, 3], feed=feed):
        for j, r in enumerate(st.active.tolist()):
            states[r, st.index] = st.states[j].clone()
    return rows, states


def same(ref, got):
    rows, states = ref
    assert [r.ids for r in rows] == [r.ids for r in got[0]]
    assert [r.stopped_by for r in rows] == [r.stopped_by for r in got[0]]
    for (r, i), s in states.items():
        # a static batch also feeds finished rows; those states are never read
        if i < len(rows[r].ids):
            torch.testing.assert_close(got[1][r, i][:, -1], s[:, -1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_decoding_gives_the_eager_tokens_and_states(lm, temperature):
    prompts = prompts_of(lm)
    opts = GenerateOptions(max_new_tokens=9, stop="none", temperature=temperature, tail=2)
    ref = decoded(lm, prompts, replace(opts, decoder="eager"), None) if temperature == 0 else None
    if temperature:  # sampling: the same seeded generator on both paths
        ref = _sampled(lm, prompts, replace(opts, decoder="eager"))
        got = _sampled(lm, prompts, replace(opts, decoder="static"))
    else:
        got = decoded(lm, prompts, replace(opts, decoder="static"))
    same(ref, got)


def _sampled(lm, prompts, opts):
    rows, states = [Row() for _ in prompts], {}
    rng = torch.Generator().manual_seed(3)
    for st in decode(lm, prompts, opts, rows, [0, 1, 3], rng=rng):
        for j, r in enumerate(st.active.tolist()):
            states[r, st.index] = st.states[j].clone()
    return rows, states


def test_rows_that_end_early_keep_their_answers_in_a_static_batch(lm):
    """eos ends some rows at different steps: the static batch keeps feeding them, unread."""
    prompts = prompts_of(lm, 8)
    opts = GenerateOptions(max_new_tokens=12, stop="none", tail=1)
    eos = lm.eos_ids()[0]
    real = lm.model.forward

    def forced(*a, **kw):  # a row emits eos once it reaches position 8: by its prompt's length
        out = real(*a, **kw)
        if kw["input_ids"].shape[1] == 1:
            out.logits[kw["position_ids"][:, -1] >= 8, -1, eos] = 1e4
        return out

    lm.model.forward = forced
    try:
        ref = decoded(lm, prompts, replace(opts, decoder="eager"))
        got = decoded(lm, prompts, replace(opts, decoder="static"))
    finally:
        lm.model.forward = real
    # the rows did end at different steps
    assert sorted({len(r.ids) for r in ref[0]}) == [4, 5, 6, 7]
    assert all(r.stopped_by == "eos" for r in ref[0])
    same(ref, got)


def test_the_static_step_traces_as_one_graph_with_the_capture_hooks_in_it(lm):
    """fullgraph=True fails on any graph break: what CUDA graphs (reduce-overhead) need."""
    prompts = prompts_of(lm)
    opts = GenerateOptions(max_new_tokens=6, stop="none", tail=1)
    ref = decoded(lm, prompts, replace(opts, decoder="eager"))
    torch._dynamo.reset()
    step = torch.compile(static._forward, backend="eager", fullgraph=True, dynamic=False)
    with torch.inference_mode():
        feed = static.StaticFeed(lm, prompts, opts, step)
    same(ref, decoded(lm, prompts, replace(opts, decoder="static"), feed))


def test_auto_decodes_eagerly_on_the_cpu_and_statically_for_a_gpu_batch(lm):
    opts = GenerateOptions()
    assert static.choose_decoder(opts, lm, 64) == "eager"
    gpu = SimpleNamespace(device="cuda:0", model=SimpleNamespace(hf_device_map=None))
    assert static.choose_decoder(opts, gpu, 64) == "compiled"
    # one answer (score): compiling costs more
    assert static.choose_decoder(opts, gpu, 1) == "eager"
    spread = SimpleNamespace(device="cuda:0", model=SimpleNamespace(hf_device_map={"a": 0, "b": 1}))
    assert static.choose_decoder(opts, spread, 64) == "eager"
    assert static.choose_decoder(replace(opts, decoder="static"), lm, 64) == "static"


def _meta_llama(**shape):
    import transformers as tf

    cfg = tf.LlamaConfig(**shape)
    with torch.device("meta"):
        return tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)


LLAMA_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
)


def test_the_automatic_batch_size_follows_the_cards_memory(monkeypatch):
    from halluscan.models.placement import CPU_BATCH, auto_batch_size

    model = _meta_llama(**LLAMA_8B)
    gb = 1024**3
    card = {"memory": 80 * gb}
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=card["memory"])
    )
    # world-facts prompts are under 64 tokens with the chat template; 32 new tokens; bf16 capture
    assert auto_batch_size(model, "cuda", 64 + 32, 8 + 32, 2) == 256
    card["memory"] = 24 * gb
    small = auto_batch_size(model, "cuda", 64 + 32, 8 + 32, 2)
    assert 8 <= small < 256 and small % 8 == 0
    # longer prompts, fewer rows
    assert auto_batch_size(model, "cuda", 1024 + 32, 8 + 32, 2) < small
    card["memory"] = 15 * gb  # the weights (15.0 GiB) fill it: one row, and the OOM will say so
    assert auto_batch_size(model, "cuda", 96, 40, 2) == 1
    assert auto_batch_size(model, "cpu", 96, 40, 2) == CPU_BATCH


def test_batch_size_0_is_auto_and_the_store_key_records_the_number(tmp_path):
    from halluscan.models import load_model
    from halluscan.records import Question
    from halluscan.study.config import StudyConfig
    from halluscan.study.context import auto_batch

    cfg = StudyConfig()
    assert cfg.batch_size == 0 and cfg.generate_options().batch_size == GenerateOptions.batch_size
    lm = load_model(str(tiny_folder(tmp_path / "m")))
    # the CPU's
    assert auto_batch(cfg, lm, (Question("q1", "paris france", "paris", "capital"),)) == 64
    with pytest.raises(Exception, match="batch_size=-1 is too small"):
        StudyConfig(batch_size=-1).validate()
