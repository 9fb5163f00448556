import numpy as np
import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.store import ActivationStore
from halluscan.study.transfer import Side, fixed_cell, transfer_matrix, transfer_stores
from tests.conftest import example

LAYOUT = {
    "positions": ["a", "b"],
    "dtype": "float32",
    "sites": {"residual": {"layers": [0, 1], "dims": [8]}},
}


def make_store(
    root, n, seed, signal_layer=1, flip=False, provenance=None, dims=8, questions=None, extra=None
):
    """A store of ``n`` answers; wrong ones shift feature 0 at ``signal_layer``.

    Each store asks its own questions (named after its folder) unless ``questions`` names them.
    """
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
        [
            example(
                str(i),
                correct=not y[i],
                **{
                    "question": (questions or f"{root} {{}}?").format(i),
                    **(extra(i, y[i]) if extra else {}),
                },
            ).to_json()
            for i in range(n)
        ],
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
    assert m.auc[0][0] is None and m.auc[1][1] is None  # no metrics.json: no diagonal
    assert m.auc[0][1] > 0.8 and m.auc[1][0] > 0.8
    assert m.max_auc[0][1] >= m.auc[0][1]  # the best of the test cells is at least the fixed one
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
    printed = capsys.readouterr().out.splitlines()
    # the fixed cell comes first; the best test cell last, labelled optimistic
    assert printed[0].startswith(f"at the cell chosen on {tmp_path / 'a'} (")
    assert printed[1].startswith(f"  AUC on {tmp_path / 'b'} ")
    assert any("optimistic" in line for line in printed[2:])
    saved = json.loads((out / "transfer.json").read_text())
    assert np.array(saved["auc"]).shape == (2, 2) and (out / "transfer_heatmap.png").is_file()
    fixed = saved["fixed_cell"]
    assert fixed["cell"]["layer"] == 1 and fixed["auc"] > 0.8  # layer 1 holds the signal
    assert 0 <= fixed["ci95"][0] <= fixed["auc"] <= fixed["ci95"][1] <= 1
    assert (
        main(["probe", "--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    )
    assert json.loads((out / "transfer_matrix.json").read_text())["auc"][0][1] > 0.8
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


def test_a_test_run_on_the_training_questions_is_refused_and_a_few_shared_are_left_out(
    tmp_path, caplog
):
    a = make_store(tmp_path / "a", 120, 0, questions="question {}?")
    same = make_store(tmp_path / "same", 100, 1, questions="question {}?")  # a subset of a's
    with pytest.raises(HalluscanError, match="100 of its 100 questions are in .*a; that is no"):
        transfer_stores(a, same, "residual")
    # 10 of 120 questions shared: a warning, and they are left out of every number
    part = make_store(
        tmp_path / "part",
        120,
        3,
        extra=lambda i, _w: {"question": f"question {i}?"} if i < 10 else {},
    )
    f, _ = fixed_cell(Side.of(a, "residual"), Side.of(part, "residual"), "residual")
    assert f.shared_questions == 10 and f.n == 110
    assert "10 of 120 questions" in caplog.text


def logprobs(i, wrong):
    """Token log-probabilities that point the wrong way: wrong answers are the confident ones."""
    rng = np.random.default_rng(i)
    mean = -0.2 if wrong else -1.2
    return {
        "token_logprobs": tuple(mean + 0.5 * rng.standard_normal(2)),
        "token_entropies": (1.0, 1.0),
    }


def test_transfer_is_judged_against_the_test_runs_logits_oriented_on_the_training_run(tmp_path):
    a = make_store(tmp_path / "a", 200, 0, extra=logprobs)
    b = make_store(tmp_path / "b", 200, 1, extra=logprobs)
    f, _ = fixed_cell(Side.of(a, "residual"), Side.of(b, "residual"), "residual")
    assert f.cell.layer == 1 and f.chosen_by == "cross-validation on the training run"
    # the log-prob scores say "higher = wrong" as given; here they point the other way, and are
    # compared oriented, with the orientation named
    assert f.baseline is not None and f.baseline_orientation == "lower = wrong"
    assert f.baseline_auc > 0.8
    assert f.gain == pytest.approx(f.auc - f.baseline_auc)
    lo, hi = f.gain_ci95
    assert -1 <= lo <= f.gain <= hi <= 1
