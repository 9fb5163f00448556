"""The stored example record: its JSON form is what the store keeps, and it reads back unchanged."""

from halluscan.records import Example, Generation, Grade, Question, Span


def test_example_record_round_trips():
    q = Question("q1", "Capital of France?", "Paris", ("Paris",), "capital")
    g = Generation("q1", (1, 2, 3), (7, 8), "Paris.", (0, 5), "sentence", (-0.1, -2.5), (0.4, 1.5))
    gr = Grade("q1", True, Span(0, 5), Span(0, 5), "Paris", "relation")
    ex = Example.of(q, g, gr, {"last_q": 2, "exact_answer_last": None})
    rec = ex.to_json()
    assert rec == {
        "qid": "q1",
        "relation": "capital",
        "question": "Capital of France?",
        "gold": "Paris",
        "response": "Paris.",
        "correct": True,
        "exact_text": "Paris",
        "exact_span": [0, 5],
        "alias_span": [0, 5],
        "locator": "relation",
        "stopped_by": "sentence",
        "n_prompt": 3,
        "response_ids": [7, 8],
        "positions": {"last_q": 2, "exact_answer_last": None},
        "token_logprobs": [-0.1, -2.5],
        "token_entropies": [0.4, 1.5],
        "token_starts": [0, 5],
        "ambiguous": None,
        "rule_agrees": None,
    }
    assert list(rec) == list(rec.keys()) and Example.from_json(rec) == ex
    # a record from before the baselines
    old = {k: v for k, v in rec.items() if not k.startswith("token_")}
    assert (
        Example.from_json(old).token_logprobs == () and Example.from_json(old).response == "Paris."
    )
