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
