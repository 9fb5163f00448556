"""``halluscan suite``: one study per dataset on one model, the probe against the baselines on each, and transfer.

Each dataset's study lives in ``runs/NAME/<dataset>/`` and is an ordinary study (it resumes, and
a finished one is not run again). ``runs/NAME/suite.json`` and ``suite.html`` gather, per
dataset, the accuracy, the best exact-answer cell with its interval, its gain over layer 0 and
over every baseline, and the train x test matrix of best-cell AUCs (``halluscan probe --runs``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from halluscan import atomic
from halluscan.config import StudyConfig
from halluscan.errors import HalluscanError
from halluscan.pipeline import run_study
from halluscan.probes.transfer import transfer_matrix
from halluscan.report.suite import write_suite_report
from halluscan.runs import RunDir

log = logging.getLogger(__name__)


def study_name(dataset: str) -> str:
    """The folder of a dataset's study inside the suite: its name, or a file's stem."""
    name = Path(dataset).stem if ("/" in dataset or dataset.endswith((".csv", ".jsonl"))) else dataset
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name) or "dataset"


def summary(m: dict[str, Any]) -> dict[str, Any]:
    """What the suite keeps of one study's metrics."""
    out: dict[str, Any] = {"n_graded": m["n_graded"], "accuracy": m["accuracy"], "locator_rules": m["locator_rules"]}
    head, base = m.get("headline"), m.get("baselines", {})
    if m.get("no_probes") or not head:  # no sweep, or no exact-answer cell (or a study from before the baselines)
        return out | {"no_probes": m.get("no_probes") or "no exact-answer cell with both classes"}
    best_base = max(base.items(), key=lambda kv: kv[1]["auc"] if kv[1]["auc"] is not None else -1, default=None)
    return out | {
        "best_cell": head,
        "beats_every_baseline": bool(base) and all(b["probe_clear"] for b in base.values()),
        "best_baseline": {"name": best_base[0], **best_base[1]} if best_base else None,
        "baselines": base,
    }


def run_suite(cfg: StudyConfig, datasets: list[str]) -> dict[str, Any]:
    """Run (or resume) a study per dataset under ``runs/NAME``, then the transfer matrix; write the suite files."""
    if not datasets:
        raise HalluscanError("suite: give --datasets (e.g. world-facts movies winobias winogrande mnli math)")
    names = [study_name(d) for d in datasets]
    if len(set(names)) < len(names):
        raise HalluscanError(f"suite: two datasets share a folder name ({', '.join(names)}); rename a file")
    root = RunDir.of(cfg)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    with root.hold("halluscan suite"):
        for dataset, name in zip(datasets, names, strict=True):
            sub = replace(cfg, dataset=dataset, name=name, runs_dir=str(root.root))
            run = RunDir.of(sub)
            t = time.perf_counter()
            m = run.read_metrics() if run.has_metrics() else run_study(sub)  # a finished study is not run again
            results[name] = summary(m) | {"dataset": dataset, "wall_s": round(time.perf_counter() - t, 1)}
            log.warning("suite: %s done (%s)", name, "resumed" if results[name]["wall_s"] < 1 else "ran")
        probed = [n for n in names if "best_cell" in results[n]]
        matrix = (
            transfer_matrix([str(root.root / n) for n in probed], cfg.site, cfg.probe_c) if len(probed) > 1 else None
        )
        out = {
            "name": cfg.name,
            "model": cfg.model,
            "datasets": results,
            "transfer": {"runs": probed, "best_auc": _rows(matrix["best_auc"]) if matrix else []},
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        atomic.write_json(root.suite_json, out)
        write_suite_report(root.suite_html, out)
    return out


def _rows(m: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in m]
