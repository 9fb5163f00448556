"""The given-answer bank on the bundled model's default study.

What it costs and how well it scores given answers.


Runs the default study (``halluscan run`` defaults: every world-facts question) twice in fresh
run folders, the same machine and one process each: without the given-answer bank
(``--no-given-bank``) and with it. Reports

- ``given_bank_pairs_auc`` / ``given_bank_pairs_ci95``: the given-answer bank on held-out
  world-facts pairs (gold + distractor of questions outside the probe's training folds), with the
  95 % interval over folds; ``own_bank_pairs_auc`` (+ CI): the own-answer bank on the same pairs,
  cross-fitted on the same folds; ``n`` (answers) and ``n_questions``;
- ``layer0_pairs_auc``: layer 0 on the pairs (the answer's identity alone: near 0.5 by design);
- ``wall_s_without`` / ``wall_s_with`` and ``given_bank_added_fraction`` (goal < 0.25);
- both banks on ``examples/true_false.jsonl`` (40 hand-written questions, one true and one false
  answer each, outside world-facts), through ``halluscan score --jsonl`` with labels.

Writes ``benchmarks/results/given_answers.json``.

    python benchmarks/given_answers.py [--n-questions 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from halluscan.study.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]


def study(runs: Path, name: str, n: int, given: bool) -> tuple[float, dict]:
    cmd = [
        sys.executable,
        "-m",
        "halluscan.cli",
        "run",
        "--name",
        name,
        "--runs-dir",
        str(runs),
        "--quiet",
    ]
    cmd += ["--n-questions", str(n), "--given-bank" if given else "--no-given-bank"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    return wall, json.loads(RunDir.named(name, runs).metrics.read_text())


def score_file(bank: Path, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "halluscan.cli",
        "score",
        "--jsonl",
        str(ROOT / "examples" / "true_false.jsonl"),
    ]
    subprocess.run(
        [*cmd, "--probes", str(bank), "--out", str(out), "--quiet"], check=True, capture_output=True
    )
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n-questions",
        type=int,
        default=0,
        help="0 = every world-facts question (the default study)",
    )
    ap.add_argument("--keep", help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "given_answers.json"))
    args = ap.parse_args()
    runs = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="given-"))
    t_without, _ = study(runs, "without", args.n_questions, False)
    t_with, m = study(runs, "with", args.n_questions, True)
    g = m["given_bank"]
    cross = g["cross"]
    res = {
        "given_bank_pairs_auc": cross["given_bank"]["given_pairs"]["auc"],
        "given_bank_pairs_ci95": cross["given_bank"]["given_pairs"]["ci95"],
        "own_bank_pairs_auc": cross["own_bank"]["given_pairs"]["auc"],
        "own_bank_pairs_ci95": cross["own_bank"]["given_pairs"]["ci95"],
        "n": g["n_answers"],
        "n_questions": g["n_questions"],
        "given_layer": g["best"]["layer"],
        "own_layer": cross["own_bank"]["given_pairs"]["layer"],
        "layer0_pairs_auc": g["layer0"]["auc"],
        "own_bank_own_answers_auc": cross["own_bank"]["own_answers"]["auc"],
        "given_bank_own_answers_auc": cross["given_bank"]["own_answers"]["auc"],
        "wall_s_without": round(t_without, 1),
        "wall_s_with": round(t_with, 1),
        "given_bank_added_fraction": round((t_with - t_without) / t_without, 3),
        "timings_s_with": m["timings_s"],
        "true_false_jsonl": {
            "given_bank": score_file(RunDir.named("with", runs).probes_given, runs / "score_given"),
            "own_bank": score_file(RunDir.named("with", runs).probes, runs / "score_own"),
        },
        "provenance": {
            k: m["provenance"][k] for k in ("model", "dataset", "versions") if k in m["provenance"]
        },
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in res.items() if k not in ("provenance", "timings_s_with")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
