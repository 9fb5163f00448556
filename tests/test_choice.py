"""Answer choice: the pure parts (split, vote, interval) and sampled generation on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from halluscan.analyses.choice import majority, paired_interval, split_questions
from halluscan.errors import HalluscanError


def test_split_is_disjoint_deterministic_and_checked():
    qids = [f"q{i}" for i in range(20) for _ in range(2)]
    test, train = split_questions(qids, 5, seed=1)
    assert len(test) == 5 and len(train) == 15 and not test & train
    assert split_questions(qids, 5, seed=1) == (test, train)
    with pytest.raises(HalluscanError, match="between 1 and 19"):
        split_questions(qids, 20, seed=0)


def test_majority_vote_normalises_and_takes_the_first_of_the_top_answer():
    # Lyon x3 (articles, case folded)
    assert majority(["Paris", "Lyon", "paris.", "The Lyon", "Lyon"]) == 1
    assert majority(["A", "B"]) == 0


def test_paired_interval_brackets_the_mean_difference():
    rng = np.random.default_rng(0)
    a, b = rng.random(400) < 0.6, rng.random(400) < 0.4
    lo, hi = paired_interval(a, b, seed=0)
    assert lo < a.mean() - b.mean() < hi and 0 < lo
    assert paired_interval(a, a, seed=0) == (0.0, 0.0)


def test_sampling_is_seeded_and_zero_temperature_is_greedy():
    from halluscan.engine.decode import pick as _pick

    logits = torch.randn(4, 50)
    assert torch.equal(_pick(logits, 0.0, None), logits.argmax(-1))
    a = _pick(logits, 1.0, torch.Generator().manual_seed(3))
    b = _pick(logits, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    draws = torch.stack([_pick(logits, 1.0, torch.Generator().manual_seed(s)) for s in range(200)])
    assert len(set(draws[:, 0].tolist())) > 5  # it does sample
    cold = torch.stack([_pick(logits, 1e-4, torch.Generator().manual_seed(s)) for s in range(20)])
    assert torch.equal(cold, logits.argmax(-1).expand(20, -1))
