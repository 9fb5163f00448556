"""The report's account of the labels: how the exact answers were found, how sure the grades are.

The locator's rule by class, the model's own extraction, the ambiguous grades, the dataset's
notes and the grades checked by hand.
"""

from __future__ import annotations

import html

from halluscan.analyses.results import Metrics
from halluscan.report.page import interval, num, table


def location_section(m: Metrics) -> str:
    """How the exact answers were found and the answers graded: audits, extraction, doubts."""
    s = m.summary
    mode = html.escape(str(m.provenance.config.get("locator")) if m.provenance else "?")
    found_c, found_w = (
        num(s.exact_answer_found["correct"], ".1%"),
        num(s.exact_answer_found["wrong"], ".1%"),
    )
    agree = num(s.locator_agreement_correct, ".1%")
    return f"""<h2>Exact-answer location, audited</h2>
<p>Located by one class-blind rule for correct and wrong responses (mode: <code>{mode}</code>).
Found for <b>{found_c}</b> of correct and <b>{found_w}</b> of wrong responses;
{s.exact_answer_missing} responses without a located answer are read at their last answer token
instead (flagged; the finding gives the headline without them).
On correct responses the located span overlaps the gold alias span in <b>{agree}</b> of cases.</p>
{_extraction(m)}
{_audit(m)}
{_unsure(m)}"""


def _extraction(m: Metrics) -> str:
    """How the model's extraction of its own exact answers did, and whether it located them."""
    x = m.self_extraction
    if x is None:
        return ""
    where = f"a pilot of {x.n} answers before the study" if x.pilot else f"all {x.n} answers"
    shares = " and ".join(f"<b>{num(v, '.0%')}</b> of {k} answers" for k, v in x.extracted.items())
    used = (
        "so it located this study's exact answers"
        if x.used
        else f"short of the {num(x.threshold, '.0%')} it needs, so the class-blind rule did"
    )
    return f"""<p><b>The model's own extraction.</b> Asked to copy the exact answer out of each
response (a few worked examples, then greedy decoding), the model gave a span of the response on
{where} for {shares}: {used}. Where both found one, the rule's span overlaps the model's in
{num(x.agreement, ".0%")} of answers.</p>"""


def _unsure(m: Metrics) -> str:
    """Ambiguous grades by reason and class, and what the dataset's build left out."""
    s = m.summary
    rows = [(why, c["correct"], c["wrong"]) for why, c in (s.ambiguous or {}).items()]
    where = "kept in" if s.ambiguous_in_probes else "left out of"
    out = ""
    if rows:
        out = f"""<h3>Ambiguous grades</h3>
<p>Answers the grader could not grade with confidence: a candidate of the asked type after a
negation, a second candidate beside the right one, no choice at all, or a number the question
itself gave. They are counted here and {where} the probes (<code>--keep-ambiguous</code> keeps
them).</p>
{table(rows, ("why", "graded correct", "graded wrong"))}"""
    out += _grading_audit(m)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s.dataset_notes or [])
    return out + (f"<p class='muted'>The dataset: <ul>{notes}</ul></p>" if notes else "")


def _audit(m: Metrics) -> str:
    """Which rule located the answers of each class; the probe on the rules both classes share."""
    a = m.locator_audit
    if a is None:
        return table(sorted(m.summary.locator_rules.items()), ("rule", "responses"))
    rows = [(r, c["correct"], c["wrong"]) for r, c in a.rules.items()]
    left = ", ".join(f"{num(v, '.1%')} of {k} answers" for k, v in a.not_located.items())
    rule = (m.versus or {}).get("rule")
    alone = (
        f" The rule alone, as a classifier on the same folds as the probe, reads AUC "
        f"<b>{num(rule.auc)}</b> ({interval(rule.ci95)})."
        if rule is not None
        else ""
    )
    out = f"""<p>Rule by class (<code>none</code>: not located; such answers are read at their
last answer token instead): {left} had no located exact answer.{alone} When one rule finds one
class's answers and not the other's, a probe at the exact answer can learn the rule instead of
the model's knowledge.</p>
{table(rows, ("rule", "correct", "wrong"))}"""
    same = a.same_rule
    if same is None:
        return out + (
            "<p class='muted'>Same-rule control: no rule located enough answers of both classes "
            "to cross-validate a probe on them alone.</p>"
        )
    return (
        out
        + f"""<p><b>Same-rule control</b>: on the {same.n} answers ({same.n_wrong} wrong)
located by the rules both classes share ({html.escape(", ".join(same.rules))}), the probe at
<code>{same.position}</code> reads {num(same.best.auc)} ({interval(same.best.ci95)}) at its best
layer {same.best.layer} (the best of the layers: optimistic), and layer {same.layer0.layer} (token
identity) {num(same.layer0.auc)} ({interval(same.layer0.ci95)}).</p>"""
    )


def _grading_audit(m: Metrics) -> str:
    """The grader against hand labels, or how to check it."""
    a = m.grading_audit
    if a is None:
        return (
            "<p class='muted'>The grades have not been checked by hand: <code>halluscan audit "
            "RUN --n 50</code> writes a sample to label, <code>--labels FILE</code> reads it back."
            "</p>"
        )
    rows = [
        (f"graded {k}", e.checked, e.errors, num(e.rate, ".1%"), interval(e.ci95))
        for k, e in a.by_grade.items()
    ]
    return f"""<h3>The grades, checked by hand</h3>
<p>{a.checked} answers labelled by hand in <code>{html.escape(a.file)}</code> ({a.skipped} left
blank or ambiguous). The grader's error rate on this study, each grade weighted by how often it
was given: <b>{num(a.error_rate, ".1%")}</b> (95 % interval {interval(a.ci95)}).</p>
{table(rows, ("grade", "checked", "grader wrong", "error rate", "95 % interval (Wilson)"))}"""
