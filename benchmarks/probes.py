"""Probe-sweep benchmark: halluscan's batched sweep vs scikit-learn fitted cell by cell.

On a study's stored activations (default ``runs/demo``: the bundled model, 1,550 world-facts
questions, residual stream at 31 layers x 15 positions), with the same 5 question-grouped
folds per position:

- ``halluscan``: :func:`halluscan.probes.cv_auc` for each position (every layer and fold at
  once), timed over ``--repeats`` rounds (one before sklearn, the rest after); the speedup
  uses the mean round, not the best;
- ``sklearn``: for every (layer, position) cell and fold, ``StandardScaler`` +
  ``LogisticRegression(C, max_iter=1000)`` (lbfgs, tol 1e-4), one fit after another, in a
  child process that never imports torch (so the two BLAS/OpenMP runtimes do not compete).

Both get the same float32 arrays in memory; reading the store is timed on its own. Wall-clock
and CPU seconds (``time.process_time``, all threads) are both kept: on a shared machine the
CPU-time ratio is the one that other load does not move. Writes
``benchmarks/results/probes.json`` with ``speedup_vs_sklearn``, ``max_abs_auc_diff`` (over
every cell and fold), ``n_examples``, ``n_cells`` and the raw seconds.

    python benchmarks/probes.py [--run runs/demo] [--positions a,b] [--layers 0,15,30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import warnings
from sklearn.exceptions import ConvergenceWarning

folder, c = sys.argv[1], float(sys.argv[2])
job = json.load(open(f"{folder}/job.json"))
out, not_converged, t_fit, cpu_fit = {}, 0, 0.0, 0.0
for pos in job["positions"]:
    x = np.load(f"{folder}/{pos}.npy", mmap_mode="r")  # [n, layer, d]
    y = np.load(f"{folder}/{pos}.y.npy")
    splits = job["splits"][pos]
    aucs = np.zeros((len(splits), len(job["layers"])))
    for li, layer in enumerate(job["layers"]):
        X = np.ascontiguousarray(x[:, layer])
        for f, (tr, te) in enumerate(splits):
            t, c0 = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                try:
                    logreg = LogisticRegression(C=c, max_iter=1000)
                    model = make_pipeline(StandardScaler(), logreg).fit(X[tr], y[tr])
                except ConvergenceWarning:
                    not_converged += 1
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    logreg = LogisticRegression(C=c, max_iter=1000)
                    model = make_pipeline(StandardScaler(), logreg).fit(X[tr], y[tr])
            s = model.decision_function(X[te])
            t_fit += time.perf_counter() - t
            cpu_fit += time.process_time() - c0
            aucs[f, li] = roc_auc_score(y[te], s)
    out[pos] = aucs.tolist()
    print(f"sklearn: {pos} done, {t_fit:.0f} s so far", file=sys.stderr, flush=True)
result = {"auc": out, "seconds": t_fit, "cpu_seconds": cpu_fit, "not_converged": not_converged}
json.dump(result, open(f"{folder}/sklearn.json", "w"))
"""


