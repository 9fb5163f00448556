"""``halluscan audit``: check a study's grades by hand.

``write_sample`` writes a seeded sample of graded answers, half of each grade, as a CSV with an
empty ``label`` column; a person fills it with ``correct``, ``wrong`` or ``ambiguous``.
``read_labels`` reads the filled file back, compares it with the study's own grades (from its
store, never from the file's ``graded`` column) and puts the grading error rate, with its 95 %
interval, into ``metrics.json`` and the report.
"""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

from halluscan import atomic
from halluscan.analyses.audit import GradingAudit, grading_audit
from halluscan.errors import HalluscanError
from halluscan.records import Example
from halluscan.study import metrics as metrics_io
from halluscan.study.report import rewrite_report
from halluscan.study.runs import RunDir, study_examples

COLUMNS = (
    "id", "relation", "question", "gold", "response", "exact_answer", "graded", "ambiguous",
    "label", "note",
)  # fmt: skip
LABELS = {
    "correct": True, "right": True, "true": True, "1": True,
    "wrong": False, "incorrect": False, "false": False, "0": False,
    "ambiguous": None, "": None,
}  # fmt: skip


def write_sample(run: RunDir, n: int, out: Path | None = None, seed: int = 0) -> Path:
    """A CSV of ``n`` graded answers to check, half of each grade; refuses to overwrite one."""
    path = out or run.root / "audit.csv"
    if path.exists():
        raise HalluscanError(
            f"{path} exists (it may hold your labels); delete it or give --out another file"
        )
    examples = study_examples(run.open_store())
    rng = random.Random(seed)
    picked: list[Example] = []
    for grade in (True, False):
        pool = [e for e in examples if e.correct is grade]
        picked += rng.sample(pool, min(len(pool), (n + (not grade)) // 2))
    rng.shuffle(picked)
    rows = [
        {
            "id": e.qid, "relation": e.relation, "question": e.question, "gold": e.gold,
            "response": e.response, "exact_answer": e.exact_text or "",
            "graded": "correct" if e.correct else "wrong", "ambiguous": e.ambiguous or "",
            "label": "", "note": "",
        }
        for e in picked
    ]  # fmt: skip
    lines = [",".join(COLUMNS)] + [_csv_row([r[c] for c in COLUMNS]) for r in rows]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def _csv_row(values: list[str]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def read_labels(run: RunDir, file: Path) -> GradingAudit:
    """Compare the hand labels in ``file`` with the study's grades; record and report them."""
    if not file.is_file():
        raise HalluscanError(f"{file}: no such file; write one with `halluscan audit RUN --n 50`")
    examples = {e.qid: e for e in study_examples(run.open_store())}
    graded, labels = [], []
    with open(file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "label"} <= set(reader.fieldnames):
            raise HalluscanError(f"{file}: needs the columns id and label (as audit wrote them)")
        for i, row in enumerate(reader, start=2):
            e = examples.get(row["id"])
            if e is None:
                raise HalluscanError(f"{file}: line {i}: id {row['id']!r} is not in {run.root}")
            raw = (row["label"] or "").strip().lower()
            if raw not in LABELS:
                raise HalluscanError(
                    f"{file}: line {i}: label {row['label']!r}; give correct, wrong or ambiguous"
                )
            graded.append(e.correct)
            labels.append(LABELS[raw])
    m = metrics_io.read(run)
    given = {"correct": sum(e.correct for e in examples.values())}
    given["wrong"] = len(examples) - given["correct"]
    found = grading_audit(str(file), graded, labels, given)
    if found.checked == 0:
        raise HalluscanError(
            f"{file}: no row is labelled correct or wrong yet; fill in the label column"
        )
    m = replace(m, grading_audit=found)
    metrics_io.write(run, m)
    rewrite_report(run, m, list(examples.values()))
    return found
