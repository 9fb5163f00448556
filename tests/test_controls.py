"""Issue 22: the controls a sceptic asks for, cells chosen without the test data, the locator audit.

Synthetic activations with a known signal, and answers whose text or locator rule may leak the
label, go through the same checks a study runs (:func:`halluscan.study.checks.check`).
"""

from __future__ import annotations

import numpy as np
import pytest

from halluscan.analyses import controls as ctl
from halluscan.analyses.nested import nested
from halluscan.analyses.results import Metrics
from halluscan.analyses.summary import mean_ci
from halluscan.probes.features import Features
from halluscan.probes.sweep import GAIN_BOUNDS, fold_interval, folds_for, sweep
from halluscan.records import CV, Span
from halluscan.report.html import write_report
from halluscan.study.checks import check
from halluscan.study.metrics import from_json
from halluscan.study.pipeline import with_checks
from tests.conftest import example
from tests.test_report import EXAMPLES
from tests.test_report import metrics as sample_metrics

POSITIONS = ("last_q", "exact_answer_first", "exact_answer_last")
LAYERS = (0, 1, 2)
CV5 = CV(folds=5, seed=0)
WORDS = "the capital is a city in the north by the sea of old towns and bridges".split()


def answers(y, rng, leak=False, rule=lambda wrong: "relation"):
    """An answer per label: random words; with ``leak`` every wrong one ends in "maybe"."""
    out = []
    for i, wrong in enumerate(y):
        words = list(rng.choice(WORDS, 6))
        text = " ".join(words) + (" maybe" if leak and wrong else "") + "."
        out.append(
            example(
                f"q{i}",
                correct=not wrong,
                response=text,
                exact_span=Span(0, 3),
                locator=rule(wrong),
                positions={p: 10 + j for j, p in enumerate(POSITIONS)},
                relation="capital" if i % 2 else "currency",
            )
        )
    return out


def activations(y, rng, strength, d=12):
    """[n, layer, position, d] noise; wrong answers shift feature 0 at layer 2 by ``strength``."""
    x = rng.normal(size=(len(y), len(LAYERS), len(POSITIONS), d)).astype(np.float32)
    x[:, 2, 1:, 0] += (2 * y - 1)[:, None] * strength
    return Features.from_array(x, layers=LAYERS, positions=POSITIONS)


def run(features, examples, scores=None):
    y = np.array([0 if e.correct else 1 for e in examples])
    groups = [e.qid for e in examples]
    result = sweep(features, y, groups, folds=5, seed=0)
    return check(features, examples, result, scores or {}, CV5)


def finding_box(tmp_path, checks):
    """The report's finding box for a study with these checks."""
    m = sample_metrics()
    del m["headline"], m["versus"], m["locator_audit"]
    record = with_checks(from_json(Metrics, m), checks)
    png = tmp_path / "h.png"
    png.write_bytes(b"\x89PNG")
    html = write_report(tmp_path / "r.html", record, EXAMPLES, (png, png), "").read_text()
    return html.split("<div class='finding'>")[1].split("</div>")[0]