def run_sklearn(data: dict, positions: list[str], n_layers: int, args: argparse.Namespace) -> dict:
    """Fit sklearn cell by cell in a child process; return its AUCs and fit seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        for pos, (x, y, _) in data.items():
            np.save(f"{tmp}/{pos}.npy", x.numpy())
            np.save(f"{tmp}/{pos}.y.npy", y)
        splits_json = {p: [[tr.tolist(), te.tolist()] for tr, te in v[2]] for p, v in data.items()}
        job = {"positions": positions, "layers": list(range(n_layers)), "splits": splits_json}
        Path(tmp, "job.json").write_text(json.dumps(job))
        print(
            f"sklearn: {len(positions) * n_layers * args.folds} fits, one after another (a child "
            "process)"
        )
        subprocess.run([sys.executable, "-c", CHILD, tmp, str(args.c)], check=True)
        return json.loads(Path(tmp, "sklearn.json").read_text())


def main() -> None:
    from halluscan.study.runs import RunDir

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--run",
        default=str(RunDir.named("demo").root),
        help="a study's run folder or a store folder",
    )
    ap.add_argument(
        "--positions", default="", help="comma-separated subset of positions (default: all)"
    )
    ap.add_argument("--layers", default="", help="comma-separated subset of layers (default: all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--c",
        type=float,
        default=0.05,
        help="inverse regularisation strength (halluscan's default)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="halluscan rounds: one before sklearn, the rest after",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "probes.json"))
    args = ap.parse_args()

    import torch

    from halluscan.probes import cv_auc, folds_for, wrong_labels
    from halluscan.study.runs import study_examples

    store = RunDir(Path(args.run)).open_store()
    examples = study_examples(store)
    positions = args.positions.split(",") if args.positions else store.positions
    all_layers = store.layers()
    layers = [int(v) for v in args.layers.split(",")] if args.layers else all_layers
    li = [all_layers.index(v) for v in layers]
    y_all = wrong_labels(examples)
    g_all = np.array([e.qid for e in examples])
    valid = store.valid()

    t0 = time.perf_counter()
    data = {}
    for pos in positions:
        keep = valid[:, store.positions.index(pos)]
        x = store.position(pos)[torch.from_numpy(keep)][:, li].contiguous()  # [n, layer, d] float32
        y = y_all[keep]
        data[pos] = (x, y, folds_for(y, g_all[keep], args.folds, args.seed))
    load_s = time.perf_counter() - t0
    n_examples = max(len(v[1]) for v in data.values())
    print(
        f"loaded {len(positions)} positions x {len(layers)} layers, {n_examples} examples, in "
        f"{load_s:.1f} s"
    )

    rounds: list[float] = []
    cpu_rounds: list[float] = []
    ours: dict[str, np.ndarray] = {}
    sk: dict = {}
    # rounds before and after sklearn, so both see the same machine
    for r in range(max(args.repeats, 1)):
        t, c0 = time.perf_counter(), time.process_time()
        for pos, (x, y, splits) in data.items():
            ours[pos] = cv_auc(x, y, splits, args.c)  # [fold, layer]
        rounds.append(time.perf_counter() - t)
        cpu_rounds.append(time.process_time() - c0)
        print(f"halluscan sweep round {r + 1}: {rounds[-1]:.2f} s")
        if r == 0:
            sk = run_sklearn(data, positions, len(layers), args)

    diffs = np.concatenate([np.abs(ours[p] - np.array(sk["auc"][p])).ravel() for p in positions])
    mean_round = float(np.mean(rounds))
    result = {
        "speedup_vs_sklearn": sk["seconds"] / mean_round,
        "speedup_vs_sklearn_cpu_time": sk["cpu_seconds"] / float(np.mean(cpu_rounds)),
        "max_abs_auc_diff": float(np.nanmax(diffs)),
        "mean_abs_auc_diff": float(np.nanmean(diffs)),
        "n_examples": n_examples,
        "n_cells": len(positions) * len(layers),
        "n_fits": len(positions) * len(layers) * args.folds,
        "folds": args.folds,
        "c": args.c,
        "halluscan_seconds": mean_round,
        "halluscan_seconds_rounds": rounds,
        "halluscan_cpu_seconds_rounds": cpu_rounds,
        "sklearn_seconds": sk["seconds"],
        "sklearn_cpu_seconds": sk["cpu_seconds"],
        "sklearn_not_converged": sk["not_converged"],
        "load_seconds": load_s,
        "best_cell_auc": {p: float(ours[p].mean(0).max()) for p in positions},
        "provenance": {
            "store": str(store.root),
            "model": store.provenance.get("model"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"speedup {result['speedup_vs_sklearn']:.1f}x (sklearn {sk['seconds']:.1f} s, halluscan "
        f"{mean_round:.2f} s), max |AUC diff| {result['max_abs_auc_diff']:.4f} over "
        f"{result['n_fits']} fold fits; wrote {out}"
    )


if __name__ == "__main__":
    main()
