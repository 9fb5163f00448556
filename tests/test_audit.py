"""Issue 23: ``halluscan audit``, a sample of grades checked by hand and read back."""

from __future__ import annotations

import csv
import json

import pytest

from halluscan.analyses.audit import grading_audit, wilson
from halluscan.cli import main
from tests.conftest import peru_france, tiny_flags


def test_wilson_intervals_stay_inside_0_1_and_do_not_collapse_without_errors():
    lo, hi = wilson(0, 25)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.1 < hi < 0.2  # none seen is not "none"
    lo, hi = wilson(25, 25)
    assert 0.8 < lo < 0.9 and hi == pytest.approx(1.0)
    assert wilson(0, 0) is None


def test_the_study_rate_weights_each_grade_by_how_often_it_was_given():
    graded = [True] * 10 + [False] * 10
    labels = [True] * 9 + [False] + [False] * 8 + [True, None]
    a = grading_audit("f.csv", graded, labels, {"correct": 300, "wrong": 100})
    assert a.checked == 19 and a.skipped == 1
    assert a.by_grade["correct"].errors == 1 and a.by_grade["correct"].rate == pytest.approx(0.1)
    assert a.by_grade["wrong"].errors == 1 and a.by_grade["wrong"].checked == 9
    assert a.error_rate == pytest.approx(0.75 * 0.1 + 0.25 / 9)
    assert 0 <= a.ci95[0] < a.error_rate < a.ci95[1] <= 1


def test_audit_round_trip_on_a_run(tmp_path, capsys):
    tiny = peru_france(tmp_path, 24)
    settings = "--stop none --max-new-tokens 3 --batch-size 8 --quiet --no-given-bank".split()
    assert main(["run", "--name", "a", "--folds", "3", *tiny_flags(tiny), *settings]) == 0
    run = tiny / "runs" / "a"
    assert main(["audit", str(run), "--n", "10"]) == 0
    sample = run / "audit.csv"
    assert f"halluscan audit {run} --labels {sample}" in capsys.readouterr().out
    rows = list(csv.DictReader(sample.open()))
    assert len(rows) == 10 and {r["graded"] for r in rows} == {"correct", "wrong"}
    assert all(r["label"] == "" for r in rows)
    # a second sample would overwrite the labels: refused
    assert main(["audit", str(run), "--n", "10"]) == 2
    assert "exists (it may hold your labels)" in capsys.readouterr().err
    # the person agrees with every grade but one, and leaves one blank
    for i, r in enumerate(rows):
        r["label"] = r["graded"] if i > 1 else ("" if i == 0 else flip(r["graded"]))
    with sample.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["audit", str(run), "--labels", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "grading error rate of the study" in out and "1 rows not labelled" in out
    saved = json.loads((run / "metrics.json").read_text())["grading_audit"]
    assert saved["checked"] == 9 and saved["skipped"] == 1
    assert sum(g["errors"] for g in saved["by_grade"].values()) == 1
    page = (run / "report.html").read_text()
    assert "The grades, checked by hand" in page and "9 answers labelled by hand" in page


def test_a_bad_label_or_an_unknown_id_is_a_one_line_error(tmp_path, capsys):
    tiny = peru_france(tmp_path, 24)
    settings = "--stop none --max-new-tokens 3 --batch-size 8 --quiet --no-given-bank".split()
    assert main(["run", "--name", "b", "--folds", "3", *tiny_flags(tiny), *settings]) == 0
    run = tiny / "runs" / "b"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nnope,correct\n")
    assert main(["audit", str(run), "--labels", str(bad)]) == 2
    assert "id 'nope' is not in" in capsys.readouterr().err
    first = json.loads((run / "store" / "manifest.json").read_text())["chunks"][0]["name"]
    qid = json.loads((run / "store" / "examples" / f"{first}.jsonl").read_text().splitlines()[0])
    bad.write_text(f"id,label\n{qid['qid']},maybe\n")
    assert main(["audit", str(run), "--labels", str(bad)]) == 2
    assert "label 'maybe'; give correct, wrong or ambiguous" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "none")]) == 2
    assert "no finished study there" in capsys.readouterr().err


def flip(grade: str) -> str:
    return "wrong" if grade == "correct" else "correct"
