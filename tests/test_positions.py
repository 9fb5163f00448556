import pytest

from halluscan.errors import HalluscanError
from halluscan.positions import VALID, check_position_names, resolve, token_span
from halluscan.records import Span


def test_fifteen_named_positions():
    assert len(VALID) == 15 and VALID[0] == "last_q" and VALID[-1] == "-1"


def test_resolve_golden_values():
    # prompt of 20 tokens, response of 6, exact answer at response tokens 2..3
    got = {n: resolve(n, 20, 6, (2, 3)) for n in VALID}
    assert got == {
        "last_q": 19,
        "first_answer": 20,
        "second_answer": 21,
        "exact_answer_before_first": 21,
        "exact_answer_first": 22,
        "exact_answer_last": 23,
        "exact_answer_after_last": 24,
        "-8": 18,
        "-7": 19,
        "-6": 20,
        "-5": 21,
        "-4": 22,
        "-3": 23,
        "-2": 24,
        "-1": 25,
    }


def test_exact_positions_missing_without_a_span_and_at_the_end():
    assert resolve("exact_answer_first", 10, 3, None) is None
    assert resolve("exact_answer_after_last", 10, 3, (1, 2)) is None
    assert resolve("exact_answer_before_first", 10, 3, (0, 0)) == 9  # the last prompt token


def test_token_span_on_a_known_string():
    # "The capital is Paris." tokens: "The", " capital", " is", " Paris", "."
    starts = [0, 3, 11, 14, 20]
    assert token_span(Span(15, 20), starts, 21) == (3, 3)
    assert token_span(Span(4, 17), starts, 21) == (1, 3)


def test_unknown_position_lists_valid_ones():
    with pytest.raises(
        HalluscanError, match=r"unknown position 'exact_last'; valid positions: last_q, .*-1"
    ):
        check_position_names(["last_q", "exact_last"])
