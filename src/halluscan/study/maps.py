"""The study's per-response maps.

The automatic wrong/correct pair and the config's ``report_pairs``, scored.


The model scores each response here (:class:`~halluscan.scan.Scanner`); the report draws them.
"""

from __future__ import annotations

from halluscan.analyses.summary import pick_pair, same_question
from halluscan.records import Example
from halluscan.report.maps import DrawnPair, draw_pair
from halluscan.scan import Scanner
from halluscan.study.context import StudyContext


def response_maps(ctx: StudyContext, examples: list[Example]) -> list[DrawnPair]:
    """Score each pair with the study's banks, as saved; draw activity surfaces and attention.

    The rule is ``halluscan score``'s: the model's own answers are read by the own-answer bank,
    an answer a pair gives by the given-answer bank.
    """
    scanner = Scanner(ctx.lm, ctx.run.root, generation=ctx.generation, grader=ctx.grader)
    out = []
    same = same_question(examples) if "given" in scanner.by_kind else None
    auto = pick_pair(examples) if same is None else []
    if same is not None:  # one question, its gold answer and the model's own wrong one, given
        e = same
        answers = [f"{e.gold}.", f"{e.exact_text}."]
        scored = [scanner.score(e.question, a, relation=e.relation) for a in answers]
        graded: list[str | None] = ["true (the gold answer)", "false (the model's own answer)"]
        out.append(draw_pair("auto", scored, graded, ctx.run.responses))
    if auto:
        scored = [
            scanner.score_ids(e.question, e.response_ids, relation=e.relation, generated=True)
            for e in auto
        ]
        graded = ["correct" if e.correct else "wrong" for e in auto]
        out.append(draw_pair("auto", scored, graded, ctx.run.responses))
    for k, pair in enumerate(ctx.config.report_pairs, start=1):
        scored = [
            scanner.score(
                e["question"], e.get("answer") or None, relation=e.get("relation", "custom")
            )
            for e in pair
        ]
        out.append(draw_pair(f"pair{k}", scored, [None, None], ctx.run.responses))
    return out
