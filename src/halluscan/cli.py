"""The ``halluscan`` console script."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import numpy as np

from halluscan.config import add_config_flags, config_from_args
from halluscan.errors import HalluscanError


def _summary(m: dict) -> str:
    f, c, ea = m["finding"], m["controls"], m["exact_answer_found"]
    last_q = m["best_cells"].get("last_q", {}).get("auc", float("nan"))
    lines = [
        f"graded {m['n_graded']} questions, accuracy {m['accuracy']:.3f}",
        "accuracy by relation: " + ", ".join(f"{r} {a:.2f}" for r, a in m["accuracy_by_relation"].items()),
        f"exact answer found: correct {ea['correct']:.3f}, wrong {ea['wrong']:.3f}; "
        f"locator agreement on correct {m['locator_agreement_correct']:.3f}",
        f"best exact-answer cell: {f['best_exact_position']} layer {f['best_exact_layer']} "
        f"AUC {f['best_exact_auc']:.3f}; best last_q AUC {last_q:.3f}",
        f"controls: relation only {c['relation_prior_auc']:.3f}, "
        f"layer 0 at exact-answer positions {c['layer0_exact_auc']:.3f}",
        "timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in m["timings_s"].items()),
    ]
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a study and print its headline numbers."""
    from pathlib import Path

    from transformers.utils import logging as hf_logging

    from halluscan.pipeline import run_study

    hf_logging.disable_progress_bar()  # its per-load weight bar is noise next to ours
    cfg = config_from_args(args)
    m = run_study(cfg)
    out = Path(cfg.runs_dir) / cfg.name
    print(_summary(m))
    print(f"wrote {out / 'report.html'}, {out / 'metrics.json'}, {out / 'heatmap.png'}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Train on one run, test on another (heatmap on the test run), or a matrix over several runs."""
    from pathlib import Path

    from halluscan import plots
    from halluscan.store import atomic_write_json
    from halluscan.transfer import run_dir_store, transfer_auc, transfer_matrix

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.runs:
        res = transfer_matrix(args.runs, args.site, args.c)
        m = res["best_auc"]
        atomic_write_json(out / "transfer_matrix.json", {"runs": args.runs, "best_auc": m.tolist(),
                                                         "rows": "train", "columns": "test"})  # fmt: skip
        print("best-cell AUC (rows: train, columns: test)")
        for name, row in zip(args.runs, m, strict=True):
            print(f"{name:>30}  " + "  ".join(f"{v:.3f}" for v in row))
        return 0
    if not (args.train and args.test):
        raise HalluscanError("probe: give --train RUN and --test RUN, or --runs RUN RUN ...")
    res = transfer_auc(run_dir_store(args.train), run_dir_store(args.test), args.site, args.c)
    title = f"probes trained on {args.train}, tested on {args.test}"
    plots.heatmap_png(res["auc"], res["layers"], res["positions"], out / "transfer_heatmap.png", title)
    std = res["auc"] * 0
    n = [0] * len(res["positions"])
    plots.heatmap_html(plots.heatmap_figure(res["auc"], std, n, res["layers"], res["positions"], title),
                       out / "transfer_heatmap.html")  # fmt: skip
    atomic_write_json(out / "transfer.json", {"train": args.train, "test": args.test, "layers": res["layers"],
                                              "positions": res["positions"], "auc": res["auc"].tolist()})  # fmt: skip
    j = int(np.nanargmax(np.nan_to_num(res["auc"], nan=-1)))
    layer, pos = res["layers"][j // len(res["positions"])], res["positions"][j % len(res["positions"])]
    print(f"best cell on {args.test}: {pos} layer {layer} AUC {np.nanmax(res['auc']):.3f}; wrote {out}")
    return 0


def _default_bank(model: str, runs_dir: str, quiet: bool) -> str:
    """The probe bank of the default study for ``model``; runs that study first when there is none."""
    from pathlib import Path

    from halluscan.config import StudyConfig
    from halluscan.pipeline import run_study

    name = StudyConfig().name
    if model != StudyConfig().model:
        name = "default-" + "".join(ch if ch.isalnum() else "-" for ch in Path(model).name)[:60]
    cfg = StudyConfig(model=model, runs_dir=runs_dir, quiet=quiet, name=name)
    folder = Path(cfg.runs_dir) / cfg.name / "probes"
    if not (folder / "probes.json").is_file():
        print(f"halluscan: no probe bank at {folder}; running the default study for {model} first "
              f"(`halluscan run --name {cfg.name}`, a few minutes on the bundled model)", file=sys.stderr)  # fmt: skip
        run_study(cfg)
    return str(folder)


def _read_answers(path: str) -> list[dict]:
    """Rows of {question, answer?, relation?, id?} from a JSONL or CSV file, checked."""
    from halluscan.data import read_table

    rows = read_table(path, required=("question",))
    for i, row in enumerate(rows, start=1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise HalluscanError(f'{path}: row {i} needs a non-empty "question" string (and optionally "answer")')
        for key in ("answer", "relation"):
            if row.get(key) not in (None, "") and not isinstance(row[key], str):
                raise HalluscanError(f'{path}: row {i}: "{key}" must be a string')
    return rows


def cmd_score(args: argparse.Namespace) -> int:
    """Score one answer (given, or generated first) or a JSONL of them; write score.json and figures."""
    import json
    from pathlib import Path

    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    from halluscan.models import load_model
    from halluscan.probes import ProbeBank
    from halluscan.scan import Scanner
    from halluscan.store import atomic_write_json, atomic_write_text

    hf_logging.disable_progress_bar()
    if not args.question and not args.jsonl:
        raise HalluscanError("score: give --question Q (with --answer A to score a given answer) or --jsonl FILE")
    rows = _read_answers(args.jsonl) if args.jsonl else None
    probes = args.probes or _default_bank(args.model, args.runs_dir, args.quiet)
    bank = ProbeBank.load(probes)
    lm = load_model(args.model)
    try:
        query = None if args.query == "later" else int(args.query)
    except ValueError:
        raise HalluscanError(
            f"--query {args.query!r}: give 'later' (mean over later tokens) or a token index such as -1"
        ) from None
    scanner = Scanner(lm, bank, layer=args.layer, standardise=args.standardise, query=query)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HalluscanError(f"cannot create {out}: {e.strerror or e}; choose another --out") from e
    if rows is not None:
        given = [(i, r) for i, r in enumerate(rows) if (r.get("answer") or "").strip()]
        results: list = [None] * len(rows)
        bar = tqdm(total=len(rows), desc="score", unit="answer", disable=args.quiet)
        tok = lm.tokenizer
        items = [(r["question"], tok(r["answer"], add_special_tokens=False).input_ids, (r.get("relation") or "custom"))
                 for _, r in given]  # fmt: skip
        for (i, _), res in zip(given, scanner.score_many(items, progress=bar.update), strict=True):
            results[i] = res
        for i, r in enumerate(rows):
            if results[i] is None:
                results[i] = scanner.score(r["question"], relation=(r.get("relation") or "custom"))
                bar.update(1)
        bar.close()
        lines = [
            json.dumps({"id": r.get("id", i), **res.to_json()})
            for i, (r, res) in enumerate(zip(rows, results, strict=True))
        ]
        atomic_write_text(out / "scores.jsonl", "\n".join(lines) + "\n")
        n_wrong = sum(res.verdict == "hallucinated" for res in results)
        print(f"scored {len(rows)} answers: {n_wrong} flagged hallucinated; wrote {out / 'scores.jsonl'}")
        return 0
    if args.stream and args.answer is None:
        ids = []
        for step in scanner.stream(args.question):
            ids.append(step.token_id)
            print(f"{step.token:>16}  p(wrong) {step.p_wrong:.2f}", flush=True)
        res = scanner.score_ids(args.question, ids, relation=args.relation, generated=True)
    else:
        res = scanner.score(args.question, args.answer, relation=args.relation)
    atomic_write_json(out / "score.json", res.to_json())
    files = res.save_activity(out) + res.save_attention(out)
    where = f"at {res.exact_answer!r}" if res.exact_answer else "at the last token (no exact answer found)"
    print(f"answer: {res.response}")
    print(f"verdict: {res.verdict} (p_wrong {res.p_wrong:.3f}; probe layer {res.verdict_layer} {where})")
    print(f"wrote {out / 'score.json'}, " + ", ".join(str(f) for f in files))
    return 0


def cmd_choose(args: argparse.Namespace) -> int:
    """Answer choice on a study's held-out questions: greedy vs majority vote vs the probe's pick."""
    from transformers.utils import logging as hf_logging

    from halluscan.choice import answer_choice

    hf_logging.disable_progress_bar()
    r = answer_choice(args.run, samples=args.samples, n_test=args.questions, temperature=args.temperature,
                      seed=args.seed, quiet=args.quiet)  # fmt: skip
    a = r["accuracy"]
    print(f"{r['n_questions']} held-out questions, {r['samples']} samples each (temperature {r['temperature']}), "
          f"probe layer {r['probe_layer']} trained on {r['n_train_examples']} other examples")  # fmt: skip
    for k in ("greedy", "majority", "probe", "oracle", "sample_mean"):
        print(f"  {k:<12} accuracy {a[k]:.3f}")
    for k in ("probe_minus_greedy", "probe_minus_majority"):
        lo, hi = r[k]["ci95"]
        print(f"  {k:<21} {r[k]['mean']:+.3f} (95 % bootstrap {lo:+.3f} to {hi:+.3f})")
    print(f"wrote {args.run}/answer_choice.json")
    return 0


def cmd_positions(_args: argparse.Namespace) -> int:
    """List the valid position names."""
    from halluscan.positions import VALID

    print("\n".join(VALID))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    p = argparse.ArgumentParser(prog="halluscan", description="Find hallucinations by reading a model's hidden states.")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="generate, grade, extract, probe and write a report")
    add_config_flags(run)
    run.set_defaults(func=cmd_run)
    probe = sub.add_parser("probe", help="train probes on one run and test them on another (or a matrix of runs)")
    probe.add_argument("--train", help="run folder (runs/NAME) whose examples train the probes")
    probe.add_argument("--test", help="run folder whose examples test them")
    probe.add_argument("--runs", nargs="+", help="several run folders: best-cell AUC for every train/test pair")
    probe.add_argument("--site", default="residual", help="activation site (default: residual)")
    probe.add_argument("--c", type=float, default=0.05, help="inverse L2 strength (default: 0.05)")
    probe.add_argument("--out", default="runs/transfer", help="output folder (default: runs/transfer)")
    probe.set_defaults(func=cmd_probe)
    sc = sub.add_parser("score", help="score an answer token by token and layer by layer (writes score.json + figures)")
    sc.add_argument("--question", help="the question")
    sc.add_argument("--answer", help="the answer to score (teacher forcing); leave out to generate one")
    sc.add_argument("--relation", default="custom", help="world-facts relation, helps locate the exact answer")
    sc.add_argument("--jsonl", help="score a JSONL (or CSV) of {question, answer?, relation?, id?} rows in batches")
    sc.add_argument("--model", default="smollm2", help="model (default: the bundled smollm2)")
    sc.add_argument(
        "--probes",
        help="probe bank folder (default: RUNS_DIR/demo/probes for the bundled model, "
        "RUNS_DIR/default-MODEL/probes for another; made by running that study when missing)",
    )
    sc.add_argument("--runs-dir", default="runs", help="where the default study lives (default: runs)")
    sc.add_argument("--layer", type=int, help="probe layer for the verdict (default: the study's best layer)")
    sc.add_argument("--standardise", action="store_true", help="activity as z-scores per layer (training set)")
    sc.add_argument("--query", default="later", help="attention from 'later' tokens (mean) or one token index, e.g. -1")
    sc.add_argument("--stream", action="store_true", help="print each generated token and its score as it appears")
    sc.add_argument("--out", default="runs/score", help="output folder (default: runs/score)")
    sc.add_argument("--quiet", action="store_true", help="no progress bars")
    sc.set_defaults(func=cmd_score)
    ch = sub.add_parser("choose", help="sample answers to held-out questions; compare the probe's pick with greedy")
    ch.add_argument("--run", default="runs/demo", help="a finished study folder (default: runs/demo)")
    ch.add_argument("--samples", type=int, default=5, help="sampled answers per question (default: 5)")
    ch.add_argument("--questions", type=int, default=300, help="held-out questions (default: 300)")
    ch.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    ch.add_argument("--seed", type=int, default=0, help="seed of the split and the sampling (default: 0)")
    ch.add_argument("--quiet", action="store_true", help="no progress bars")
    ch.set_defaults(func=cmd_choose)
    pos = sub.add_parser("positions", help="list the named token positions")
    pos.set_defaults(func=cmd_positions)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input ends with one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="halluscan: %(message)s")
    for noisy in ("transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except HalluscanError as e:
        print(f"halluscan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("halluscan: interrupted; completed batches are kept and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
