import pytest

from halluscan.generate import find_stop


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
    """A character-level 'tokenizer' (token id = code point) and the eos id; all _advance and finish_row use."""
    from types import SimpleNamespace

    tok = SimpleNamespace(decode=lambda ids, **_: "".join(map(chr, ids)), eos_token_id=eos)
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=eos))
    return SimpleNamespace(tokenizer=tok, model=model)


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
    import torch

    from halluscan.generate import GenerateOptions, _advance, _Row, finish_row

    lm, row = fake_lm(), _Row(ids=[])
    opts = GenerateOptions(stop=mode)
    for ch in stream:
        if row.done:
            break
        _advance([row], torch.tensor([ord(ch)]), lm, opts)
    gen = finish_row(lm, "q", [1, 2], row)
    assert (gen.response, gen.stopped_by) == (response, stopped_by)
