"""Does per-response scoring agree with the probe sweep? (`halluscan score` vs the sweep's cell)

For each of the sweep's 5 folds at ``exact_answer_last`` (the same question-grouped splits):
fit a probe bank on the fold's training examples, write the held-out examples (question, the
model's own answer text, relation) to a JSONL file, and score them with the CLI,
``halluscan score --jsonl ... --probes BANK --layer L`` (teacher forcing, the scanner's own
exact-answer locator, L = the sweep's best layer there). The AUC of the CLI's ``p_wrong`` on
each held-out fold is compared with the sweep's AUC for the same fold and cell.

Writes ``benchmarks/results/score_agreement.json``.

    python benchmarks/score_agreement.py [--run runs/demo]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from halluscan.study.runs import RunDir

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", default=str(RunDir.named("demo").root), help="a finished study folder")
    ap.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "score_agreement.json")
    )
    args = ap.parse_args()

    from halluscan.cli import main as cli
    from halluscan.probes import ProbeBank, auc_rows, cv_auc, folds_for, wrong_labels
    from halluscan.study import runs

    run = RunDir(Path(args.run))
    store = run.open_store()
    metrics = json.loads(run.metrics.read_text())
    cfg = runs.stored_config(store)
    pos = "exact_answer_last"
    layer = int(metrics["best_cells"][pos]["layer"])
    ex = runs.study_examples(store)
    keep = store.valid()[:, store.positions.index(pos)]
    sub = [e for e, k in zip(ex, keep, strict=True) if k]
    y = wrong_labels(sub)
    x = store.position(pos)[torch.from_numpy(keep)]
    splits = folds_for(y, [e.qid for e in sub], cfg.folds, cfg.seed)
    # [fold] at (layer, pos)
    sweep = cv_auc(x, y, splits, cfg.probe_c)[:, store.layers().index(layer)]

    t0 = time.perf_counter()
    folds, same_token = [], 0
    meta = runs.bank_meta(cfg, store.provenance, layer)
    with tempfile.TemporaryDirectory() as tmp:
        for f, (tr, te) in enumerate(splits):
            bank_dir = Path(tmp, f"bank{f}")
            ProbeBank.fit(x[tr], y[tr], store.layers(), pos, c=cfg.probe_c, meta=meta).save(
                bank_dir
            )
            rows = Path(tmp, f"fold{f}.jsonl")
            lines = [
                {
                    "id": sub[i].qid,
                    "question": sub[i].question,
                    "answer": sub[i].response,
                    "relation": sub[i].relation,
                }
                for i in te
            ]
            rows.write_text("".join(json.dumps(line) + "\n" for line in lines))
            out = Path(tmp, f"scores{f}")
            args_score = [
                "--probes",
                str(bank_dir),
                "--layer",
                str(layer),
                "--model",
                cfg.model,
                "--out",
                str(out),
            ]
            if cli(["score", "--jsonl", str(rows), *args_score, "--quiet"]) != 0:
                raise SystemExit(f"halluscan score failed on fold {f}")
            scored = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
            p = np.array([s["p_wrong"] for s in scored])
            auc = float(auc_rows(p[None], y[te])[0])
            for s, i in zip(scored, te, strict=True):
                stored = sub[i].positions[pos] - sub[i].n_prompt
                same_token += int(s["verdict_position"] == pos and s["verdict_token"] == stored)
            folds.append({"fold": f, "n": len(te), "score_auc": auc, "sweep_auc": float(sweep[f])})
            print(
                f"fold {f}: halluscan score AUC {auc:.4f}, sweep cell AUC {sweep[f]:.4f} "
                f"(n={len(te)})"
            )
    score_mean = float(np.mean([r["score_auc"] for r in folds]))
    result = {
        "position": pos,
        "layer": layer,
        "folds": folds,
        "score_auc_mean": score_mean,
        "sweep_auc_mean": float(sweep.mean()),
        "abs_diff_mean": abs(score_mean - float(sweep.mean())),
        "max_abs_diff_per_fold": max(abs(r["score_auc"] - r["sweep_auc"]) for r in folds),
        "same_verdict_token_fraction": same_token / len(sub),
        "n_examples": len(sub),
        "seconds": time.perf_counter() - t0,
        "run": str(run.root),
        "model": cfg.model,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"mean AUC: halluscan score {score_mean:.4f} vs sweep {sweep.mean():.4f} (|diff| "
        f"{result['abs_diff_mean']:.4f}); same verdict token "
        f"{result['same_verdict_token_fraction']:.3f}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
