"""Text normalisation and capitalised names, shared by the dataset builder and the grader."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

_ARTICLES = {"the", "a", "an"}
_NON_WORD = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """Strip accents (NFKD) and map a few letters NFKD leaves alone (ø, ł, ß, æ)."""
    table = str.maketrans(
        {
            "ø": "o",
            "Ø": "O",
            "ł": "l",
            "Ł": "L",
            "ß": "ss",
            "æ": "ae",
            "Æ": "AE",
            "đ": "d",
            "Đ": "D",
            "ı": "i",
        }
    )
    text = text.translate(table)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Fold case, accents, punctuation and articles to single-space-separated words."""
    words = _NON_WORD.sub(" ", fold(text).lower()).split()
    return " ".join(w for w in words if w not in _ARTICLES)


def normalized_words_with_spans(text: str) -> list[tuple[str, int, int]]:
    """Words of ``normalize(text)`` with their character span in the *original* text.

    Folding keeps a 1:1 character map for the scripts we grade (accents and the few
    special letters map to one or two ASCII letters that stay within the source char),
    so spans are computed per source character.
    """
    out: list[tuple[str, int, int]] = []
    cur: list[str] = []
    start = -1
    for i, ch in enumerate(text):
        f = _NON_WORD.sub("", fold(ch).lower())
        if f:
            if not cur:
                start = i
            cur.append(f)
        elif cur:
            out.append(("".join(cur), start, i))
            cur = []
    if cur:
        out.append(("".join(cur), start, len(text)))
    return [w for w in out if w[0] not in _ARTICLES]


# A capitalised word, a title ("Dr.") or an initial ("B.", "J.K."), so "Michael B. Jackson" stays
# whole.
_CAP_WORD = r"(?:(?:Dr|Mr|Mrs|Ms|St|Mt|Jr|Sr)\.|(?:[A-Z]\.)+(?=\s*[A-Z])|[A-Z][\w'’\-]*)"
CAP_PHRASE = re.compile(
    rf"{_CAP_WORD}(?:\s*(?<=[\s.])(?:(?:of|de|del|la|le|du|da|and|the)\s+){{0,2}}{_CAP_WORD})*"
)
# Capitalised words that start a sentence rather than a name ("In India", "The capital").
_STARTERS = set(
    "the it its this that these those there they he she i a an in on at as to by for from of "
    "with yes no not located answer however sorry so and but or if".split()
)


def capitalised_names(text: str) -> list[tuple[int, int]]:
    """Character spans of the capitalised names in ``text``, longest first at each place.

    Words that merely start a sentence are left off the front ("In India" gives "India").
    """
    out = []
    for m in CAP_PHRASE.finditer(text):
        start, end = m.start(), m.end()
        for w in re.finditer(r"\S+", m.group(0)):
            if w.group(0).lower().strip(".,") not in _STARTERS:
                break
            start = m.start() + w.end()
        while start < end and text[start].isspace():
            start += 1
        # a possessive ends a name: "China's Hubei province" names China, then Hubei
        cuts = [m.span() for m in re.finditer(r"['’]s\b", text[start:end])]
        bounds = [0, *[x for span in cuts for x in span], end - start]
        for a, b in zip(bounds[::2], bounds[1::2], strict=True):
            a, b = start + a, start + b
            while a < b and not text[a].isalnum():
                a += 1
            if a < b:
                out.append((a, b))
    return out


def inside_longer_name(
    text: str,
    start: int,
    end: int,
    names: list[tuple[int, int]],
    allowed: set[str],
    known: set[str] = frozenset(),  # type: ignore[assignment]
) -> bool:
    """Whether ``text[start:end]`` is part of a longer capitalised name, so does not name itself.

    It is, when the longer name goes on after it ("China" in "South China Sea", "Guatemala" in
    "Guatemala City"), or is a ``known`` name of something else ("Africa" in "South Africa").
    A qualifier in front of it does not make another name ("Europe" in "Central Europe").
    ``allowed`` holds the normalised names that count as the match itself ("The Netherlands").
    """
    own = normalize(text[start:end])
    for a, b in names:
        if a <= start and end <= b:
            whole = normalize(text[a:b])
            if whole == own or whole in allowed:
                return False
            return not whole.endswith(" " + own) or whole in known
    return False


def short_name(text: str) -> str:
    """A model's or dataset's name as a folder name: its last path part, without an extension."""
    stem = PurePath(display_name(text).rstrip("/\\")).name
    for ext in (".gguf", ".csv", ".jsonl", ".json"):
        stem = stem.removesuffix(ext)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "run"


def display_name(ident: str) -> str:
    """A model's or dataset's name for a title: a local file or folder by its last part.

    ``/models/gemma-3-270m.gguf`` -> ``gemma-3-270m``; ``smollm2 (SmolLM2-135M-Instruct.gguf)``
    -> ``smollm2``; a hub id (``org/name``) stays whole. Provenance keeps the full path.
    """
    ident = re.sub(r" \(.*\)$", "", ident.strip())
    local = ident.startswith(("/", ".", "~")) or "\\" in ident
    if not local and not ident.endswith((".gguf", ".csv", ".jsonl", ".json")):
        return ident
    stem = PurePath(ident.rstrip("/\\")).name
    for ext in (".gguf", ".csv", ".jsonl", ".json"):
        stem = stem.removesuffix(ext)
    return stem or ident