def test_a_planted_text_leak_is_caught_and_the_finding_box_says_so(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    examples = answers(y, rng, leak=True)
    checks = run(activations(y, rng, strength=0.6), examples)
    text, probe = checks.versus[ctl.TEXT_ONLY], checks.headline
    # the words alone reach the probe: the leak is found, and the probe does not beat it
    assert text.auc > 0.95 and text.auc >= probe.auc
    assert probe.strongest in (ctl.TEXT_ONLY, ctl.CHEAP) and not probe.clear
    assert any("does not beat the strongest cheap control" in w for w in checks.warnings)
    box = finding_box(tmp_path, checks)
    assert "the probe does <b>not</b> beat the strongest cheap control" in box
    assert "text" in box


def test_a_real_signal_in_the_hidden_states_beats_every_control(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    examples = answers(y, rng)
    noise = {"logprob_mean_response": rng.normal(size=len(y))}
    checks = run(activations(y, rng, strength=2.0), examples, noise)
    head = checks.headline
    assert (head.position, head.layer) in {("exact_answer_first", 2), ("exact_answer_last", 2)}
    assert head.auc > 0.9 and head.clear and head.gain_ci95[0] > 0
    assert all(v.probe_clear for k, v in checks.versus.items() if v.kind != "probe"), {
        k: v.gain_ci95 for k, v in checks.versus.items()
    }
    assert not checks.warnings
    assert "the probe beats the strongest cheap control" in finding_box(tmp_path, checks)


def test_a_baseline_that_points_the_wrong_way_is_reported_oriented_and_named():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    confident_when_wrong = -(2 * y - 1) + rng.normal(size=len(y))  # lower = wrong
    splits = folds_for(y, [str(i) for i in range(len(y))], 5, 0)
    aucs, orientation = ctl.oriented(confident_when_wrong, y, splits)
    assert orientation == "lower = wrong" and aucs.mean() > 0.8
    # a score with no signal may flip between folds: it says so
    flat = rng.normal(size=len(y))
    assert ctl.oriented(flat, y, splits)[1] in ("higher = wrong", "lower = wrong", "mixed")
    examples = answers(y, rng)
    checks = run(activations(y, rng, 1.0), examples, {"logprob_min_response": confident_when_wrong})
    b = checks.versus["logprob_min_response"]
    assert b.kind == "baseline" and b.orientation == "lower = wrong" and b.auc > 0.8


def test_nested_selection_is_honest_where_the_heatmap_maximum_is_not():
    """On pure noise the best of many cells reads above chance; the nested estimate does not."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 160)
    x = rng.normal(size=(len(y), 12, len(POSITIONS), 8)).astype(np.float32)
    features = Features.from_array(x, layers=range(12), positions=POSITIONS)
    groups = [str(i) for i in range(len(y))]
    heat = sweep(features, y, groups, folds=5, seed=0)
    result = nested(features, y, groups, ["exact_answer_first", "exact_answer_last"], CV5).result
    assert np.nanmax(heat.auc) > 0.55  # the maximum of 36 noisy cells: optimistic
    assert abs(result.auc - 0.5) < 0.08 and result.ci95[0] < 0.5 < result.ci95[1]
    assert result.n_cells == 24 and len(result.picks) == 5 and result.n == len(y)
    # with a signal, nested selection finds its cell in every fold
    x[:, 7, 2, 0] += (2 * y - 1) * 2.0
    found = nested(
        Features.from_array(x, layers=range(12), positions=POSITIONS),
        y,
        groups,
        ["exact_answer_first", "exact_answer_last"],
        CV5,
    ).result
    assert all((c.position, c.layer) == ("exact_answer_last", 7) for c in found.picks)
    assert found.auc > 0.9


def test_the_locator_audit_tabulates_rules_by_class_and_warns_when_the_rule_predicts_the_label(
    tmp_path,
):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    # correct answers always by the relation rule; wrong ones by relation a third of the time
    rule = lambda wrong: "relation" if not wrong or rng.random() < 0.33 else "fallback"  # noqa: E731
    examples = answers(y, rng, rule=rule)
    checks = run(activations(y, rng, 1.5), examples)
    a = checks.audit
    assert a.rules["fallback"]["correct"] == 0 and a.rules["fallback"]["wrong"] > 50
    assert a.shared_rules == ["relation"] and a.not_located == {"correct": 0.0, "wrong": 0.0}
    same = a.same_rule
    assert same.rules == ["relation"]
    assert same.n == a.rules["relation"]["correct"] + a.rules["relation"]["wrong"]
    assert same.best.auc > 0.8 and abs(same.layer0.auc - 0.5) < 0.15
    assert checks.versus[ctl.RULE].auc > 0.7
    assert any("the locator's rule alone predicts the label" in w for w in checks.warnings)
    box = finding_box(tmp_path, checks)
    assert "rule alone predicts the label" in box.replace("&#x27;", "'")


@pytest.mark.parametrize(
    "per_fold", [[1.0, 1.0, 1.0, 0.95, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.05, 0.0, 0.0, 0.1]]
)
def test_intervals_stay_inside_their_bounds(per_fold):
    a = np.array(per_fold)
    lo, hi = fold_interval(a[:, None])
    assert 0.0 <= lo[0] <= a.mean() <= hi[0] <= 1.0
    auc, ci = mean_ci(a)
    assert 0.0 <= ci[0] <= auc <= ci[1] <= 1.0
    gain, gci = mean_ci(a - (1 - a), GAIN_BOUNDS)
    assert -1.0 <= gci[0] <= gain <= gci[1] <= 1.0
