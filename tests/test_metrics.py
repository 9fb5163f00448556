"""The one owner of metrics.json: typed records out, the same JSON back, and old or newer files."""

from __future__ import annotations

import json

import pytest

from halluscan.analyses.results import Metrics
from halluscan.errors import HalluscanError
from halluscan.study import metrics as metrics_io
from halluscan.study.runs import RunDir
from tests.test_report import metrics

NEW_IN_3 = ("headline", "versus", "locator_audit")
NEW_FINDING = ("strongest_control", "gain_over_strongest", "gain_ci95", "beats_strongest")


def sample():
    """The keys a version-1 or -2 study wrote: no nested headline, controls or locator audit."""
    m = {k: v for k, v in metrics().items() if k not in NEW_IN_3}
    m["finding"] = {k: v for k, v in m["finding"].items() if k not in NEW_FINDING}
    m["finding"]["warnings"] = []
    return m


def test_a_version_2_file_drops_the_old_headline_and_baselines_and_reads_the_rest(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    old = {
        **sample(),
        "schema_version": 2,
        "headline": {"gain_over_layer0": 0.1},  # the old shape: read as absent
        "baselines": {"logprob_mean_response": {"auc": 0.6}},
    }
    run.metrics.write_text(json.dumps(old))
    m = metrics_io.read(run)
    assert m.headline is None and m.versus is None and m.summary.accuracy == 0.5


def test_a_version_3_file_round_trips_with_its_headline(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.metrics.write_text(json.dumps({**metrics(), "schema_version": 3}))
    m = metrics_io.read(run)
    assert m.headline.strongest == "text+rule+relation" and not m.headline.clear
    assert m.versus["logprob_min_exact_answer"].orientation == "lower = wrong"
    assert m.locator_audit.rules["none"] == {"correct": 0, "wrong": 1}


def test_a_file_without_a_schema_version_reads_as_version_1_and_writes_back_the_same(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    old = sample()  # the keys a study wrote before metrics.json recorded its version
    run.metrics.write_text(json.dumps(old))
    m = metrics_io.read(run)
    assert isinstance(m, Metrics) and m.summary.accuracy == 0.5 and m.finding.best_exact_layer == 2
    assert m.best_cells["last_q"].ci95 == (0.65, 0.77)
    metrics_io.write(run, m)
    again = json.loads(run.metrics.read_text())
    assert again.pop("schema_version") == metrics_io.SCHEMA_VERSION
    # the same keys and values, nothing lost; fields added since are written with their defaults
    new = {**old, "probe_bank": None}
    if "provenance" in old:
        model = {**old["provenance"]["model"], "prompt_format": ""}
        new["provenance"] = {**old["provenance"], "model": model}
    assert again == new


def test_a_newer_damaged_or_incomplete_file_is_refused_in_one_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    for text, why in (
        (json.dumps({**sample(), "schema_version": 99}), "newer than this halluscan reads"),
        ("{not json", "not readable JSON"),
        (json.dumps({k: v for k, v in sample().items() if k != "accuracy"}), "metrics.accuracy"),
        (json.dumps({**sample(), "n_graded": "four"}), "metrics.n_graded"),
    ):
        run.metrics.write_text(text)
        with pytest.raises(HalluscanError, match=why) as err:
            metrics_io.read(run)
        assert "\n" not in str(err.value) and "halluscan run --name run" in str(err.value)


def test_a_missing_file_says_which_folder(tmp_path):
    with pytest.raises(HalluscanError, match="no metrics.json; give a finished study folder"):
        metrics_io.read(RunDir(tmp_path / "nowhere"))
