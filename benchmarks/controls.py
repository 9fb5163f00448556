"""What the sceptic's checks cost: the controls against the study, nested selection vs the sweep.

1. The default study (bundled model, world-facts, every default), run here into a fresh folder,
   or read from a finished one with ``--run``: its own stage timings give the controls' share
   of the rest of the study (target < 5 %) and the nested selection's share of the probe sweep
   (target < 25 %), both measured in that one run.
2. On that study's store, the sweep and the nested selection again, alternating, twice each
   (the faster counts), and the nested selection with fully converged inner fits (tolerance
   1e-4, the sweep's): do the looser inner fits pick the same cells?

Writes ``benchmarks/results/controls.json``.

    python benchmarks/controls.py [--run runs/demo]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from halluscan.analyses import nested as nested_mod
from halluscan.positions import EXACT
from halluscan.probes.sweep import sweep, wrong_labels
from halluscan.study import metrics as metrics_io
from halluscan.study.arrays import store_features
from halluscan.study.config import DEMO, StudyConfig
from halluscan.study.pipeline import run_study
from halluscan.study.runs import RunDir, stored_config, study_examples

ROOT = Path(__file__).resolve().parents[1]
CONTROLS, NESTED, SWEEP = "controls", "nested_selection", "probe_sweep"


def study_shares(run: RunDir) -> dict[str, float]:
    """The controls' and the nested selection's shares, from one study's own timings."""
    t = metrics_io.read(run).timings_s
    rest = sum(v for k, v in t.items() if k not in (CONTROLS, NESTED))
    return {
        "study_stages_s": round(sum(t.values()), 1),
        "controls_s": t[CONTROLS],
        "nested_selection_s": t[NESTED],
        "probe_sweep_s": t[SWEEP],
        "controls_vs_rest_of_study": round(t[CONTROLS] / rest, 4),
        "nested_vs_sweep": round(t[NESTED] / t[SWEEP], 4),
        "checks_vs_rest_of_study": round((t[CONTROLS] + t[NESTED]) / rest, 4),
    }


def rerun(run: RunDir) -> dict[str, object]:
    """The sweep and the nested selection again on the study's store, and the converged picks."""
    store = run.open_store()
    cfg = stored_config(store)
    examples = study_examples(store)
    y, groups = wrong_labels(examples), [e.qid for e in examples]
    keep = np.array([cfg.keep_ambiguous or e.ambiguous is None for e in examples])
    features = store_features(store.only(keep), cfg.site)  # as the study's probes read it
    candidates = [p for p in EXACT if p in features.positions]
    times: dict[str, list[float]] = {"sweep": [], "nested": []}
    picks = []
    for _ in range(2):
        t = time.perf_counter()
        sweep(features, y, groups, folds=cfg.folds, seed=cfg.seed, c=cfg.probe_c)
        times["sweep"].append(time.perf_counter() - t)
        t = time.perf_counter()
        loose = nested_mod.nested(features, y, groups, candidates, cfg.cv)
        times["nested"].append(time.perf_counter() - t)
        assert loose is not None
        picks = loose.result.picks
    tol = nested_mod.INNER_TOL
    nested_mod.INNER_TOL = 1e-4
    t = time.perf_counter()
    tight = nested_mod.nested(features, y, groups, candidates, cfg.cv)
    tight_s = time.perf_counter() - t
    nested_mod.INNER_TOL = tol
    assert tight is not None and loose is not None
    same = sum(a == b for a, b in zip(picks, tight.result.picks, strict=True))
    return {
        "sweep_s": [round(x, 2) for x in times["sweep"]],
        "nested_s": [round(x, 2) for x in times["nested"]],
        "nested_vs_sweep": round(min(times["nested"]) / min(times["sweep"]), 4),
        "inner_tol": tol,
        "nested_auc": round(loose.result.auc or float("nan"), 4),
        "picks": [f"{c.position} L{c.layer}" for c in picks],
        "converged_inner_fits": {
            "seconds": round(tight_s, 2),
            "nested_auc": round(tight.result.auc or float("nan"), 4),
            "picks": [f"{c.position} L{c.layer}" for c in tight.result.picks],
            "same_picks": f"{same} of {len(picks)}",
        },
        "n_cells": loose.result.n_cells,
        "n_examples": len(examples),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", help="a finished default study (runs/demo); default: run one here")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "controls.json"))
    args = ap.parse_args()
    if args.run:
        run = RunDir(Path(args.run))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="halluscan-controls-"))
        run_study(StudyConfig(runs_dir=str(tmp), quiet=True))
        run = RunDir.named(DEMO, tmp)
    res = {
        "run": str(run.root),
        "study": study_shares(run),
        "again_on_its_store": rerun(run),
        "targets": {"controls_vs_rest_of_study": 0.05, "nested_vs_sweep": 0.25},
        "numpy": np.__version__,
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
