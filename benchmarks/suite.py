"""The whole suite on the bundled model.

World-facts and the five LLMsKnow datasets, with baselines, no sampling.


Runs ``halluscan suite --n-questions N`` (p(True) included, as by default) in a fresh folder (the
LLMsKnow files from
``--data-dir``) and writes ``benchmarks/results/suite.json``: the whole wall time (``wall_s``),
each study's stage timings, p(True)'s time against each study's generation stage, and each
dataset's probe against its baselines.

    python benchmarks/suite.py --data-dir ../shared/data/llmsknow [--n-questions 300]
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
DATASETS = ["world-facts", "movies", "winobias", "winogrande", "mnli", "math"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--n-questions", type=int, default=300)
    ap.add_argument("--keep", help="keep the runs here (default: a temporary folder)")
    results = ROOT / "benchmarks" / "results"
    # the results file, not a run folder
    ap.add_argument("--out", default=str(results.joinpath("suite.json")))
    args = ap.parse_args()
    runs = Path(args.keep or tempfile.mkdtemp(prefix="suite-"))
    cmd = [
        sys.executable,
        "-m",
        "halluscan.cli",
        "suite",
        "--name",
        "suite",
        "--runs-dir",
        str(runs),
        "--quiet",
    ]
    cmd += [
        "--datasets",
        *DATASETS,
        "--n-questions",
        str(args.n_questions),
        "--data-dir",
        args.data_dir,
        "--p-true",
    ]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    root = RunDir.named("suite", runs)
    s = json.loads(root.suite_json.read_text())
    studies = {}
    for name in s["datasets"]:
        timings = json.loads(RunDir(root.root / name).metrics.read_text())["timings_s"]
        gen = timings.get("generate_extract", 0.0) - timings.get("given_answers_in_generation", 0.0)
        total = sum(v for k, v in timings.items() if k != "given_answers_in_generation")
        studies[name] = {
            "timings_s": timings,
            "study_s": round(total, 1),
            "p_true_vs_study": round(
                timings.get("p_true", 0.0) / (total - timings.get("p_true", 0.0)), 3
            ),
            "p_true_vs_generation": round(timings.get("p_true", 0.0) / gen, 3) if gen else None,
        }
    res = {
        "wall_s": round(wall, 1),
        "n_questions": args.n_questions,
        "studies": studies,
        "suite": s,
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(done.stdout)
    print(
        json.dumps(
            {"wall_s": res["wall_s"], "studies": {k: v["study_s"] for k, v in studies.items()}},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
