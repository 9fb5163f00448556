"""The HTML report: built from metrics read from JSON like the ``metrics.json`` a study writes."""

import copy

import pytest

from halluscan.analyses.results import Metrics
from halluscan.records import Span
from halluscan.report.html import write_report
from halluscan.study.metrics import from_json, to_json
from tests.conftest import example


def metrics(positions=("last_q", "exact_answer_last")):
    cell = {"layer": 2, "auc": 0.71, "std": 0.03, "ci95": [0.65, 0.77], "informative": True}
    return {
        "name": "unit",
        "n_graded": 4,
        "accuracy": 0.5,
        "accuracy_by_relation": {"capital": 0.5},
        "n_by_relation": {"capital": 4},
        "exact_answer_found": {"correct": 1.0, "wrong": 0.5},
        "exact_answer_missing": 1,
        "locator_agreement_correct": 1.0,
        "locator_rules": {"relation": 3, "none": 1},
        "stopped_by": {"sentence": 4},
        "heatmap": {
            "site": "residual",
            "layers": [0, 1, 2],
            "positions": list(positions),
            "folds": 2,
            "auc": [[0.5] * len(positions)] * 3,
            "auc_std": [[0.01] * len(positions)] * 3,
            "n_per_position": [4] * len(positions),
        },
        "best_cells": {p: dict(cell) for p in positions},
        "controls": {"relation_prior_auc": 0.5, "layer0_exact_auc": 0.55, "layer0_last_q_auc": 0.5},
        "finding": {
            "best_exact_position": "exact_answer_last",
            "best_exact_layer": 2,
            "best_exact_auc": 0.71,
            "exact_beats_last_q": False,
            "exact_beats_layer0": True,
            "exact_beats_relation_prior": True,
            "strongest_control": "text+rule+relation",
            "gain_over_strongest": -0.06,
            "gain_ci95": [-0.1, -0.02],
            "beats_strongest": False,
            "warnings": [
                "the locator's rule alone predicts the label (AUC 0.660, interval from 0.610)"
            ],
        },
        "headline": {
            "position": "exact_answer_last",
            "layer": 2,
            "auc": 0.74,
            "ci95": [0.70, 0.78],
            "n": 40,
            "n_wrong": 18,
            "left_out": {"correct": 0, "wrong": 3},
            "strongest": "text+rule+relation",
            "strongest_auc": 0.80,
            "strongest_ci95": [0.75, 0.85],
            "gain": -0.06,
            "gain_ci95": [-0.1, -0.02],
            "clear": False,
            "n_cells": 3,
            "max_auc": 0.71,
            "max_cell": {"position": "exact_answer_last", "layer": 2},
        },
        "versus": {
            name: {
                "kind": kind,
                "auc": auc,
                "ci95": [auc - 0.05, auc + 0.05],
                "n": 40,
                "gain": 0.74 - auc,
                "gain_ci95": [0.7 - auc, 0.78 - auc],
                "probe_clear": 0.7 - auc > 0,
                **({"orientation": "lower = wrong"} if kind == "baseline" else {}),
            }
            for name, kind, auc in (
                ("text+rule+relation", "control", 0.80),
                ("rule", "control", 0.66),
                ("layer 0 at the same position", "control", 0.6),
                ("logprob_min_exact_answer", "baseline", 0.62),
            )
        },
        "locator_audit": {
            "rules": {"relation": {"correct": 2, "wrong": 1}, "none": {"correct": 0, "wrong": 1}},
            "not_located": {"correct": 0.0, "wrong": 0.5},
            "shared_rules": ["relation"],
        },
        "timings_s": {"probe_sweep": 1.25},
        "provenance": {
            "halluscan_version": "0.1.0",
            "created": "2025-01-01T00:00:00+00:00",
            "model": {
                "model_id": "tiny",
                "source": "local",
                "revision": "sha256:abc",
                "architecture": "llama",
                "n_layers": 2,
                "hidden_size": 8,
                "dtype": "torch.float32",
                "device": "cpu",
            },
            "dataset": {"name": "q.csv", "sha256": "0" * 64, "n_questions": 4},
            "config": {"seed": 0, "locator": "class-blind"},
            "seed": 0,
            "versions": {"torch": "2", "transformers": "5", "python": "3.11"},
            "host": {"machine": "x86_64", "threads": 2},
        },
    }


