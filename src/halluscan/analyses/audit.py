"""How often the grader is wrong, from a sample of its grades checked by hand.

The sample is stratified by grade (half graded correct, half graded wrong, or all of a class
when it is smaller), so each grade's error rate has its own Wilson interval; the study's error
rate weights them by how often the grader gave each grade, and so do the ends of its interval
(conservative: each grade's Wilson bounds, weighted; it stays inside [0, 1] and does not
collapse to a point when no error was seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from halluscan.analyses.summary import Interval

Z95 = 1.959963984540054


@dataclass(frozen=True)
class GradeErrors:
    """One grade's hand check: how many were checked, and how many the grader got wrong."""

    checked: int
    errors: int
    rate: float | None
    ci95: Interval | None


@dataclass(frozen=True)
class GradingAudit:
    """The grader against hand labels: per grade, and for the study as a whole."""

    file: str
    checked: int  # answers labelled correct or wrong by hand
    skipped: int  # rows left blank or labelled ambiguous
    by_grade: dict[str, GradeErrors]  # "correct" / "wrong": the grader's grade
    error_rate: float | None  # the study's, weighting each grade by how often it was given
    ci95: Interval | None


def wilson(errors: int, n: int) -> Interval | None:
    """The Wilson 95 % interval of a proportion ``errors / n`` (None for n = 0)."""
    if n == 0:
        return None
    p = errors / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def grading_audit(
    file: str,
    graded: Sequence[bool],
    labels: Sequence[bool | None],
    given: dict[str, int],
) -> GradingAudit:
    """Compare the grader's grades (``graded``) with hand ``labels`` (None: not labelled).

    ``given``: how many answers of the study the grader graded correct and wrong.
    """
    by_grade = {}
    for name, grade in (("correct", True), ("wrong", False)):
        both = zip(graded, labels, strict=True)
        pairs = [(g, lab) for g, lab in both if g is grade and lab is not None]
        errors = sum(g != lab for g, lab in pairs)
        rate = errors / len(pairs) if pairs else None
        by_grade[name] = GradeErrors(len(pairs), errors, rate, wilson(errors, len(pairs)))
    total = sum(given.values())
    rate, lo, hi, known = 0.0, 0.0, 0.0, True
    for name, e in by_grade.items():
        w = given.get(name, 0) / total if total else 0.0
        if w == 0:
            continue
        if e.rate is None or e.ci95 is None:
            known = False
            continue
        rate, lo, hi = rate + w * e.rate, lo + w * e.ci95[0], hi + w * e.ci95[1]
    checked = sum(e.checked for e in by_grade.values())
    ci = (lo, hi)
    return GradingAudit(
        file,
        checked,
        len(labels) - checked,
        by_grade,
        rate if known else None,
        ci if known else None,
    )
