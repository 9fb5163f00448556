import numpy as np
import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.store import ActivationStore
from halluscan.study.transfer import transfer_matrix, transfer_stores
from tests.conftest import example

LAYOUT = {
    "positions": ["a", "b"],
    "dtype": "float32",
    "sites": {"residual": {"layers": [0, 1], "dims": [8]}},
}


def make_store(root, n, seed, signal_layer=1, flip=False, provenance=None, dims=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2, 2, dims)).astype(np.float32)
    # wrong answers shift feature 0
    x[:, signal_layer, :, 0] += (1 - 2 * y if flip else 2 * y - 1)[:, None] * 1.5
    lay = {**LAYOUT, "sites": {"residual": {"layers": [0, 1], "dims": [dims]}}}
    s = ActivationStore.open_or_create(root, key="k", layout=lay, provenance=provenance or {})
    s.append(
        {"residual": torch.from_numpy(x)},
        np.ones((n, 2), bool),
        [example(str(i), correct=not y[i]).to_json() for i in range(n)],
    )
    return s


def test_probes_transfer_when_the_signal_is_shared(tmp_path):
    a, b = make_store(tmp_path / "a", 300, 0), make_store(tmp_path / "b", 200, 1)
    res = transfer_stores(a, b, "residual")
    assert res.auc.shape == (2, 2)
    assert np.all(res.auc[1] > 0.8) and np.all(np.abs(res.auc[0] - 0.5) < 0.15)
    flipped = transfer_stores(a, make_store(tmp_path / "c", 200, 2, flip=True), "residual")
    assert np.all(flipped.auc[1] < 0.2)  # the direction does not generalise: AUC falls below chance


def test_matrix_and_mismatch(tmp_path):
    make_store(tmp_path / "a", 120, 0)
    make_store(tmp_path / "b", 120, 1)
    m = transfer_matrix([tmp_path / "a", tmp_path / "b"], "residual")
    assert np.isnan(m[0, 0]) and m[0, 1] > 0.8 and m[1, 0] > 0.8  # no metrics.json: no diagonal
    other = ActivationStore.open_or_create(
        tmp_path / "o", key="k", layout={**LAYOUT, "positions": ["a"]}, provenance={}
    )
    with pytest.raises(HalluscanError, match="layers or positions differ"):
        transfer_stores(ActivationStore.open(tmp_path / "a"), other, "residual")


def test_cli_probe_train_test_and_matrix(tmp_path, capsys):
    import json

    from halluscan.cli import main

    make_store(tmp_path / "a" / "store", 200, 0)
    make_store(tmp_path / "b" / "store", 200, 1)
    out = tmp_path / "out"
    assert (
        main(
            [
                "probe",
                "--train",
                str(tmp_path / "a"),
                "--test",
                str(tmp_path / "b"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "best cell on" in capsys.readouterr().out
    saved = json.loads((out / "transfer.json").read_text())
    assert np.array(saved["auc"]).shape == (2, 2) and (out / "transfer_heatmap.png").is_file()
    assert (
        main(["probe", "--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    )
    assert json.loads((out / "transfer_matrix.json").read_text())["best_auc"][0][1] > 0.8
    assert main(["probe", "--train", str(tmp_path / "a"), "--out", str(out)]) == 2
    assert "give --train RUN and --test RUN" in capsys.readouterr().err


def model_prov(model_id, revision, source="hub"):
    return {"model": {"model_id": model_id, "revision": revision, "source": source}}


def test_runs_of_different_models_or_dims_are_refused(tmp_path):
    a = make_store(tmp_path / "a", 60, 0, provenance=model_prov("org/llama-1b", "abc123"))
    b = make_store(tmp_path / "b", 60, 1, provenance=model_prov("org/qwen-1b", "def456"))
    with pytest.raises(
        HalluscanError,
        match=r"b was made with model org/qwen-1b \(def456\) but .*a with org/llama-1b",
    ):
        transfer_stores(a, b, "residual")
    other_rev = make_store(tmp_path / "r", 60, 1, provenance=model_prov("org/llama-1b", "fff000"))
    with pytest.raises(HalluscanError, match="probes transfer only between runs of the same model"):
        transfer_stores(a, other_rev, "residual")
    with pytest.raises(HalluscanError, match="probes transfer only between runs of the same model"):
        transfer_matrix([tmp_path / "a", tmp_path / "b"], "residual")
    wide = make_store(tmp_path / "w", 60, 1, dims=16)
    with pytest.raises(
        HalluscanError, match=r"w: its residual features have dims \[16\] but .*a's have \[8\]"
    ):
        transfer_stores(a, wide, "residual")
    # the same model (a GGUF known by its file hash, here at another path) transfers
    g1 = make_store(
        tmp_path / "g1", 60, 0, provenance=model_prov("/x/m.gguf", "sha256:99", source="gguf")
    )
    g2 = make_store(
        tmp_path / "g2", 60, 1, provenance=model_prov("/y/m.gguf", "sha256:99", source="gguf")
    )
    assert transfer_stores(g1, g2, "residual").auc.shape == (2, 2)
    same = make_store(tmp_path / "s", 60, 1, provenance=model_prov("org/llama-1b", "abc123"))
    assert transfer_stores(a, same, "residual").auc.shape == (2, 2)
