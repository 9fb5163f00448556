"""Every site on every family's tiny model agrees with HF outputs or a manual computation."""

import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.models.hooks import capture

from .conftest import FAMILIES, TINY, tiny_model


def run(model, ids, sites, select):
    with torch.inference_mode(), capture(model, sites, select) as cap:
        model(ids)
    return {s: cap.stacked(s) for s in sites}


@pytest.mark.parametrize("family", FAMILIES)
def test_attn_and_mlp_outputs_add_up_to_the_residual_update(family):
    model = tiny_model(family)
    n = model.config.num_hidden_layers
    ids = torch.randint(0, 128, (2, 7))
    pos = torch.tensor([0, 3, 6])
    got = run(
        model,
        ids,
        {
            "residual": list(range(n + 1)),
            "mlp": list(range(1, n + 1)),
            "attn": list(range(1, n + 1)),
        },
        lambda h: h[:, pos],
    )
    blocks = model.model.layers if hasattr(model, "model") else None
    for layer in range(1, n + 1):
        attn, mlp = got["attn"][:, layer - 1], got["mlp"][:, layer - 1]
        if family in ("gemma2", "gemma3_text"):  # sandwich norms: the block adds the normed outputs
            blk = blocks[layer - 1]
            attn, mlp = blk.post_attention_layernorm(attn), blk.post_feedforward_layernorm(mlp)
        delta = got["residual"][:, layer] - got["residual"][:, layer - 1]
        torch.testing.assert_close(attn + mlp, delta, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_weights_match_output_attentions(family):
    model = tiny_model(family)  # built with eager attention so that HF can return the weights
    n = model.config.num_hidden_layers
    ids = torch.randint(0, 128, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding on the second row
    pos = torch.tensor([[7, 5], [7, 4]])
    rows = torch.arange(2)[:, None]
    with torch.inference_mode():
        ref = model(ids, attention_mask=mask, output_attentions=True).attentions  # L x [B, H, T, S]
        with capture(model, {"attn_weights": list(range(1, n + 1))}, lambda h: h[rows, pos]) as cap:
            model(ids, attention_mask=mask)
        got = cap.stacked("attn_weights")  # [B, layer, K, H, S]
    for layer in range(n):
        want = ref[layer][rows, :, pos]  # [B, K, H, S]
        torch.testing.assert_close(got[:, layer], want.float(), rtol=1e-4, atol=1e-5)
    assert torch.allclose(got.sum(-1), torch.ones(()), atol=1e-5)


def test_attention_capture_keeps_the_sdpa_kernel_and_its_output():
    import transformers as tf

    cfg = tf.LlamaConfig(**{**TINY, "num_hidden_layers": 2, "num_key_value_heads": 2})
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    ids = torch.randint(0, 128, (1, 6))
    with torch.inference_mode():
        plain = model(ids).logits
        with capture(model, {"attn_weights": [1, 2]}, lambda h: h[:, -1:]) as cap:
            during = model(ids).logits
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(plain, during)  # the output is the sdpa kernel's, bit for bit
    assert cap.stacked("attn_weights").shape == (1, 2, 1, 4, 6)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    # the wrapper is gone after the block
    assert "sdpa" not in ALL_ATTENTION_FUNCTIONS._local_mapping


def test_bad_site_or_layer():
    model = tiny_model("llama")
    with pytest.raises(HalluscanError, match="unknown site 'resid'"):
        with capture(model, {"resid": [0]}):
            pass
    with pytest.raises(HalluscanError, match=r"site 'mlp' has no layer 0; valid layers are 1..3"):
        with capture(model, {"mlp": [0]}):
            pass


def test_readme_lists_exactly_the_supported_architectures():
    from pathlib import Path

    from halluscan.models.sites import SITE_TABLES

    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    documented = {
        "Llama": {"llama"},
        "Mistral": {"mistral"},
        "Qwen2/3": {"qwen2", "qwen3"},
        "Gemma 1/2/3 (text)": {"gemma", "gemma2", "gemma3_text"},
        "Phi-3": {"phi3"},
        "GPT-2": {"gpt2"},
        "GPT-NeoX": {"gpt_neox"},
    }
    assert set().union(*documented.values()) == set(SITE_TABLES)
    line = (
        "any Hugging Face causal LM of a supported architecture "
        "(see `src/halluscan/models/sites.py`: "
    )
    assert line + ", ".join(documented) + ")" in text
