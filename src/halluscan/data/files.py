"""Read a user's question set from CSV or JSONL.

Columns: ``question``, ``answer``, optional ``aliases`` and ``wrong_answer``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.records import Dataset, JsonObject, Question

REQUIRED = ("question", "answer")
log = logging.getLogger(__name__)


def read_table(path: str | Path, required: tuple[str, ...] | None = None) -> list[JsonObject]:
    """Rows of a .csv or .jsonl/.json-lines file as dicts; clear errors for bad files.

    Column names are lower-cased; ``required`` columns (default: question, answer) must exist.
    """
    p = Path(path)
    if not p.is_file():
        raise HalluscanError(
            f"{p}: dataset file not found; give a CSV or JSONL path or 'world-facts'"
        )
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise HalluscanError(f"{p}: unknown dataset format {suffix!r}; use .csv or .jsonl")
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, not read into the first
        # column name
        # newline="": the csv module reads \r\n itself
        with open(p, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise HalluscanError(
            f"{p} is not UTF-8 text: byte {e.object[e.start]:#04x} at offset {e.start} cannot be "
            "decoded; save the file as UTF-8"
        ) from e
    except OSError as e:
        raise HalluscanError(
            f"{p}: could not read it: {e.strerror or e}; check the file and its permissions"
        ) from e
    rows, header = _read_csv(p, text) if suffix == ".csv" else _read_jsonl(p, text)
    if not rows:
        raise HalluscanError(
            f"{p}: the dataset is empty; it needs at least one row with 'question' and 'answer'"
        )
    # Column names are matched without case ("Question,Answer" as in the LLMsKnow files).
    rows = [{str(k).strip().lower(): v for k, v in r.items()} for r in rows]
    header = [str(h).strip().lower() for h in header]
    for col in REQUIRED if required is None else required:
        if col not in header:
            sep = next((c for c in ";\t|" if len(header) == 1 and c in header[0]), None)
            fix = (
                f"the header is one column holding {sep!r}: this file looks {sep!r}-separated; "
                "save it comma-separated"
                if sep
                else "add it"
            )
            raise HalluscanError(
                f"{p}: missing column {col!r} (found: {', '.join(map(str, header)) or 'none'}); "
                + fix
            )
    return rows


def _read_jsonl(p: Path, text: str) -> tuple[list[JsonObject], list[str]]:
    """Rows (one JSON object a line) and the first row's keys; a bad line is named."""
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise HalluscanError(f"{p}: line {i} is not valid JSON ({e.msg}); fix that line") from e
        if not isinstance(row, dict):
            raise HalluscanError(
                f"{p}: line {i} is not a JSON object; each line needs {{'question': ..., "
                f"'answer': ...}}"
            )
        rows.append(row)
    return rows, list(rows[0]) if rows else []


def _read_csv(p: Path, text: str) -> tuple[list[JsonObject], list[str]]:
    """Rows and header of CSV ``text``; a quoting error names the line where its row starts."""
    csv.field_size_limit(2**31 - 1)  # long fields (whole documents) are read, not refused
    # newline="": no translation
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows = []
    line = 1  # where the row being read starts
    try:
        header = list(reader.fieldnames or [])
        line = reader.line_num + 1
        for r in reader:
            rows.append(dict(r))
            line = reader.line_num + 1
    except csv.Error as e:
        why = "a quoted field is never closed" if "end of data" in str(e) else str(e)
        raise HalluscanError(
            f"{p}: line {line} is not valid CSV ({why}); fix the quoting on that line"
        ) from e
    return rows, header


def _aliases(raw: Any, answer: str) -> tuple[str, ...]:
    if raw is None or raw == "":
        items: list[str] = []
    elif isinstance(raw, list):
        items = [str(x) for x in raw]
    else:
        text = str(raw).strip()
        if text.startswith("["):
            try:
                items = [str(x) for x in json.loads(text)]
            except json.JSONDecodeError:
                items = text.strip("[]").split("|")
        else:
            items = text.split("|")
    out = [answer] + [a.strip() for a in items if a.strip()]
    return tuple(dict.fromkeys(out))


def _wrong_answer(spec: str, i: int, row: JsonObject, question: str, answer: str) -> str:
    """The row's optional ``wrong_answer`` (a false answer for the given-answer bank), checked."""
    from halluscan.data.pairs import is_alias

    wrong = str(row.get("wrong_answer") or "").strip()
    if wrong and is_alias(
        wrong, Question("", question, answer, _aliases(row.get("aliases"), answer))
    ):
        raise HalluscanError(
            f"{spec}: row {i}: wrong_answer {wrong!r} names the answer {answer!r}; give a false "
            "answer, or leave it empty"
        )
    return wrong


def load_dataset(spec: str, split: str = "test", data_dir: str = "") -> Dataset:
    """``world-facts``, an LLMsKnow dataset by name (files in ``data_dir``), or a user file.

    A user file's rows must each have a non-empty question and answer.
    """
    if spec == "world-facts":
        from halluscan.data.worldfacts import build_world_facts

        return build_world_facts()
    from halluscan.data.llmsknow import FILES, load_llmsknow

    if spec in FILES:
        return load_llmsknow(spec, split, data_dir)
    qs = _questions(spec, read_table(spec))
    digest = hashlib.sha256(Path(spec).read_bytes()).hexdigest()
    # The answers of a relation are its answer-type vocabulary for class-blind location.
    vocab: dict[str, list[str]] = {}
    for item in qs:
        vocab.setdefault(item.relation, []).extend(item.aliases)
    relation_vocab = {r: tuple(dict.fromkeys(v)) for r, v in vocab.items()}
    return Dataset(
        name=Path(spec).name, questions=tuple(qs), sha256=digest, relation_vocab=relation_vocab
    )


def _questions(spec: str, rows: list[JsonObject]) -> list[Question]:
    """A user file's questions: empty fields refused, repeated rows dropped, ids unique."""
    qs = []
    rows_of: dict[str, list[int]] = {}  # id -> the rows that carry it
    seen: set[tuple[str, str]] = set()
    dropped = 0
    for i, row in enumerate(rows, start=1):
        q, a = str(row.get("question") or "").strip(), str(row.get("answer") or "").strip()
        if not q or not a:
            field = "question" if not q else "answer"
            raise HalluscanError(
                f"{spec}: row {i} has an empty {field!r}; fill it or remove the row"
            )
        if (q, a) in seen:  # the same question and answer again: one question, not two
            dropped += 1
            continue
        seen.add((q, a))
        qid = str(row.get("id") or row.get("qid") or i)
        rows_of.setdefault(qid, []).append(i)
        rel = str(row.get("relation") or "custom")
        qs.append(
            Question(
                qid, q, a, _aliases(row.get("aliases"), a), rel, _wrong_answer(spec, i, row, q, a)
            )
        )
    dups = {q: r for q, r in rows_of.items() if len(r) > 1}
    if dups:
        shown = "; ".join(
            f"{q!r} in rows {', '.join(map(str, r))}" for q, r in list(dups.items())[:5]
        )
        more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
        raise HalluscanError(
            f"{spec}: duplicate question id(s): {shown}{more}; give every row its own id (rows "
            "without an id get their row number)"
        )
    if dropped:
        log.warning(
            "%s: dropped %d row(s) that repeat an earlier row's question and answer", spec, dropped
        )
    return qs
