"""The datasets of "LLMs Know More Than They Show" (LLMsKnow, MIT licence), from a user's folder.

``halluscan data fetch llmsknow`` downloads the published CSV files into the cache folder; a
study reads them from ``--data-dir``, ``$HALLUSCAN_DATA`` or that cache. Each dataset has a
default split (test or validation) and ``train`` (its other file), and a grader kind:

| name | files (default, train) | grader |
| --- | --- | --- |
| movies | movie_qa_test, movie_qa_train | alias (with titles and initials folded) |
| winobias | winobias_test, winobias_dev | choice of two candidates |
| winogrande | winogrande_test, winogrande_train | choice of two candidates |
| mnli | mnli_validation, mnli_train | one of three labels |
| math | AnswerableMath_test, AnswerableMath | a number, or a refusal when unanswerable |
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from pathlib import Path

from halluscan.errors import HalluscanError
from halluscan.records import Dataset, JsonObject, Question

log = logging.getLogger(__name__)

FILES = {
    "movies": ("movie_qa_test.csv", "movie_qa_train.csv"),
    "winobias": ("winobias_test.csv", "winobias_dev.csv"),
    "winogrande": ("winogrande_test.csv", "winogrande_train.csv"),
    "mnli": ("mnli_validation.csv", "mnli_train.csv"),
    "math": ("AnswerableMath_test.csv", "AnswerableMath.csv"),
}
KIND = {
    "movies": "alias",
    "winobias": "choice",
    "winogrande": "choice",
    "mnli": "label",
    "math": "number",
}
SOURCE = "https://raw.githubusercontent.com/technion-cs-nlp/LLMsKnow/main/data/"
_TITLE = re.compile(r"^(?:Dr|Mr|Mrs|Ms|Prof|Sir|Dame|Lord|Lady)\.?\s+", re.I)


def data_dir(given: str = "") -> Path:
    """Where the LLMsKnow files are: ``given``, else ``$HALLUSCAN_DATA``, else the cache folder."""
    if given:
        return Path(given)
    if os.environ.get("HALLUSCAN_DATA"):
        return Path(os.environ["HALLUSCAN_DATA"])
    cache = Path(os.environ.get("HALLUSCAN_CACHE", Path.home() / ".cache" / "halluscan"))
    return cache / "data" / "llmsknow"


def _rows(path: Path) -> list[JsonObject]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def person_aliases(name: str) -> tuple[str, ...]:
    """A person's name without a leading title ("Dr. John Smith"), initials run together ("JK")."""
    name = " ".join(name.split())
    out = [name]
    bare = _TITLE.sub("", name)
    if bare != name and len(bare.split()) >= 2:
        out.append(bare)
    for n in list(out):
        # J. K. Simmons / J.K. Simmons -> JK. Simmons
        joined = re.sub(r"\b([A-Z])\.\s*(?=[A-Z]\.)", r"\1", n)
        joined = re.sub(r"\b([A-Z]{2,})\.", r"\1", joined)
        if joined != n:
            out.append(joined)
    return tuple(dict.fromkeys(out))


def load_llmsknow(name: str, split: str = "test", folder: str = "") -> Dataset:
    """The LLMsKnow dataset ``name``.

    Split ``test`` or ``validation``: the default file; ``train``: the other.

    """
    if name not in FILES:
        raise HalluscanError(
            f"unknown dataset {name!r}; the built-in ones are world-facts, {', '.join(FILES)}"
        )
    if split not in ("test", "validation", "train"):
        raise HalluscanError(f"--split {split!r}: give test (or validation) or train")
    path = data_dir(folder) / FILES[name][split == "train"]
    if not path.is_file():
        raise HalluscanError(
            f"{path} is missing; run `halluscan data fetch llmsknow` (or give --data-dir DIR with "
            "the LLMsKnow files)"
        )
    rows = _rows(path)
    qs, seen = [], set()
    for i, row in enumerate(rows):
        q = _question(name, i, row)
        # a repeated question would sit on both sides of a fold
        if q is not None and q.question not in seen:
            seen.add(q.question)
            qs.append(q)
    if len(qs) < len(rows):
        log.warning(
            "%s: kept %d of %d rows (empty or repeated questions dropped)",
            path.name,
            len(qs),
            len(rows),
        )
    if not qs:
        raise HalluscanError(f"{path} has no usable rows; is it the LLMsKnow file?")
    vocab: dict[str, tuple[str, ...]] = {q.relation: () for q in qs}
    if name == "movies":
        vocab = {"movie_actor": tuple(dict.fromkeys(a for q in qs for a in q.aliases))}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Dataset(f"{name}:{path.stem}", tuple(qs), digest, relation_vocab=vocab, kind=KIND[name])


def _question(name: str, i: int, row: JsonObject) -> Question | None:
    get = lambda k: str(row.get(k) or "").strip()  # noqa: E731
    qid = f"{name}/{get('id') or i}"
    if name == "movies":
        answer = get("Answer")
        return (
            Question(qid, get("Question"), answer, person_aliases(answer), "movie_actor")
            if answer
            else None
        )
    if name == "winobias":
        question = f"{get('sentence')} {get('q_instruct')}"
        return Question(
            qid, question, get("answer"), (get("answer"),), "coreference", get("incorrect_answer")
        )
    if name == "winogrande":
        return Question(
            qid,
            get("Question"),
            get("Answer"),
            (get("Answer"),),
            "coreference",
            get("Wrong_Answer"),
        )
    if name == "mnli":
        return Question(qid, get("Question"), get("Answer"), (get("Answer"),), "nli")
    answerable = get("answerable").lower() != "false"
    golds = tuple(_number_text(x) for x in re.findall(r"-?\d+(?:\.\d+)?", get("answer")))
    return Question(
        qid, get("question"), golds[0] if golds else "", golds, "math", answerable=answerable
    )


def _number_text(x: str) -> str:
    """A gold number as an answer reads it: "9.0" -> "9", "2.5" stays."""
    v = float(x)
    return str(int(v)) if v.is_integer() else str(v)


def fetch(folder: str = "") -> list[Path]:
    """Download every LLMsKnow file into ``folder`` (default: the cache); the paths written."""
    import urllib.request

    from halluscan import atomic

    out = data_dir(folder)
    written = []
    for test, train in FILES.values():
        for file in (test, train):
            try:
                with urllib.request.urlopen(SOURCE + file, timeout=60) as r:
                    written.append(atomic.write_bytes(out / file, r.read()))
            except OSError as e:
                raise HalluscanError(
                    f"could not download {SOURCE + file}: {e}; check the network, or copy the "
                    f"files into {out}"
                ) from e
    return written
