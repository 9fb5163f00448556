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
        tmp_path / "report.html", record, EXAMPLES, png, "<div>plot</div>"
    ).read_text(encoding="utf-8")


def test_metrics_round_trip_through_json():
    m = metrics()
    assert to_json(from_json(Metrics, m)) == {**m, "probe_bank": None, "timings_s": m["timings_s"]}


def test_report_without_last_q_says_n_a(tmp_path):
    html = report(tmp_path, metrics(positions=("exact_answer_last",)))
    assert "beats the best <code>last_q</code> cell (0.710 vs n/a)" in html
    assert "<mark>Paris</mark>" in html


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["controls"].update(layer0_exact_auc=None, layer0_last_q_auc=float("nan")),
        lambda m: m["finding"].update(
            best_exact_position="", best_exact_layer=-1, best_exact_auc=float("nan")
        ),
        lambda m: m["best_cells"]["last_q"].update(auc=None, std=None, ci95=None),
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
            tmp_path / "nope.png",
            "",
        )
