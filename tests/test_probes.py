import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from halluscan.errors import HalluscanError
from halluscan.probes import (
    LinearProbe,
    auc_rows,
    fit_logreg_batched,
    folds_for,
    metadata_prior_auc,
    standardise,
    sweep,
)


def synthetic(n=300, cells=4, d=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, cells, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = ((x[:, 2] @ w) * 0.5 + rng.normal(size=n) > 0).astype(np.int64)
    return x, y


def test_auc_rows_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=(3, 200)), 1)
    assert np.allclose(auc_rows(s, y), [roc_auc_score(y, r) for r in s])


def test_batched_fit_agrees_with_sklearn():
    x, y = synthetic()
    xt = torch.from_numpy(x).transpose(0, 1)
    tr, te = np.arange(200), np.arange(200, 300)
    a, b = standardise(xt[:, tr], xt[:, te])
    for c in (1.0, 0.05):
        w, bias = fit_logreg_batched(a, torch.from_numpy(y[tr]), c=c)
        ours = auc_rows((torch.einsum("cnd,cd->cn", b, w) + bias[:, None]).numpy(), y[te])
        ref = [
            roc_auc_score(
                y[te], LogisticRegression(C=c, max_iter=2000).fit(a[k].numpy(), y[tr]).decision_function(b[k].numpy())
            )
            for k in range(4)
        ]
        assert np.abs(ours - ref).max() <= 0.01
    assert ours[2] > 0.8 and max(ours[[0, 1, 3]]) < 0.7  # the signal is in cell 2 only


def test_sweep_finds_the_informative_cell_and_golden_auc():
    x, y = synthetic(n=400, cells=3)
    xt = torch.from_numpy(x)
    valid = np.ones((400, 2), bool)
    valid[:50, 1] = False
    res = sweep(
        lambda p: xt if p == "a" else -xt,
        valid,
        y,
        [str(i) for i in range(400)],
        [0, 1, 2],
        ["a", "b"],
        folds=5,
        seed=0,
    )
    assert res.n == [400, 350]
    assert res.best("a")[0] == 2 and res.best("b")[0] == 2
    assert res.auc[2, 0] == pytest.approx(0.903, abs=0.005)  # golden value: seed 0, fixed data
    assert np.all(res.auc[:2] < 0.62)


def test_grouped_folds_keep_a_question_on_one_side():
    y = np.array([0, 1] * 30)
    groups = [str(i // 3) for i in range(60)]
    for tr, te in folds_for(y, groups, 5, 0):
        assert not {groups[i] for i in tr} & {groups[i] for i in te}


def test_too_few_examples_in_a_class_is_a_clear_error():
    with pytest.raises(HalluscanError, match="only 2 examples in the smaller class, fewer than 5 folds"):
        folds_for(np.array([0] * 20 + [1] * 2), [str(i) for i in range(22)], 5, 0)


def test_metadata_prior_auc():
    cats = ["a"] * 100 + ["b"] * 100
    y = np.array([1] * 80 + [0] * 20 + [1] * 20 + [0] * 80)
    assert metadata_prior_auc(cats, y, [str(i) for i in range(200)], 5, 0) == pytest.approx(0.8, abs=0.02)


def test_linear_probe_estimator_basics():
    x, y = synthetic()
    p = LinearProbe(C=1.0).fit(x[:, 2], y)
    proba = p.predict_proba(x[:, 2])
    assert proba.shape == (300, 2) and np.allclose(proba.sum(1), 1)
    assert roc_auc_score(y, p.decision_function(x[:, 2])) > 0.85
    assert p.get_params() == {"C": 1.0, "max_iter": 500}


def test_fold_interval_covers_the_mean():
    from halluscan.probes import fold_interval

    per_fold = np.array([[0.80, 0.5], [0.82, 0.5], [0.84, 0.5], [0.78, 0.5], [0.81, 0.5]])
    lo, hi = fold_interval(per_fold)
    assert lo[0] < 0.81 < hi[0] and hi[0] - lo[0] == pytest.approx(
        2 * 2.776 * per_fold[:, 0].std(ddof=1) / np.sqrt(5), rel=1e-3
    )
    assert lo[1] == hi[1] == 0.5


def test_probe_bank_round_trip_matches_per_layer_probes(tmp_path):
    from halluscan.probes import ProbeBank

    x, y = synthetic(n=200, cells=3)
    bank = ProbeBank.fit(torch.from_numpy(x), y, [0, 1, 2], "exact_answer_last", c=1.0, meta={"site": "residual"})
    back = ProbeBank.load(bank.save(tmp_path / "bank"))
    assert back.layers == [0, 1, 2] and back.position == "exact_answer_last" and back.meta["site"] == "residual"
    z = back.decision_function(torch.from_numpy(x))  # [n, layer]
    torch.testing.assert_close(z, bank.decision_function(torch.from_numpy(x)))
    ref = LinearProbe(C=1.0).fit(x[:, 2], y).decision_function(x[:, 2])
    assert np.corrcoef(z[:, 2].numpy(), ref)[0, 1] > 0.999
    with pytest.raises(HalluscanError, match="no probe bank here"):
        ProbeBank.load(tmp_path / "nothing")


def test_degenerate_inputs_are_handled_not_crashed():
    x, y = synthetic(n=200, cells=3, d=6)
    x[:, :, 0] = 3.0  # a constant feature
    xt = torch.from_numpy(x)
    valid = np.ones((200, 3), bool)
    valid[:, 2] = y == 1  # only one class at the third position
    valid[5:, 1] = False  # only 5 examples at the second
    res = sweep(lambda p: xt, valid, y, [str(i) for i in range(200)], [0, 1, 2], ["a", "b", "c"], folds=5)
    assert np.isfinite(res.auc[:, 0]).all()
    assert np.isnan(res.auc[:, 1]).all() and np.isnan(res.auc[:, 2]).all()
    assert res.n == [200, 5, int(y.sum())] and res.best("c")[0] == -1 and np.isnan(res.best("c")[1])
