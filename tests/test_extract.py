"""Teacher-forced extraction into the store: every site, resume, and a SIGKILL in the middle."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.extract import Item, extract_to_store, forward_capture, pool_tokens
from halluscan.store import ActivationStore

from .conftest import tiny_model

POS = ["first", "last", "missing"]


def items(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 4 + int(torch.randint(0, 9, (1,), generator=g))
        ids = tuple(int(x) for x in torch.randint(1, 128, (length,), generator=g))
        out.append(Item(f"ex{i:04d}", ids, {"first": 0, "last": length - 1, "missing": None if i % 3 else 1}))
    return out


def layout(model, sites=("residual",), max_keys=16):
    n, h = model.config.num_hidden_layers, model.config.hidden_size
    blocks = list(range(1, n + 1))
    spec = {"residual": {"layers": list(range(n + 1)), "dims": [h]}, "mlp": {"layers": blocks, "dims": [h]},
            "attn": {"layers": blocks, "dims": [h]},
            "attn_weights": {"layers": blocks, "dims": [model.config.num_attention_heads, max_keys]}}  # fmt: skip
    return {"positions": POS, "dtype": "float32", "sites": {s: spec[s] for s in sites}}


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gemma3_text"])
def test_batched_padded_extraction_equals_one_example_at_a_time(family, tmp_path):
    model = tiny_model(family)
    sites = ("residual", "mlp", "attn", "attn_weights")
    store = ActivationStore.open_or_create(tmp_path / "s", key="k", layout=layout(model, sites), provenance={})
    its = items(10)
    assert extract_to_store(model, 0, its, store, batch_size=4) == 10
    by_id = {e["qid"]: i for i, e in enumerate(store.examples())}
    for it in its[:4]:
        i = by_id[it.id]
        gather = torch.tensor([[it.positions["first"], it.positions["last"]]])
        one = forward_capture(
            model, [it.ids], gather, {s: layout(model, sites)["sites"][s]["layers"] for s in sites}, 0
        )
        for s in sites:
            got = store.position("last", s)[i]
            want = one[s][0, :, 1]
            if s == "attn_weights":
                want = want[..., : len(it.ids)]
                got = got[..., : len(it.ids)]
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    v = store.valid()
    assert v[:, 2].sum() == sum(it.positions["missing"] is not None for it in its)
    assert torch.all(store.position("missing")[~torch.from_numpy(v[:, 2])] == 0)


def test_resume_skips_stored_examples(tmp_path):
    model = tiny_model("llama")
    store = ActivationStore.open_or_create(tmp_path / "s", key="k", layout=layout(model), provenance={})
    assert extract_to_store(model, 0, items(6), store, batch_size=4) == 6
    again = ActivationStore.open_or_create(tmp_path / "s", key="k", layout=layout(model), provenance={})
    assert extract_to_store(model, 0, items(10), again, batch_size=4) == 4
    ids = [e["qid"] for e in ActivationStore.open(tmp_path / "s").examples()]
    assert sorted(ids) == [f"ex{i:04d}" for i in range(10)] and len(set(ids)) == 10


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from tests.conftest import tiny_model
    from tests.test_extract import items, layout
    from halluscan.extract import extract_to_store
    from halluscan.store import ActivationStore
    model = tiny_model("llama")
    store = ActivationStore.open_or_create({root!r}, key="k", layout=layout(model), provenance={{}})
    def slow(n):
        print("batch", flush=True)
        time.sleep({delay})
    extract_to_store(model, 0, items(40), store, batch_size=4, progress=slow)
    print("done", flush=True)
    """
)


def test_sigkill_mid_run_then_rerun_stores_every_example_once(tmp_path):
    root = str(tmp_path / "s")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(repo=repo, root=root, delay=0.3))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    seen = 0
    while seen < 3:  # let three batches commit, then kill without warning
        line = proc.stdout.readline()
        assert line, "the job ended before it could be killed"
        seen += line.startswith("batch")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = ActivationStore.open(root)
    assert 3 * 4 <= partial.n_examples < 40 and partial.verify() == []
    script.write_text(KILL_SCRIPT.format(repo=repo, root=root, delay=0))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("done")
    final = ActivationStore.open(root)
    ids = [e["qid"] for e in final.examples()]
    assert len(ids) == 40 and len(set(ids)) == 40 and final.verify() == []
    # the values equal those of an uninterrupted run
    model = tiny_model("llama")
    clean = ActivationStore.open_or_create(tmp_path / "clean", key="k", layout=layout(model), provenance={})
    extract_to_store(model, 0, items(40), clean, batch_size=4)
    order = {q: i for i, q in enumerate(e["qid"] for e in clean.examples())}
    perm = torch.tensor([order[q] for q in ids])
    torch.testing.assert_close(final.position("last"), clean.position("last")[perm], rtol=1e-5, atol=1e-6)


def test_a_full_disk_keeps_what_was_stored(tmp_path, monkeypatch):
    model = tiny_model("llama")
    store = ActivationStore.open_or_create(tmp_path / "s", key="k", layout=layout(model), provenance={})
    extract_to_store(model, 0, items(4), store, batch_size=4)
    import halluscan.store as st

    real = st.os.replace

    def full(src, dst):
        if str(dst).endswith(".npy"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(st.os, "replace", full)
    with pytest.raises(HalluscanError, match="No space left on device; free disk space"):
        extract_to_store(model, 0, items(8), store, batch_size=4)
    monkeypatch.undo()
    kept = ActivationStore.open(tmp_path / "s")
    assert kept.n_examples == 4 and kept.verify() == [] and not list((tmp_path / "s").rglob("*.tmp"))


def test_stop_early_skips_the_lm_head():
    model = tiny_model("llama")
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    forward_capture(model, [(1, 2, 3)], torch.tensor([[2]]), {"residual": [0, 1, 2, 3]}, 0)
    assert calls == []


def test_pool_tokens_to_a_fixed_grid():
    x = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    p = pool_tokens(x, 3)
    assert p.shape == (2, 3, 3)
    torch.testing.assert_close(p[:, 0], x[:, :2].mean(1))
