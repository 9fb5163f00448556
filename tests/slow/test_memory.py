"""Scoring memory is bounded in the answer's length, measured as ``benchmarks/memory.py`` does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_a_20000_character_answer_is_scored_within_1_5_gb_over_the_model_load():
    sys.path.insert(0, str(BENCH))
    try:
        from memory import SCORE_CHILD
        from rss import run_child
    finally:
        sys.path.remove(str(BENCH))
    r = run_child(SCORE_CHILD.format(chars=20_000), timeout=900)
    assert r["exit_code"] == 0 and r["chars"] == 20_000 and r["tokens"] > 4000
    assert r["high_water_mark_reset"] or r["growth_mb"] > 0  # a measurement, not a default
    assert r["growth_mb"] < 1500, r
