import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.models.hooks import capture_residual
from halluscan.models.sites import site_table

from .conftest import FAMILIES, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_matches_output_hidden_states(family):
    model = tiny_model(family)
    ids = torch.randint(0, 128, (2, 9))
    pos = torch.tensor([1, 4, 8])
    with torch.inference_mode():
        ref = model(ids, output_hidden_states=True).hidden_states
        with capture_residual(model, select=lambda h: h[:, pos]) as cap:
            model(ids)
        got = cap.stacked()  # [B, layer, pos, H]
    n = model.config.num_hidden_layers
    assert got.shape == (2, n + 1, 3, ref[0].shape[-1])
    # HF's last hidden state has the final norm applied; ours is the raw block output.
    for layer in range(n):
        torch.testing.assert_close(got[:, layer], ref[layer][:, pos], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[:, n], ref[n][:, pos])


def test_last_layer_is_block_output_before_final_norm():
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 6))
    with torch.inference_mode():
        out = model(ids, output_hidden_states=True)
        with capture_residual(model) as cap:
            model(ids)
        got = cap.stacked()[:, -1]
    torch.testing.assert_close(model.model.norm(got), out.hidden_states[-1], rtol=1e-5, atol=1e-5)


def test_stop_early_skips_later_layers_and_hooks_are_removed():
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 5))
    calls = []
    h = model.model.layers[2].register_forward_hook(lambda *a: calls.append(1))
    from halluscan.models.hooks import StopForward

    with capture_residual(model, layers=[0, 2], stop_early=True) as cap:
        with pytest.raises(StopForward):
            model(ids)
    h.remove()
    assert calls == []  # block 3 (index 2) never ran
    assert cap.layers_seen == [0, 2]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.model.layers)


def test_unknown_architecture_names_the_table():
    model = tiny_model("llama")
    model.config.model_type = "mystery"
    with pytest.raises(
        HalluscanError, match=r"'mystery'.*SITE_TABLES in halluscan/models/sites.py"
    ):
        site_table(model)
