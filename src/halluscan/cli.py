"""The ``halluscan`` console script."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
