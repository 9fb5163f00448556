"""The whole-tensor detector: it learns a signal spread over cells, saves, loads and refuses."""

import json

import numpy as np
import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.probes.features import Features
from halluscan.probes.sweep import auc_rows
from halluscan.probes.tensor import (
    DetectorConfig,
    Labelled,
    fit_detector,
    grid,
    load_detector,
    save_detector,
)
from halluscan.records import CV
from halluscan.store import ActivationStore
from halluscan.study.detect import NESTED_CELL, detect
from tests.conftest import example

SMALL = DetectorConfig(bins=2, width=16, epochs=10, patience=10, batch=32)
POSITIONS = ["last_q", "exact_answer_first", "exact_answer_last"]


def signal(n, seed, layers=4, dims=8, shift=0.6):
    """Answers whose wrong ones move along one direction at the late layers of two positions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, layers, len(POSITIONS), dims)).astype(np.float32)
    direction = np.linspace(1.0, -1.0, dims).astype(np.float32)
    x[:, layers // 2 :, 1:, :] += (shift * (2 * y - 1))[:, None, None, None] * direction
    return x, y


def test_the_detector_learns_a_spread_signal_and_survives_a_round_trip(tmp_path):
    x, y = signal(400, 0)
    f = Features.from_array(x, positions=POSITIONS)
    g = grid(f, "tiny", POSITIONS, SMALL.bins)
    assert g.x.shape == (400, 2, 3, 8)
    groups = np.array([f"q{i}" for i in range(400)])
    tr = np.arange(400) < 300
    det = fit_detector([Labelled(g.rows(tr), y[tr], groups[tr])], SMALL)
    z = det.score(g.rows(~tr))
    assert auc_rows(z[None], y[~tr])[0] > 0.8
    save_detector(det, tmp_path / "d", {"provenance": {"runs": ["a"]}})
    again, meta = load_detector(tmp_path / "d")
    assert meta["provenance"] == {"runs": ["a"]}
    np.testing.assert_allclose(again.score(g.rows(~tr)), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(HalluscanError, match="no adapter for 'other'"):
        again.score(grid(f, "other", POSITIONS, SMALL.bins))


def test_absent_positions_are_masked_not_read():
    x, y = signal(200, 1)
    valid = np.ones((200, 3), bool)
    valid[::2, 2] = False
    f = Features.from_array(x, valid, positions=POSITIONS)
    g = grid(f, "tiny", POSITIONS, SMALL.bins)
    groups = np.array([str(i) for i in range(200)])
    det = fit_detector([Labelled(g, y, groups)], SMALL)
    moved = g.x.clone()
    moved[::2, :, 2] += 1e3  # what an absent position holds must not change the score
    from halluscan.probes.tensor import Grid

    a = det.score(g)
    b = det.score(Grid(g.model, g.positions, moved, g.mask))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_refused(tmp_path):
    x, y = signal(60, 2)
    f = Features.from_array(x, positions=POSITIONS)
    with pytest.raises(HalluscanError, match="not in these answers' store"):
        grid(f, "tiny", [*POSITIONS, "-1"], 2)
    with pytest.raises(HalluscanError, match="fewer than 8 bins"):
        grid(f, "tiny", POSITIONS, 8)
    g = grid(f, "tiny", POSITIONS, 2)
    with pytest.raises(HalluscanError, match="bins=4"):
        fit_detector([Labelled(g, y, np.arange(60))], DetectorConfig(bins=4))
    with pytest.raises(HalluscanError, match="both classes"):
        fit_detector([Labelled(g, np.zeros(60, int), np.arange(60))], SMALL)
    with pytest.raises(HalluscanError, match="no detector here"):
        load_detector(tmp_path)


def run_folder(root, n, seed, model="tiny"):
    """A finished study's store of ``n`` answers to its own questions, with the signal."""
    x, y = signal(n, seed)
    layout = {
        "positions": POSITIONS,
        "dtype": "float32",
        "sites": {"residual": {"layers": list(range(4)), "dims": [8]}},
    }
    prov = {"model": {"model_id": model, "revision": "r"}}
    s = ActivationStore.open_or_create(root / "store", key="k", layout=layout, provenance=prov)
    words = ["Paris", "Lima", "Rome", "Oslo"]
    rows = [
        example(
            f"{root.name}{i}",
            correct=not y[i],
            question=f"{root.name} question {i}?",
            response=f"{words[i % 4]}.",
            token_logprobs=(-0.1 * (i % 7), -0.2),
            token_entropies=(0.5, 0.1 * (i % 5)),
        ).to_json()
        for i in range(n)
    ]
    s.append({"residual": torch.from_numpy(x)}, np.ones((n, 3), bool), rows)
    return root


def test_detect_cross_validates_jointly_saves_and_tests_held_out(tmp_path):
    a = run_folder(tmp_path / "a", 160, 0)
    b = run_folder(tmp_path / "b", 160, 1, model="other")
    c = run_folder(tmp_path / "c", 120, 2)
    said = []
    d = detect([a, b], [c], tmp_path / "det", CV(folds=3), SMALL, say=said.append)
    assert [r.run for r in d.in_dataset] == [str(a), str(b)]
    for r in d.in_dataset:
        assert len(r.per_fold) == 3 and r.auc > 0.75
        assert NESTED_CELL in r.versus and "text" in r.versus and r.strongest in r.versus
        assert r.versus[NESTED_CELL].gain is not None
    assert [j.run for j in d.joint] == [str(a), str(b)] and all(j.auc > 0.7 for j in d.joint)
    (h,) = d.held_out
    assert h.cell_run == str(a) and h.n == 120 and h.auc > 0.75 and h.gain_over_cell is not None
    saved = json.loads((tmp_path / "det" / "detect.json").read_text())
    assert saved["held_out"][0]["test"] == str(c)
    assert saved["provenance"]["n_train"] == {str(a): 160, str(b): 160}
    assert any("fold 3/3" in line for line in said)
    with pytest.raises(HalluscanError, match="not among the training runs' models"):
        detect([b], [c], tmp_path / "det2", CV(folds=3), SMALL, say=said.append)
    assert not (tmp_path / "det2").exists()  # refused before anything was written
