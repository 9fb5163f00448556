"""Which questions of a dataset a study uses."""

from __future__ import annotations

import random

from halluscan.errors import HalluscanError
from halluscan.records import Dataset, Question


def select_questions(ds: Dataset, n: int, seed: int) -> list[Question]:
    """All questions, or a seeded random sample of ``n`` of them (kept in dataset order)."""
    qs = list(ds.questions)
    if not qs:
        raise HalluscanError(
            f"dataset {ds.name!r} has no questions; give a file with at least one row"
        )
    if 0 < n < len(qs):
        keep = set(random.Random(seed).sample(range(len(qs)), n))
        qs = [q for i, q in enumerate(qs) if i in keep]
    return qs
