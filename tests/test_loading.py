"""Model loading: the GGUF conversion cache (conversion faked with a tiny model; no real GGUF needed)."""

import json

import pytest
import torch

from halluscan.models import loading

from .conftest import tiny_model


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A .gguf path whose 'conversion' yields the tiny llama; records the dtype each conversion asked for."""
    import transformers as tf

    monkeypatch.setenv("HALLUSCAN_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF not really")
    conversions = []
    real = tf.AutoModelForCausalLM.from_pretrained

    def from_pretrained(spec, *args, gguf_file=None, dtype=None, **kw):
        if gguf_file is None:
            return real(spec, *args, dtype=dtype, **kw)
        conversions.append(dtype)
        return tiny_model("llama").to(dtype)

    class Tok:
        def save_pretrained(self, folder):
            pass

    monkeypatch.setattr(tf.AutoModelForCausalLM, "from_pretrained", staticmethod(from_pretrained))
    monkeypatch.setattr(tf.AutoTokenizer, "from_pretrained", staticmethod(lambda *a, **k: Tok()))

    def load_pretrained(spec, torch_dtype, *, source, revision, model_id=None):
        model = tf.AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype)
        return loading.LoadedModel(model, None, model_id or spec, source, revision, False)

    monkeypatch.setattr(loading, "_load_pretrained", load_pretrained)
    return path, conversions


def test_gguf_cache_is_float32_whatever_dtype_comes_first(fake_gguf):
    path, conversions = fake_gguf
    half = loading.load_model(str(path), dtype="bfloat16")
    assert conversions == [torch.float32] and next(half.model.parameters()).dtype == torch.bfloat16
    full = loading.load_model(str(path), dtype="float32")
    assert conversions == [torch.float32]  # the cache is reused
    want = tiny_model("llama").state_dict()
    for k, v in full.model.state_dict().items():  # exactly the float32 weights, not bfloat16 ones cast back up
        assert v.dtype == torch.float32 and torch.equal(v, want[k]), k


def test_a_cache_in_another_dtype_is_converted_again(fake_gguf):
    path, conversions = fake_gguf
    loading.load_model(str(path))
    (cache,) = (loading.cache_root() / "models").iterdir()
    cfg = json.loads((cache / "config.json").read_text())
    cfg["dtype"] = "bfloat16"  # as an older halluscan left it after a bfloat16 load
    (cache / "config.json").write_text(json.dumps(cfg))
    lm = loading.load_model(str(path))
    assert len(conversions) == 2 and loading._cache_dtype(cache) == "float32"
    assert [p.name for p in (loading.cache_root() / "models").iterdir()] == [cache.name]  # nothing stale left
    assert torch.equal(lm.model.lm_head.weight, tiny_model("llama").lm_head.weight)
