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
