"""Teacher-forced extraction into the store: every site, resume, and a SIGKILL in the middle."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from halluscan.engine import Item, extract_to_store, forward_capture, pool_tokens
from halluscan.errors import HalluscanError
from halluscan.store import ActivationStore

from .conftest import tiny_model

POS = ["first", "last", "missing"]


def items(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 4 + int(torch.randint(0, 9, (1,), generator=g))
        ids = tuple(int(x) for x in torch.randint(1, 128, (length,), generator=g))
        out.append(
            Item(
                f"ex{i:04d}", ids, {"first": 0, "last": length - 1, "missing": None if i % 3 else 1}
            )
        )
    return out


def layout(model, sites=("residual",), max_keys=16):
    n, h = model.config.num_hidden_layers, model.config.hidden_size
    blocks = list(range(1, n + 1))
    spec = {
        "residual": {"layers": list(range(n + 1)), "dims": [h]},
        "mlp": {"layers": blocks, "dims": [h]},
        "attn": {"layers": blocks, "dims": [h]},
        "attn_weights": {"layers": blocks, "dims": [model.config.num_attention_heads, max_keys]},
    }
    return {"positions": POS, "dtype": "float32", "sites": {s: spec[s] for s in sites}}


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gemma3_text"])
def test_batched_padded_extraction_equals_one_example_at_a_time(family, tmp_path):
    model = tiny_model(family)
    sites = ("residual", "mlp", "attn", "attn_weights")
    store = ActivationStore.open_or_create(
        tmp_path / "s", key="k", layout=layout(model, sites), provenance={}
    )
    its = items(10)
    assert extract_to_store(model, 0, its, store, batch_size=4) == 10
    by_id = {e["qid"]: i for i, e in enumerate(store.examples())}
    for it in its[:4]:
        i = by_id[it.qid]
        gather = torch.tensor([[it.positions["first"], it.positions["last"]]])
        one = forward_capture(
            model,
            [it.ids],
            gather,
            {s: layout(model, sites)["sites"][s]["layers"] for s in sites},
            0,
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
    assert torch.all(store.position("missing", "residual")[~torch.from_numpy(v[:, 2])] == 0)


def test_resume_skips_stored_examples(tmp_path):
    model = tiny_model("llama")
    store = ActivationStore.open_or_create(
        tmp_path / "s", key="k", layout=layout(model), provenance={}
    )
    assert extract_to_store(model, 0, items(6), store, batch_size=4) == 6
    again = ActivationStore.open_or_create(
        tmp_path / "s", key="k", layout=layout(model), provenance={}
    )
    assert extract_to_store(model, 0, items(10), again, batch_size=4) == 4
    ids = [e["qid"] for e in ActivationStore.open(tmp_path / "s").examples()]
    assert sorted(ids) == [f"ex{i:04d}" for i in range(10)] and len(set(ids)) == 10


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from tests.conftest import tiny_model
    from tests.test_extract import items, layout
    from halluscan.engine import extract_to_store
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


@pytest.mark.slow
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
    clean = ActivationStore.open_or_create(
        tmp_path / "clean", key="k", layout=layout(model), provenance={}
    )
    extract_to_store(model, 0, items(40), clean, batch_size=4)
    order = {q: i for i, q in enumerate(e["qid"] for e in clean.examples())}
    perm = torch.tensor([order[q] for q in ids])
    torch.testing.assert_close(
        final.position("last", "residual"),
        clean.position("last", "residual")[perm],
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_full_disk_keeps_what_was_stored(tmp_path, monkeypatch):
    model = tiny_model("llama")
    store = ActivationStore.open_or_create(
        tmp_path / "s", key="k", layout=layout(model), provenance={}
    )
    extract_to_store(model, 0, items(4), store, batch_size=4)
    import halluscan.atomic as st

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
    assert (
        kept.n_examples == 4 and kept.verify() == [] and not list((tmp_path / "s").rglob("*.tmp"))
    )


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


def test_full_tensors_whole_and_pooled(tmp_path):
    from halluscan.engine import extract_full_to_store, full_layout

    model = tiny_model("llama")
    its = items(5)
    spans = {it.qid: (1, len(it.ids)) for it in its}
    raw = ActivationStore.open_or_create(
        tmp_path / "raw", key="k", layout=full_layout(3, 32, 16, "float32"), provenance={}
    )
    pooled = ActivationStore.open_or_create(
        tmp_path / "p", key="k", layout=full_layout(3, 32, 4, "float32"), provenance={}
    )
    extract_full_to_store(model, 0, its, raw, spans, pool=False)
    extract_full_to_store(model, 0, its, pooled, spans, pool=True)
    with torch.inference_mode():
        for i, e in enumerate(raw.examples()):
            it = next(x for x in its if x.qid == e["qid"])
            ref = torch.stack(
                model(torch.tensor([it.ids]), output_hidden_states=True).hidden_states[:3]
            )[:, 0, 1:]
            got = raw.position("all")[i]  # [layer, grid, H]
            torch.testing.assert_close(got[:3, : len(it.ids) - 1], ref, rtol=1e-4, atol=1e-5)
            assert torch.all(got[:, len(it.ids) - 1 :] == 0)
            torch.testing.assert_close(
                pooled.position("all")[i],
                pool_tokens(got[:, : len(it.ids) - 1], 4),
                rtol=1e-4,
                atol=1e-5,
            )


RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, tempfile
    sys.path.insert(0, {repo!r})
    from tests.conftest import tiny_model
    from tests.test_extract import items, layout
    from halluscan.engine import extract_to_store
    from halluscan.store import ActivationStore
    model = tiny_model("llama")
    its = items({n})
    warm = ActivationStore.open_or_create(tempfile.mkdtemp(), key="k", layout=layout(model),
    provenance={{}})
    extract_to_store(model, 0, its[:16], warm, batch_size=8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = ActivationStore.open_or_create(tempfile.mkdtemp(), key="k", layout=layout(model),
    provenance={{}})
    extract_to_store(model, 0, its, store, batch_size=16)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
    """
)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_examples(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def growth_kb(n):
        out = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT.format(repo=repo, n=n)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.split()[-1])

    small, large = growth_kb(100), growth_kb(3200)
    # 32x the examples: peak RSS may move by allocator noise, not by the data (3,200 examples x
    # 4 layers x 3 positions x 32 floats are 4.9 MB, which must not stay in memory).
    assert large - small < 2048, (small, large)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
