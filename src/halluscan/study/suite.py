"""``halluscan suite``.

One study per dataset on one model, the probe against the baselines on each, and transfer.


Each dataset's study lives in ``runs/NAME/<dataset>/`` and is an ordinary study (it resumes, and
a finished one is not run again). ``runs/NAME/suite.json`` and ``suite.html`` gather, per
dataset, the accuracy, the nested headline cell with its interval, the strongest control and the
gain over it, and the train x test matrix of AUCs at each training run's cell, with their gains
over the test run's logits (``halluscan probe --runs``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from halluscan import atomic
from halluscan.analyses.results import Suite, SuiteStudy, Transfer
from halluscan.errors import HalluscanError
from halluscan.report.suite import write_suite_report
from halluscan.study import metrics as metrics_io
from halluscan.study.config import StudyConfig
from halluscan.study.pipeline import run_study
from halluscan.study.runs import RunDir
from halluscan.study.transfer import transfer_matrix

log = logging.getLogger(__name__)


def study_name(dataset: str) -> str:
    """The folder of a dataset's study inside the suite: its name, or a file's stem."""
    name = (
        Path(dataset).stem if ("/" in dataset or dataset.endswith((".csv", ".jsonl"))) else dataset
    )
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name) or "dataset"


def run_suite(cfg: StudyConfig, datasets: list[str]) -> Suite:
    """Run (or resume) a study per dataset under ``runs/NAME``, then the transfer matrix.

    Write the suite files.
    """
    if not datasets:
        raise HalluscanError(
            "suite: give --datasets (e.g. world-facts movies winobias winogrande mnli math)"
        )
    names = [study_name(d) for d in datasets]
    if len(set(names)) < len(names):
        raise HalluscanError(
            f"suite: two datasets share a folder name ({', '.join(names)}); rename a file"
        )
    root = RunDir.named(cfg.name, cfg.runs_dir)
    t0 = time.perf_counter()
    results: dict[str, SuiteStudy] = {}
    with root.hold("halluscan suite"):
        for dataset, name in zip(datasets, names, strict=True):
            sub = replace(cfg, dataset=dataset, name=name, runs_dir=str(root.root))
            run = RunDir.named(name, root.root)
            t = time.perf_counter()
            # a finished study is not run again
            m = metrics_io.read(run) if run.has_metrics() else run_study(sub)
            results[name] = SuiteStudy.of(m, dataset, round(time.perf_counter() - t, 1))
            log.warning(
                "suite: %s done (%s)", name, "resumed" if results[name].wall_s < 1 else "ran"
            )
        probed = [n for n in names if results[n].headline is not None]
        matrix = (
            transfer_matrix([root.root / n for n in probed], cfg.site, cfg.probe_c)
            if len(probed) > 1
            else Transfer(probed, [])
        )
        matrix = replace(matrix, runs=probed)  # named by dataset, not by folder
        suite = Suite(cfg.name, cfg.model, results, matrix, round(time.perf_counter() - t0, 1))
        atomic.write_json(root.suite_json, metrics_io.to_json(suite))
        write_suite_report(root.suite_html, suite)
    return suite
