"""Grading and exact-answer location, one grader per kind of dataset.

``alias`` (world-facts, movies, user files): a gold alias in the response (:mod:`.core`);
``choice`` (winobias, winogrande): which of two candidates the answer names; ``label`` (mnli):
which of the three labels it says; ``number`` (math): the number it gives, within a tolerance,
or a refusal for an unanswerable question (:mod:`.kinds`). Every locator is class-blind.
"""

from __future__ import annotations

from halluscan.grade.core import Grader, Matcher, spans_overlap
from halluscan.grade.kinds import ChoiceGrader, LabelGrader, NumberGrader, grader_for

__all__ = [
    "ChoiceGrader",
    "Grader",
    "LabelGrader",
    "Matcher",
    "NumberGrader",
    "grader_for",
    "spans_overlap",
]
