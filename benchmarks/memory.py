"""Memory benchmark: peak RSS growth of scoring long answers and of extracting many examples.

Each measurement runs in a fresh child process: the model is loaded first, then the kernel's
high-water mark is reset (see ``rss.py``) and the work runs; the figure is the peak RSS during
the work minus the RSS before it. Model loading never hides growth, so these checks can fail.

- ``score_rss_growth_mb_<N>k_chars``: ``halluscan score --question Q --answer A`` (the CLI path:
  teacher forcing, attention received, score.json and all four figures) on answers of N
  thousand characters, bundled model, a probe bank of the model's width. Goal: under 1,500 MB
  at 20,000 characters, and growth no faster than linear in the answer's length.
- ``extraction_rss_growth_ratio_4000_vs_500``: growth while extracting 4,000 examples into a
  store over growth for 500. Goal: at most 1.10 (memory does not grow with N). The 4,000 are
  the 500 eight times over, under new ids: the same sequence lengths, so the same longest
  batch. (Drawn independently, 4,000 questions include longer prompts than 500 do, and the
  longest batch, not N, sets the peak: a 2,000-example run's RSS climbs with the length-sorted
  batches and stays flat when the lengths repeat.)

- ``overlong_row``: ``halluscan run`` on a CSV whose one row is 2 MB of text (about 500,000
  tokens against SmolLM2's 8,192), padded with 3 ordinary rows, in a fresh process: its exit
  code, its stderr (one line), whether a run folder was left behind, and the process's peak
  RSS (``ru_maxrss``, model load included). Goal: exit 2, one line, no folder, under 2,048 MB.

Writes benchmarks/results/memory.json (``--parts`` measures some parts and keeps the others'
figures from the last run).

    python benchmarks/memory.py [--chars 5000 20000] [--extract 500 4000] [--parts overlong]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rss import run_child

SCORE_CHILD = """
import json, tempfile, pathlib, torch
import halluscan.models
from halluscan.cli import main
from halluscan.data import build_world_facts
from halluscan.models import load_model
from halluscan.probes.bank import ProbeBank
from rss import PeakRSS

lm = load_model("smollm2")
n = lm.n_layers + 1
d = lm.hidden_size
g = torch.Generator().manual_seed(0)
bank = ProbeBank(list(range(n)), "exact_answer_last", torch.randn(n, d, generator=g) / d**0.5,
torch.zeros(n),
                 torch.zeros(n, d), torch.ones(n, d), {{"best_layer": n - 1, "hidden": d}})
tmp = pathlib.Path(tempfile.mkdtemp())
bank.save(tmp / "bank")
facts = [f"The answer to '{{q.question}}' is {{q.answer}}." for q in build_world_facts().questions]
answer = ""
while len(answer) < {chars}:
    answer += facts[len(answer) % len(facts)] + " "
answer = answer[:{chars}].strip()
halluscan.models.load_model = lambda *a, **k: lm  # the model is loaded once, before the measurement
args = ["score", "--question", "Tell me about the world.", "--answer", answer, "--probes", str(tmp
/ "bank"),
        "--out", str(tmp / "out"), "--quiet"]
with PeakRSS() as m:
    code = main(args)
tokens = len(lm.tokenizer(answer, add_special_tokens=False).input_ids)
print(json.dumps({{"chars": len(answer), "tokens": tokens, "exit_code": code, **m.to_json()}}))
"""

EXTRACT_CHILD = """
import json, tempfile, pathlib, shutil
from dataclasses import replace
from extraction import make_items, run_halluscan
from halluscan.models import load_model
from rss import PeakRSS

