import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from halluscan.errors import HalluscanError
from halluscan.probes import Features, LinearProbe
from halluscan.probes.logreg import fit_logreg
from halluscan.probes.sweep import auc_rows, folds_for, metadata_prior_auc, sweep


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
    a, b = xt[:, tr], xt[:, te]
    mu, sd = a.mean(1, keepdim=True), a.std(1, keepdim=True)
    a, b = (a - mu) / sd, (b - mu) / sd
    for c in (1.0, 0.05):
        w, bias = fit_logreg(a, y[tr], c).raw()  # one fold: [cell, 1, d], [cell, 1]
        ours = auc_rows((torch.einsum("cnd,cd->cn", b, w[:, 0]) + bias[:, :1]).numpy(), y[te])
        ref = [
            roc_auc_score(
                y[te],
                LogisticRegression(C=c, max_iter=2000)
                .fit(a[k].numpy(), y[tr])
                .decision_function(b[k].numpy()),
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
        Features((0, 1, 2), ("a", "b"), valid, lambda p: xt if p == "a" else -xt),
        y,
        [str(i) for i in range(400)],
        folds=5,
        seed=0,
        c=1.0,
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
    with pytest.raises(
        HalluscanError, match="only 2 examples in the smaller class, fewer than 5 folds"
    ):
        folds_for(np.array([0] * 20 + [1] * 2), [str(i) for i in range(22)], 5, 0)


def test_metadata_prior_auc():
    cats = ["a"] * 100 + ["b"] * 100
    y = np.array([1] * 80 + [0] * 20 + [1] * 20 + [0] * 80)
    assert metadata_prior_auc(cats, y, [str(i) for i in range(200)], 5, 0) == pytest.approx(
        0.8, abs=0.02
    )


def test_linear_probe_estimator_basics():
    x, y = synthetic()
    p = LinearProbe(C=1.0).fit(x[:, 2], y)
    proba = p.predict_proba(x[:, 2])
    assert proba.shape == (300, 2) and np.allclose(proba.sum(1), 1)
    assert roc_auc_score(y, p.decision_function(x[:, 2])) > 0.85
    assert p.get_params() == {"C": 1.0, "max_iter": 500, "device": "cpu"}


def test_fold_interval_covers_the_mean():
    from halluscan.probes.sweep import fold_interval

    per_fold = np.array([[0.80, 0.5], [0.82, 0.5], [0.84, 0.5], [0.78, 0.5], [0.81, 0.5]])
    lo, hi = fold_interval(per_fold)
    assert lo[0] < 0.81 < hi[0] and hi[0] - lo[0] == pytest.approx(
        2 * 2.776 * per_fold[:, 0].std(ddof=1) / np.sqrt(5), rel=1e-3
    )
    assert lo[1] == hi[1] == 0.5


def test_probe_bank_round_trip_matches_per_layer_probes(tmp_path):
    from halluscan.probes import ProbeBank

    x, y = synthetic(n=200, cells=3)
    bank = ProbeBank.fit(
        torch.from_numpy(x), y, [0, 1, 2], "exact_answer_last", c=1.0, meta={"site": "residual"}
    )
    back = ProbeBank.load(bank.save(tmp_path / "bank"))
    assert (
        back.layers == [0, 1, 2]
        and back.position == "exact_answer_last"
        and back.meta["site"] == "residual"
    )
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
    res = sweep(
        Features((0, 1, 2), ("a", "b", "c"), valid, lambda p: xt),
        y,
        [str(i) for i in range(200)],
        folds=5,
    )
    assert np.isfinite(res.auc[:, 0]).all()
    assert np.isnan(res.auc[:, 1]).all() and np.isnan(res.auc[:, 2]).all()
    assert res.n == [200, 5, int(y.sum())] and res.best("c")[0] == -1 and np.isnan(res.best("c")[1])


def test_fit_logreg_folds_match_sklearn_per_fold_with_odd_features():
    """Every fold of every problem equals sklearn's StandardScaler + LogisticRegression there."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = synthetic(n=240, cells=3, d=12, seed=3)
    x[:, :, 0] = 7.0  # a constant feature
    x[:, :, 1] *= 300.0  # a huge-scale feature (residual streams have these)
    splits = folds_for(y, [str(i // 2) for i in range(len(y))], 4, 0)
    train = torch.zeros(len(y), 4)
    for f, (tr, _) in enumerate(splits):
        train[tr, f] = 1
    fit = fit_logreg(torch.from_numpy(x).transpose(0, 1).contiguous(), y, 0.05, train, tol=1e-7)
    assert bool(fit.converged.all())
    w, b = fit.raw()
    for p in range(3):
        for f, (tr, _) in enumerate(splits):
            ref = make_pipeline(
                StandardScaler(), LogisticRegression(C=0.05, tol=1e-8, max_iter=5000)
            )
            ref.fit(x[tr, p], y[tr])
            ours = x[:, p] @ w[p, f].numpy() + float(b[p, f])
            assert np.allclose(ours, ref.decision_function(x[:, p]), atol=2e-3)
            # logits kept along the way
            assert np.allclose(fit.logits[p, f].numpy(), ours, atol=1e-3)


def test_fit_logreg_shrinking_batch_keeps_early_results():
    """Problems that converge early leave the batch; their results equal a fit on their own."""
    rng = np.random.default_rng(5)
    n, d = 200, 30
    y = rng.integers(0, 2, n)
    easy = rng.normal(size=(4, n, d)) * 0.01  # almost nothing to fit: converges in a few steps
    hard = rng.normal(size=(4, n, d)) + y[None, :, None] * rng.normal(size=(4, 1, d))
    x = torch.from_numpy(np.concatenate([easy, hard]).astype(np.float32))
    together = fit_logreg(x, y, 1.0)
    for p in (0, 5):
        alone = fit_logreg(x[p : p + 1], y, 1.0)
        assert torch.allclose(together.coef[p], alone.coef[0], atol=1e-3)
        assert torch.allclose(together.intercept[p], alone.intercept[0], atol=1e-3)


def test_fit_logreg_refuses_bad_shapes_and_tiny_folds():
    with pytest.raises(HalluscanError, match="problem, example, feature"):
        fit_logreg(torch.zeros(5, 3), np.zeros(5), 1.0)
    with pytest.raises(HalluscanError, match="labels"):
        fit_logreg(torch.zeros(1, 5, 3), np.zeros(4), 1.0)
    train = torch.zeros(5, 1)
    train[0] = 1
    with pytest.raises(HalluscanError, match="fewer than 2 training"):
        fit_logreg(torch.zeros(1, 5, 3), np.array([0, 1, 0, 1, 0]), 1.0, train)
