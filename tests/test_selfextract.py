"""Issue 23: the model extracts its own exact answer; a locator that never sees the gold."""

from __future__ import annotations

import pytest

from halluscan.engine.selfextract import span_in
from halluscan.records import Span
from tests.conftest import peru_france, tiny_flags


@pytest.mark.parametrize(
    ("response", "extracted", "want"),
    [
        ("The capital of Peru is Lima.", "Lima", Span(23, 27)),
        ("The capital of Peru is Lima.", " lima.", Span(23, 27)),  # case and punctuation
        ("It is in São Tomé.", "Sao Tome", Span(9, 17)),  # accents folded, span in the original
        ("The capital is Lima.", '"Lima"', Span(15, 19)),
        ("The capital of Peru is Lima.", "NONE", None),
        ("The capital of Peru is Lima.", "Cusco", None),  # not in the response: invented
        ("The capital of Peru is Lima.", "The capital of Peru is Lima", None),  # the whole sentence
        ("Limassol is in Cyprus.", "Lima", None),  # whole words only
    ],
)
def test_an_extraction_counts_only_as_a_short_span_of_the_response(response, extracted, want):
    assert span_in(response, extracted) == want


def study(tmp_path, *extra):
    from halluscan.cli import build_parser
    from halluscan.study.config import StudyConfig
    from halluscan.study.context import StudyContext, StudyPlan
    from halluscan.study.flags import config_from_args

    tiny = peru_france(tmp_path, 24)
    settings = "--stop none --max-new-tokens 3 --batch-size 8 --quiet --no-given-bank".split()
    args = build_parser().parse_args(["run", "--folds", "3", *tiny_flags(tiny), *settings, *extra])
    cfg: StudyConfig = config_from_args(args)
    return StudyContext.build(StudyPlan.of(cfg))


def test_auto_keeps_the_rule_when_the_model_cannot_extract(tmp_path):
    ctx = study(tmp_path)  # a tiny random model copies nothing useful
    assert ctx.pilot is not None and ctx.pilot.pilot and not ctx.pilot.used
    assert ctx.pilot.n == 48 and ctx.config.locator == "class-blind"
    assert not ctx.collect_job().self_extract


def test_auto_uses_the_model_when_it_extracts_nine_answers_in_ten(tmp_path, monkeypatch):
    from halluscan.study import locating

    # a model that copies the last word of every answer: always a span of the response
    def copies(lm, items, batch_size=64, progress=None):
        out = []
        for _, response in items:
            word = response.split()[-1] if response.split() else "NONE"
            out.append((word, span_in(response, word)))
        return out

    monkeypatch.setattr(locating, "self_extract", copies)
    ctx = study(tmp_path)
    assert ctx.pilot.used and ctx.config.locator == "self" and ctx.collect_job().self_extract


def test_self_locates_every_answer_and_records_agreement(tmp_path):
    from halluscan.study.pipeline import run_study

    ctx = study(tmp_path, "--locator", "self", "--name", "s")
    assert ctx.pilot is None and ctx.collect_job().self_extract
    m = run_study(ctx.config)
    x = m.self_extraction
    assert x is not None and not x.pilot and x.used and x.n == 48
    from halluscan.study.runs import RunDir, study_examples

    examples = study_examples(RunDir.named("s", ctx.config.runs_dir).open_store())
    assert {e.locator for e in examples} <= {"self", "none"}
    # an answer the model could not extract from is read at its last answer token, flagged
    assert all(e.exact_fallback for e in examples if e.locator == "none" and e.response.strip())