EXAMPLES = [example(str(c), correct=c, exact_span=Span(0, 5) if c else None) for c in (True, False)]


def report(tmp_path, m):
    png = tmp_path / "heatmap.png"
    png.write_bytes(b"\x89PNG fake")
    record = from_json(Metrics, m)
    return write_report(
        tmp_path / "report.html", record, EXAMPLES, (png, png), "<div>plot</div>"
    ).read_text(encoding="utf-8")


def test_metrics_round_trip_through_json():
    m = metrics()
    model = {**m["provenance"]["model"], "prompt_format": ""}  # a field added since: its default
    prov = {**m["provenance"], "model": model}
    assert to_json(from_json(Metrics, m)) == {**m, "probe_bank": None, "provenance": prov}


def test_the_finding_box_names_the_strongest_control_and_says_when_the_probe_loses(tmp_path):
    html = report(tmp_path, metrics(positions=("exact_answer_last",)))
    box = html.split("<div class='finding'>")[1].split("</div>")[0]
    assert "the probe does <b>not</b> beat the strongest cheap control" in box
    assert "text + rule + relation" in box or "text+rule+relation" in box
    assert "gain <b>-0.060</b> (95 % interval -0.100 – -0.020)" in box
    assert "n = 40 answers (18 wrong)" in box and "0 correct and 3 wrong" in box
    assert "maximum over its 3 exact-answer cells reads 0.710" in box and "optimistic" in box
    assert "Warning</span>: the locator&#x27;s rule alone predicts the label" in box
    # the locator audit: rule x class, and the share of each class left out
    assert "<td>relation</td><td>2</td><td>1</td>" in html and "50.0% of wrong answers" in html
    assert "<mark>Paris</mark>" in html


def test_without_a_nested_cell_the_box_gives_the_maximum_labelled_optimistic(tmp_path):
    m = metrics()
    del m["headline"]
    box = report(tmp_path, m).split("<div class='finding'>")[1].split("</div>")[0]
    assert "AUC 0.710 (the maximum over the heatmap's cells" in box and "optimistic" in box


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["controls"].update(layer0_exact_auc=None, layer0_last_q_auc=float("nan")),
        lambda m: (
            m.pop("headline")
            and m["finding"].update(
                best_exact_position="", best_exact_layer=-1, best_exact_auc=float("nan")
            )
        ),
        lambda m: m["headline"].update(strongest_auc=None, gain=None, gain_ci95=None),
        lambda m: m["best_cells"]["exact_answer_last"].update(std=float("nan"), ci95=[None, None]),
        lambda m: m.update(accuracy=None, locator_agreement_correct=None),
    ],
)
def test_missing_numbers_print_n_a(tmp_path, edit):
    m = copy.deepcopy(metrics())
    edit(m)
    assert "n/a" in report(tmp_path, m)


def test_a_failed_write_keeps_the_old_report_and_is_a_clear_error(tmp_path, monkeypatch):
    import halluscan.atomic as st
    from halluscan.errors import HalluscanError

    report(tmp_path, metrics())
    before = (tmp_path / "report.html").read_text(encoding="utf-8")

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st.os, "replace", full)
    m = metrics()
    m["name"] = "second"
    with pytest.raises(
        HalluscanError, match=r"could not write .*report.html: No space left on device"
    ):
        report(tmp_path, m)
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == before
    assert not list(tmp_path.glob("*.tmp"))


def test_a_missing_heatmap_is_a_clear_error(tmp_path):
    from halluscan.errors import HalluscanError

    with pytest.raises(HalluscanError, match="could not read the heatmap"):
        write_report(
            tmp_path / "report.html",
            from_json(Metrics, metrics()),
            EXAMPLES,
            (tmp_path / "nope.png", tmp_path / "nope.png"),
            "",
        )


def test_long_plotly_titles_wrap_instead_of_clipping():
    from halluscan.report.literal import plotly_wrap

    title = "smollm2 · world-facts · n=1492 · 5-fold CV · exact-answer max 0.940 = the best of " * 2
    lines = plotly_wrap(title + "<b>", 100).split("<br>")
    assert len(lines) == 2 and all(len(x) <= 100 for x in lines) and lines[-1].endswith("&lt;b&gt;")