lm = load_model("smollm2")
base = make_items(lm, {base}, seed=1)
items = [replace(it, qid=f"{{k}}-{{it.qid}}") for k in range({n} // {base}) for it in base]
d = pathlib.Path(tempfile.mkdtemp())
with PeakRSS() as m:
    secs = run_halluscan(lm, items, {bs}, d / "s")
shutil.rmtree(d)
tokens = sum(len(i.ids) for i in items)
print(json.dumps({{"n": {n}, "seconds": secs, "tokens": tokens, **m.to_json()}}))
"""


def overlong_row(tmp: Path) -> dict:
    """``halluscan run`` on a 2 MB row: exit code, stderr, folder left, peak RSS of the process."""
    import resource
    import subprocess
    import sys

    csv = tmp / "long.csv"
    rows = ["What is the capital of Peru?,Lima", "What is the capital of Chad?,N'Djamena"]
    rows += ["What is the capital of Fiji?,Suva"]
    rows.insert(1, "Tell me: " + "the quick brown fox jumps over the lazy dog " * 48_000 + "?,X")
    csv.write_text("question,answer\n" + "\n".join(rows) + "\n")
    exe = str(Path(sys.executable).parent / "halluscan")  # the console script, as a user runs it
    cmd = [exe, "run", "--dataset", str(csv), "--folds", "2"]
    out = subprocess.run(
        [*cmd, "--runs-dir", str(tmp / "runs"), "--quiet"], capture_output=True, text=True
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    err = out.stderr.strip()
    return {
        "row_chars": len(rows[1]),
        "exit_code": out.returncode,
        "stderr": err,
        "stderr_lines": len(err.splitlines()),
        "run_folder_left": (tmp / "runs").exists(),
        "peak_rss_mb": round(peak, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chars", type=int, nargs="*", default=[5000, 20000])
    ap.add_argument("--extract", type=int, nargs=2, default=[500, 4000])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.json"))
    ap.add_argument(
        "--parts", nargs="*", default=["score", "extraction", "overlong"], help="what to measure"
    )
    args = ap.parse_args()
    out = Path(args.out)
    res: dict = json.loads(out.read_text()) if out.is_file() else {}
    if "overlong" in args.parts:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            res["overlong_row"] = r = overlong_row(Path(tmp))
        print(
            f"over-long row ({r['row_chars']:,} chars): exit {r['exit_code']}, "
            f"{r['stderr_lines']} line(s), folder left: {r['run_folder_left']}, peak RSS "
            f"{r['peak_rss_mb']:.0f} MB\n  {r['stderr']}"
        )
    if "score" in args.parts:
        score(args, res)
    if "extraction" in args.parts:
        extraction(args, res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


def score(args: argparse.Namespace, res: dict) -> None:
    """Peak RSS growth of ``halluscan score`` on long answers."""
    res["score"] = {}
    for chars in args.chars:
        r = run_child(SCORE_CHILD.format(chars=chars))
        assert r["exit_code"] == 0, r
        res["score"][str(chars)] = r
        res[f"score_rss_growth_mb_{chars // 1000}k_chars"] = r["growth_mb"]
        print(
            f"score, {r['chars']} chars ({r['tokens']} tokens): peak RSS growth "
            f"{r['growth_mb']:.0f} MB"
        )
    if len(args.chars) >= 2:
        lo, hi = (res["score"][str(c)] for c in (min(args.chars), max(args.chars)))
        res["score_growth_ratio_vs_length_ratio"] = (hi["growth_mb"] / lo["growth_mb"]) / (
            hi["tokens"] / lo["tokens"]
        )
        print(
            f"score growth ratio / length ratio: {res['score_growth_ratio_vs_length_ratio']:.2f} "
            "(1 = linear)"
        )


def extraction(args: argparse.Namespace, res: dict) -> None:
    """Peak RSS growth of extracting N examples against N/8."""
    lo = min(args.extract)
    small, large = (
        run_child(EXTRACT_CHILD.format(n=n, base=lo, bs=args.batch_size)) for n in args.extract
    )
    res["extraction"] = {str(small["n"]): small, str(large["n"]): large}
    ratio = large["growth_mb"] / small["growth_mb"]
    res[f"extraction_rss_growth_ratio_{large['n']}_vs_{small['n']}"] = ratio
    print(
        f"extraction: growth {small['growth_mb']:.0f} MB for {small['n']}, "
        f"{large['growth_mb']:.0f} MB for {large['n']} (ratio {ratio:.3f})"
    )


if __name__ == "__main__":
    main()
