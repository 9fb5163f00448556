"""Issue 14, part 1.

The log-probability baselines (from the generation pass) and the probe's gains over them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from halluscan.analyses.baselines import logprob_scores
from halluscan.records import Example, GenerateOptions, Span
from tests.conftest import tiny_folder


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from halluscan.models import load_model

    return load_model(str(tiny_folder(tmp_path_factory.mktemp("tiny"))))


def test_token_logprobs_and_entropies_match_the_logits_of_a_plain_forward(lm):
    from halluscan.engine.decode import Row, decode

    prompts = [
        lm.tokenizer.encode(t, add_special_tokens=False)
        for t in ("What is the capital of Peru", "It is a")
    ]
    rows = [Row() for _ in prompts]
    for _ in decode(lm, prompts, GenerateOptions(max_new_tokens=6, stop="none"), rows):
        pass
    for p, r in zip(prompts, rows, strict=True):
        assert len(r.logprobs) == len(r.entropies) == len(r.ids) > 0
        with torch.inference_mode():
            logits = lm.model(torch.tensor([p + r.ids])).logits[0, len(p) - 1 : -1].float()
        logp = torch.log_softmax(logits, -1)
        want_lp = logp[torch.arange(len(r.ids)), torch.tensor(r.ids)]
        want_ent = -(logp.exp() * logp).sum(-1)
        torch.testing.assert_close(
            torch.tensor(r.logprobs, dtype=torch.float64), want_lp.double(), atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            torch.tensor(r.entropies, dtype=torch.float64), want_ent.double(), atol=1e-4, rtol=1e-4
        )
        assert all(lp <= 1e-6 for lp in r.logprobs)


def example(
    qid: str, lps: tuple[float, ...], ents: tuple[float, ...], exact: Span | None, correct: bool
) -> Example:
    response = "Lima is it ."
    return Example(
        qid=qid,
        relation="capital",
        question="Q?",
        gold="Lima",
        response=response,
        correct=correct,
        exact_text=None,
        exact_span=exact,
        alias_span=None,
        locator="relation",
        stopped_by="sentence",
        n_prompt=3,
        response_ids=(1, 2, 3, 4),
        positions={"exact_answer_last": 3 if exact else None},
        token_logprobs=lps,
        token_entropies=ents,
        token_starts=(0, 5, 8, 11),
    )


def test_the_eight_scores_follow_the_reference_formulas_and_point_to_wrong():
    # "Lima is": tokens 0-1
    e = example("q", (-0.1, -2.0, -0.5, -0.3), (0.2, 1.0, 0.6, 0.1), Span(0, 7), True)
    s = {k: float(v[0]) for k, v in logprob_scores([e]).items()}
    assert s["logprob_mean_response"] == pytest.approx(0.725)  # minus the mean log-prob
    assert s["logprob_min_response"] == pytest.approx(2.0)  # minus the lowest
    assert s["logprob_max_response"] == pytest.approx(0.1)
    assert s["entropy_mean_response"] == pytest.approx(0.475)
    assert s["logprob_mean_exact_answer"] == pytest.approx(1.05)
    assert s["logprob_min_exact_answer"] == pytest.approx(2.0)
    assert s["logprob_max_exact_answer"] == pytest.approx(0.1)
    assert s["entropy_mean_exact_answer"] == pytest.approx(0.6)
    missing = logprob_scores([example("r", (-0.1,), (0.2,), None, True)])
    assert np.isnan(missing["logprob_min_exact_answer"][0]) and not np.isnan(
        missing["logprob_min_response"][0]
    )


def test_p_true_reads_the_true_options_letter_in_both_orders(lm, monkeypatch):
    import math

    from halluscan.engine import ptrue

    a, b = 3, 4  # stand-ins for the tokens "A" and "B"
    monkeypatch.setattr(ptrue, "letters", lambda _lm: (a, b))

    def prefill(self):  # a model that always leans to the letter A
        logits = torch.zeros(self.ids.shape[0], 128)
        logits[:, a] = 4.0
        return logits

    monkeypatch.setattr(ptrue.EagerFeed, "prefill", prefill)
    items = [("What is the capital of Peru", "Lima"), ("What is the capital of France", "Paris")]
    lean = 1 / (1 + math.exp(-4.0))
    np.testing.assert_allclose(ptrue.p_true(lm, items, "true_first"), [lean, lean])  # (A) is True
    # (A) is False
    np.testing.assert_allclose(ptrue.p_true(lm, items, "false_first"), [1 - lean, 1 - lean])
    assert ptrue.ORDERS["true_first"][0] == "True" and ptrue.ORDERS["false_first"][0] == "False"
    system = ptrue.INSTRUCTION.format(a="False", b="True")
    assert system.index("(A) False") < system.index("(B) True")


def test_sampling_consistency_is_the_share_of_samples_that_disagree_with_greedy():
    from halluscan.analyses.baselines import consistency_scores

    e = example("q", (-0.1,), (0.2,), Span(0, 4), True)
    e = Example(**{**e.__dict__, "exact_text": "Lima"})
    # normalised: 2 of 4 agree
    samples = {("q", 0): "lima", ("q", 1): "Paris", ("q", 2): None, ("q", 3): "LIMA!"}
    assert consistency_scores([e], samples, 4)[0] == pytest.approx(0.5)
    assert consistency_scores([e], {}, 3)[0] == 1.0  # no sample located an answer: none agrees
