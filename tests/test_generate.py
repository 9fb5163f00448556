import pytest

from halluscan.engine.decode import Row, StopRule, find_stop, token_starts
from halluscan.engine.generate import finish_row


@pytest.mark.parametrize(
    "text,mode,cut",
    [
        ("Paris is the capital. It is", "sentence", 21),
        ("Paris is the capital.", "sentence", None),  # not yet: the next token may continue it
        ("It uses the U.S. dollar. Yes", "sentence", 24),
        ("It is St. John's. Next", "sentence", 17),
        ("Paris\nmore", "sentence", 5),
        ("Paris. More\nx", "line", 11),
        ("\nParis. More", "sentence", 7),
        ("Paris. More", "none", None),
    ],
)
def test_find_stop(text, mode, cut):
    assert find_stop(text, mode) == cut


def fake_lm(eos=0):
    """A character-level 'tokenizer' (token id = code point) and the eos id.

    All StopRule and finish_row use.
    """
    from types import SimpleNamespace

    tok = SimpleNamespace(decode=lambda ids, **_: "".join(map(chr, ids)), eos_token_id=eos)
    return SimpleNamespace(tokenizer=tok, eos_ids=lambda: [eos])


@pytest.mark.parametrize(
    "stream,mode,response,stopped_by",
    [
        ("Paris. It is", "sentence", "Paris.", "sentence"),
        ("Paris.\nMore", "sentence", "Paris.", "line"),  # the sentence ends where the line does
        ("Paris\nMore", "sentence", "Paris", "line"),
        ("Paris. More\nx", "line", "Paris. More", "line"),
        ("Paris\0", "sentence", "Paris", "eos"),  # chr(0) is the eos token
        ("Paris is big", "sentence", "Paris is big", "length"),  # runs out of tokens
        ("Paris. More", "none", "Paris. More", "length"),
    ],
)
def test_stopped_by(stream, mode, response, stopped_by):
    lm, row = fake_lm(), Row()
    rule = StopRule(lm, mode)
    for ch in stream:
        if row.done:
            break
        rule.advance([row], [ord(ch)])
    gen = finish_row(lm, "q", [1, 2], row)
    assert (gen.response, gen.stopped_by) == (response, stopped_by)
    # the last token the rule took belongs to the answer exactly when the answer keeps it
    assert row.in_answer == (len(gen.response_ids) == len(row.ids))
    # offsets kept while decoding
    assert (row.starts, row.text) == token_starts(lm.tokenizer, row.ids)
