"""The report's baseline section.

Is the best probe better than the cheap signals, and than token identity.
"""

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


def baselines_section(m: Metrics) -> str:
    """HTML for the headline and the baselines (empty when the study has none)."""
    head, base = m.headline, m.baselines
    if head is None or base is None:
        return ""
    verdict = "clear of zero" if head.clear else "not clear of zero"
    identity = f"layer 0 at {head.position} (token identity)"
    head_gain = interval(head.gain_ci95) + (" ✓" if head.clear else "")
    rows = [
        (f"probe: {head.position}, layer {head.layer}", num(head.auc), interval(head.ci95), "", ""),
        (
            identity,
            num(head.layer0_auc),
            interval(head.layer0_ci95),
            num(head.gain_over_layer0),
            head_gain,
        ),
    ]
    if m.controls is not None:
        rows.append(
            (
                "relation only (metadata prior, control)",
                num(m.controls.relation_prior_auc),
                "",
                "",
                "",
            )
        )
    for name, b in base.items():
        gain = interval(b.gain_ci95) + (" ✓" if b.probe_clear else "")
        rows.append((_label(name), num(b.auc), interval(b.ci95), num(b.gain), gain))
    folds = m.heatmap.folds if m.heatmap is not None else "?"
    return f"""<h2>Is the probe better than the cheap signals?</h2>
<p>The headline is the best exact-answer cell's gain over layer 0 at the same position: which
answer was given
already predicts correctness, and the probe has to add to that. Gain of
<code>{head.position}</code>, layer
{head.layer} over layer 0: <b>{num(head.gain_over_layer0)}</b> (95 % interval
{interval(head.gain_ci95)},
{verdict}; paired over the {folds} folds, n={head.n}).</p>
<p class="muted">Every baseline is scored on the same test folds as the probe cell (higher = more
likely wrong).
Gain: the probe's AUC minus the baseline's, per fold, with its 95 % Student-t interval; ✓ when it
clears zero.
Log-probabilities come from the generation pass itself.</p>
{table(rows, ("method", "AUC", "95 % interval", "probe gain", "gain 95 % interval"))}"""


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
