"""Issue 14, part 3.

Types of error from sampled answers (thresholds after LLMsKnow's get_types_of_mistakes).
"""

from __future__ import annotations

from halluscan.analyses.errortypes import NO_ANSWER, Spread, spread, types_of


def kinds(correct: list[bool], answers: list[str | None]) -> set[str]:
    return {name for name, on in types_of(spread(correct, answers), len(correct)).items() if on}


def test_wrong_answers_cluster_when_one_names_the_other():
    s = spread([False] * 4 + [True], ["Lima", "lima city", "Paris", None, "Lima"])
    assert s == Spread(1, {"lima": 2, "paris": 1, NO_ANSWER: 1})


def test_each_type_on_a_written_spread_of_six_samples():
    right, wrong = True, False
    assert kinds([right] * 6, ["Lima"] * 6) == {"consistently_correct"}
    assert "right_is_largest" in kinds([right] * 4 + [wrong] * 2, ["Lima"] * 4 + ["Quito", "Quito"])
    assert kinds([wrong] * 6, ["Quito"] * 6) == {"consistently_wrong"}
    assert "wrong_is_largest" in kinds([right] + [wrong] * 5, ["Lima"] + ["Quito"] * 5)
    assert "many_different_answers" in kinds(
        [wrong] * 6, ["Quito", "Bogota", "Caracas", "Quito", "Rome", "Oslo"]
    )
    assert "closely_competing" in kinds([right] * 3 + [wrong] * 3, ["Lima"] * 3 + ["Quito"] * 3)
    # the types overlap, as in the reference: two wrong clusters of six samples are also "many" (a
    # third)
    assert kinds([wrong] * 6, [None] * 4 + ["Quito"] * 2) == {"no_answer", "many_different_answers"}
    # the right one is larger
    assert "no_answer" not in kinds([right] * 4 + [wrong] * 2, ["Lima"] * 4 + [None] * 2)
