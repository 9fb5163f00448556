"""The report's comparisons: the headline probe against every cheap signal; the types of error."""

from __future__ import annotations

from halluscan.analyses.results import Metrics
from halluscan.report.page import interval, num, table

NAMES = {
    "logprob_mean": "mean token log-prob",
    "logprob_min": "min token log-prob",
    "logprob_max": "max token log-prob",
    "entropy_mean": "mean token entropy",
}


def _label(name: str) -> str:
    for key, text in NAMES.items():
        if name.startswith(key + "_"):
            where = name[len(key) + 1 :].replace("_", " ")
            return f"{text} ({where})"
    if name == "sampling_consistency":
        return "sampling consistency (samples agreeing with greedy)"
    if name.startswith("p_true_"):
        order = name[len("p_true_") :]
        return {"mean": "p(True), mean of both orders"}.get(
            order, f"p(True), options {order.replace('_', ' ')}"
        )
    return name.replace("_", " ")


KINDS = {"control": "cheap control", "baseline": "the model's own signal", "probe": "another probe"}


def label(name: str) -> str:
    """A compared signal's name as the report prints it."""
    return _label(name)


def versus_section(m: Metrics) -> str:
    """HTML: every control and baseline against the headline probe (empty without checks)."""
    head, versus = m.headline, m.versus
    if head is None or versus is None:
        return ""
    rows = [(f"probe: {head.position}, layer {head.layer} (nested)", "", num(head.auc),
             interval(head.ci95), head.n, "", "", "")]  # fmt: skip
    for name, c in sorted(versus.items(), key=lambda kv: -(kv[1].auc or 0.0)):
        gain = interval(c.gain_ci95) + (" ✓" if c.probe_clear else " ✗")
        rows.append((label(name), KINDS.get(c.kind, c.kind), num(c.auc), interval(c.ci95), c.n,
                     c.orientation or "", num(c.gain), gain))  # fmt: skip
    head_cols = ("signal", "kind", "AUC", "95 % interval", "n", "oriented on training folds",
                 "probe gain", "gain 95 % interval")  # fmt: skip
    return f"""<h2>Is it the model, or the answer's text?</h2>
<p>Every cheap signal a sceptic tries first, scored on exactly the test answers the headline probe
is scored on, fold by fold: the probe's gain over each is paired over the folds, with a 95 %
Student-t interval (✓: clear of zero). Token identity is a probe on layer 0 (the embedding
output); the text is a logistic regression on the response's words and word pairs, with no model
at all; the rule is which locator rule found the exact answer. The model's own signals are
oriented on each training fold (the sign that ranks its training answers better), never on the
test fold; "mixed" means the folds disagreed.</p>
{table(rows, head_cols)}"""


TYPE_NAMES = {
    "consistently_correct": "consistently correct (every sample right)",
    "right_is_largest": "right is the largest answer, some samples wrong",
    "consistently_wrong": "consistently wrong (largest answer wrong, never right)",
    "wrong_is_largest": "largest answer wrong, the right one appears",
    "many_different_answers_right_appears": "many different answers, the right one among them",
    "many_different_answers": "many different answers, never right",
    "closely_competing": "closely competing right and wrong answers",
    "no_answer": "no answer is the largest",
}


def error_types_section(m: Metrics) -> str:
    """HTML for the types of error (empty without ``--samples``)."""
    e = m.error_types
    if e is None:
        return ""
    rows = [
        (TYPE_NAMES.get(n, n), t.count, num(t.auc), interval(t.ci95)) for n, t in e.types.items()
    ]
    position, layer = (
        (m.headline.position, m.headline.layer) if m.headline is not None else ("", "")
    )
    return f"""<h2>Types of error</h2>
<p class="muted">From {e.samples} answers sampled per question at temperature 1 (thresholds of
LLMsKnow's
<code>get_types_of_mistakes</code>: half, a third and a sixth of the samples; types overlap). AUC:
a probe at the best
cell (<code>{position}</code>, layer {layer}) telling the type from the rest,
cross-validated by question, with its 95 % interval; n/a where a type has fewer questions than
folds.</p>
{table(rows, ("type", "questions", "probe AUC", "95 % interval"))}"""
