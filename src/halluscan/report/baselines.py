"""The report's baseline section: is the best probe better than the cheap signals, and than token identity."""

from __future__ import annotations

from typing import Any

from halluscan.report.html import _num, _table

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
        return {"mean": "p(True), mean of both orders"}.get(order, f"p(True), options {order.replace('_', ' ')}")
    return name.replace("_", " ")


def _ci(ci: list[float] | None) -> str:
    return " – ".join(_num(v) for v in ci) if ci else "—"


def baselines_section(metrics: dict[str, Any]) -> str:
    """HTML for ``metrics["headline"]`` and ``metrics["baselines"]`` (empty when the study has none)."""
    head, base = metrics.get("headline"), metrics.get("baselines")
    if not head or base is None:
        return ""
    verdict = "clear of zero" if head["clear"] else "not clear of zero"
    identity = f"layer 0 at {head['position']} (token identity)"
    head_gain = _ci(head["gain_ci95"]) + (" ✓" if head["clear"] else "")
    rows = [
        (f"probe: {head['position']}, layer {head['layer']}", _num(head["auc"]), _ci(head.get("ci95")), "", ""),
        (identity, _num(head["layer0_auc"]), _ci(head.get("layer0_ci95")), _num(head["gain_over_layer0"]), head_gain),
    ]
    prior = metrics.get("controls", {}).get("relation_prior_auc")
    if prior is not None:
        rows.append(("relation only (metadata prior, control)", _num(prior), "", "", ""))
    for name, b in base.items():
        gain = _ci(b["gain_ci95"]) + (" ✓" if b["probe_clear"] else "")
        rows.append((_label(name), _num(b["auc"]), _ci(b["ci95"]), _num(b["gain"]), gain))
    return f"""<h2>Is the probe better than the cheap signals?</h2>
<p>The headline is the best exact-answer cell's gain over layer 0 at the same position: which answer was given
already predicts correctness, and the probe has to add to that. Gain of <code>{head["position"]}</code>, layer
{head["layer"]} over layer 0: <b>{_num(head["gain_over_layer0"])}</b> (95 % interval {_ci(head["gain_ci95"])},
{verdict}; paired over the {metrics["heatmap"]["folds"]} folds, n={head["n"]}).</p>
<p class="muted">Every baseline is scored on the same test folds as the probe cell (higher = more likely wrong).
Gain: the probe's AUC minus the baseline's, per fold, with its 95 % Student-t interval; ✓ when it clears zero.
Log-probabilities come from the generation pass itself.</p>
{_table(rows, ("method", "AUC", "95 % interval", "probe gain", "gain 95 % interval"))}"""


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


def error_types_section(metrics: dict[str, Any]) -> str:
    """HTML for ``metrics["error_types"]`` (empty without ``--samples``)."""
    e = metrics.get("error_types")
    if not e:
        return ""
    rows = [(TYPE_NAMES.get(n, n), t["count"], _num(t["auc"]), _ci(t["ci95"])) for n, t in e["types"].items()]
    head = metrics.get("headline", {})
    return f"""<h2>Types of error</h2>
<p class="muted">From {e["samples"]} answers sampled per question at temperature 1 (thresholds of LLMsKnow's
<code>get_types_of_mistakes</code>: half, a third and a sixth of the samples; types overlap). AUC: a probe at the best
cell (<code>{head.get("position", "")}</code>, layer {head.get("layer", "")}) telling the type from the rest,
cross-validated by question, with its 95 % interval; n/a where a type has fewer questions than folds.</p>
{_table(rows, ("type", "questions", "probe AUC", "95 % interval"))}"""