def test_shared_prefix_gives_the_same_activations_for_every_site(family):
    model = tiny_model(family)
    n = model.config.num_hidden_layers
    prefix = (5, 9, 11, 3, 7, 2)
    seqs = [prefix + tuple(range(20, 20 + k)) for k in (3, 6, 4)]
    gather = torch.tensor([[6, len(s) - 1] for s in seqs])
    sites = {
        "residual": list(range(n + 1)),
        "mlp": [1, n],
        "attn": [2],
        "attn_weights": list(range(1, n + 1)),
    }
    a = forward_capture(model, seqs, gather, sites, 0, share_prefix=True)
    b = forward_capture(model, seqs, gather, sites, 0, share_prefix=False)
    for s in sites:
        torch.testing.assert_close(a[s], b[s], rtol=1e-4, atol=1e-5)


def test_attention_received_matches_eager_output_attentions():
    from halluscan.scan.attention import attention_received, normalise_layers

    model = tiny_model("llama")
    seq = (3, 14, 15, 92, 65, 35)
    with torch.inference_mode():
        # [L, q, k]
        att = torch.stack(model(torch.tensor([seq]), output_attentions=True).attentions)[:, 0].mean(
            1
        )
    got = attention_received(model, [seq], 0)[0]
    later = torch.ones(6, 6).tril(-1)
    want = (att * later).sum(1) / later.sum(0).clamp(min=1)
    torch.testing.assert_close(got[:, :-1], want[:, :-1], rtol=1e-4, atol=1e-6)
    assert torch.all(torch.isnan(got[:, -1]))  # no later query: nothing to average
    last = attention_received(model, [seq], 0, query=-1)[0]
    torch.testing.assert_close(last, att[:, -1], rtol=1e-4, atol=1e-6)
    norm = normalise_layers(got)[:, :-1]
    assert torch.allclose(norm.max(-1).values, torch.ones(3)) and torch.allclose(
        norm.min(-1).values, torch.zeros(3)
    )
    assert torch.all(torch.isnan(normalise_layers(got)[:, -1]))


@pytest.mark.parametrize(
    "positions,pattern",
    [
        (
            {"first": -1},
            r"item 'bad': position 'first' is -1, not an index into its 5 tokens \(0..4\)",
        ),
        ({"last": 5}, r"item 'bad': position 'last' is 5, not an index into its 5 tokens"),
        ({"last": 2.0}, r"position 'last' is 2.0, not an index"),
        (
            {"lats": 4},
            r"item 'bad': unknown position 'lats'; the store's positions are: first, last, missing",
        ),
    ],
)
def test_bad_item_positions_are_refused_before_anything_is_written(tmp_path, positions, pattern):
    model = tiny_model("llama")
    store = ActivationStore.open_or_create(
        tmp_path / "s", key="k", layout=layout(model), provenance={}
    )
    bad = Item("bad", (1, 2, 3, 4, 5), positions)
    with pytest.raises(HalluscanError, match=pattern):
        extract_to_store(model, 0, [*items(6), bad], store, batch_size=4)
    assert ActivationStore.open(tmp_path / "s").n_examples == 0 and not list(
        (tmp_path / "s").rglob("*.npy")
    )
    with pytest.raises(HalluscanError, match="has no tokens"):
        extract_to_store(model, 0, [Item("empty", (), {})], store)
