"""The ``halluscan`` console script.

Its parser and entry point (the commands live in the sibling modules).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from halluscan import progress
from halluscan.cli.detect import add_detect_command
from halluscan.cli.probe import cmd_probe
from halluscan.cli.score import cmd_score
from halluscan.cli.serve import add_serve_command
from halluscan.cli.study import (
    cmd_audit,
    cmd_choose,
    cmd_data,
    cmd_positions,
    cmd_run,
    cmd_suite,
)
from halluscan.errors import HalluscanError
from halluscan.models.sites import RESIDUAL
from halluscan.study.config import DEMO, StudyConfig
from halluscan.study.flags import add_config_flags
from halluscan.study.runs import RUNS_DIR, output_dir


def add_device_flags(p: argparse.ArgumentParser, model: bool = True) -> None:
    """``--device`` (and ``--dtype`` for commands that load the model), as ``run`` has them."""
    p.add_argument(
        "--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N"
    )
    if model:
        p.add_argument(
            "--dtype",
            default="auto",
            help="auto (bfloat16 on a GPU, float32 on CPU), float32, bfloat16, float16",
        )


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag or value reported in one line (and exit code 2)."""

    def error(self, message: str) -> Any:  # noqa: D102
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands, each with a description and examples."""
    from halluscan.cli.helptext import HELP
    from halluscan.provenance import package_version

    p = Parser(
        prog="halluscan", description="Find hallucinations by reading a model's hidden states."
    )
    p.add_argument("--version", action="version", version=f"halluscan {package_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (
        _study_commands,
        _probe_command,
        add_detect_command,
        add_serve_command,
        _score_command,
        _choose_command,
        _data_commands,
    ):
        add(sub)
    for name, cmd in sub.choices.items():
        text, cmd.epilog = HELP[name]
        cmd.description = textwrap.fill(text, 79)
        cmd.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def _model_command(p: argparse.ArgumentParser, func: Any) -> None:
    """What every command that loads a model has: ``--quiet``, ``--device`` and ``--dtype``."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_progress_flag(p)
    add_device_flags(p)
    p.set_defaults(func=func, loads_model=True)


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    """``--progress``: how progress shows (a bar on a terminal, lines in a log file)."""
    p.add_argument(
        "--progress",
        choices=progress.MODES,
        default=None,
        help="bar: tqdm's bar; lines: a plain line every 30 s (for log files); off; auto (the "
        "default, or $HALLUSCAN_PROGRESS): a bar on a terminal, lines otherwise",
    )


def _study_commands(sub: Any) -> None:
    """``run`` and ``suite``: every config key as a flag."""
    run = sub.add_parser("run", help="generate, grade, extract, probe and write a report")
    add_config_flags(run)
    add_progress_flag(run)
    run.set_defaults(func=cmd_run, loads_model=True)
    suite = sub.add_parser(
        "suite", help="a study per dataset on one model: probe vs baselines, and transfer"
    )
    add_config_flags(suite, skip=("dataset",))
    add_progress_flag(suite)
    suite.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help="world-facts, movies, winobias, winogrande, mnli, math or files",
    )
    suite.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="several models: a suite each, side by side in RUNS_DIR/NAME/grid.html (e.g. "
        "smollm2 gemma3-270m); default: --model alone",
    )
    suite.set_defaults(func=cmd_suite, loads_model=True)


def _probe_command(sub: Any) -> None:
    """``probe``: transfer between run folders."""
    probe = sub.add_parser(
        "probe", help="train probes on one run and test them on another (or a matrix of runs)"
    )
    probe.add_argument("--train", help="run folder (runs/NAME) whose examples train the probes")
    probe.add_argument("--test", help="run folder whose examples test them")
    probe.add_argument(
        "--runs",
        nargs="+",
        help="several run folders: for every train/test pair, the AUC at the training run's cell "
        "and its gain over the test run's logits",
    )
    probe.add_argument(
        "--site",
        default=RESIDUAL,
        choices=(RESIDUAL,),
        help="activation site (default: %(default)s)",
    )
    probe.add_argument(
        "--probe-c",
        dest="c",
        type=float,
        default=StudyConfig.probe_c,
        help="inverse L2 strength (default: %(default)s)",
    )
    probe.add_argument(
        "--out", default=output_dir("transfer"), help="output folder (default: %(default)s)"
    )
    add_device_flags(probe, model=False)  # where the probes are fitted
    probe.set_defaults(func=cmd_probe)


def _score_command(sub: Any) -> None:
    """``score``: one answer, or a file of them, token by token."""
    sc = sub.add_parser(
        "score",
        help="score an answer token by token and layer by layer (writes score.json + figures)",
    )
    sc.add_argument("--detector", help="also score with a `halluscan detect` detector folder")
    sc.add_argument("--question", help="the question")
    sc.add_argument(
        "--answer", help="the answer to score (teacher forcing); leave out to generate one"
    )
    sc.add_argument(
        "--relation", default="custom", help="world-facts relation, helps locate the exact answer"
    )
    sc.add_argument(
        "--jsonl",
        help="score a JSONL (or CSV) of {question, answer?, relation?, id?, label?} rows in "
        "batches (label: is the answer true, true/false or 1/0; gives an AUC)",
    )
    _model_source(sc)
    sc.add_argument(
        "--probes",
        help="probe bank folder (default: the default study's, RUNS_DIR/demo for the bundled "
        "model, RUNS_DIR/MODEL-world-facts for another; a missing one is refused with the "
        "command that makes it)",
    )
    sc.add_argument(
        "--bank",
        default="auto",
        choices=("auto", "own", "given"),
        help="auto (the given-answer bank for --answer / rows with an answer, the own-answer bank "
        "for generated answers), own or given: which bank of the default study scores "
        "(default: %(default)s)",
    )
    sc.add_argument(
        "--runs-dir", default=RUNS_DIR, help="where the default study lives (default: %(default)s)"
    )
    sc.add_argument(
        "--layer", type=int, help="probe layer for the verdict (default: the study's best layer)"
    )
    sc.add_argument(
        "--standardise", action="store_true", help="activity as z-scores per layer (training set)"
    )
    sc.add_argument(
        "--query",
        default="later",
        help="attention from 'later' tokens (mean) or one token index, e.g. -1",
    )
    sc.add_argument(
        "--stream",
        action="store_true",
        help="print each generated token and its score as it appears",
    )
    sc.add_argument(
        "--out",
        default=None,
        help="output folder (default: a new RUNS_DIR/score/DATE-TIME folder each time; an --out "
        "given is written over)",
    )
    _model_command(sc, cmd_score)


def _model_source(sc: argparse.ArgumentParser) -> None:
    """``--model``, ``--revision`` and ``--chat-template`` of ``score``."""
    sc.add_argument("--model", default="smollm2", help="model (default: the bundled smollm2)")
    sc.add_argument(
        "--revision", default="", help="a hub id's branch, tag or commit (hub ids only)"
    )
    sc.add_argument(
        "--chat-template",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: the tokenizer's template when it has one, else 'Q: ... A:'; on; off; it must "
        "match the bank's study (default: %(default)s)",
    )


def _choose_command(sub: Any) -> None:
    """``choose``: the probe picks among sampled answers."""
    ch = sub.add_parser(
        "choose", help="sample answers to held-out questions; compare the probe's pick with greedy"
    )
    ch.add_argument(
        "--run",
        default=output_dir(DEMO),
        help="a finished study folder (default: %(default)s)",
    )
    ch.add_argument(
        "--samples", type=int, default=5, help="sampled answers per question (default: 5)"
    )
    ch.add_argument("--questions", type=int, default=300, help="held-out questions (default: 300)")
    ch.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)"
    )
    ch.add_argument(
        "--seed", type=int, default=0, help="seed of the split and the sampling (default: 0)"
    )
    _model_command(ch, cmd_choose)


def _data_commands(sub: Any) -> None:
    """``data`` and ``positions``."""
    data = sub.add_parser(
        "data", help="get the datasets of the published study (LLMsKnow) into the cache"
    )
    data.add_argument("action", choices=["fetch"], help="fetch: download the files")
    data.add_argument("source", choices=["llmsknow"], help="which datasets")
    data.add_argument(
        "--dir", default="", help="where to put them (default: $HALLUSCAN_DATA, else the cache)"
    )
    data.set_defaults(func=cmd_data)
    pos = sub.add_parser("positions", help="list the named token positions")
    pos.set_defaults(func=cmd_positions)
    audit = sub.add_parser(
        "audit", help="check a study's grades by hand: write a sample to label, or read it back"
    )
    audit.add_argument("run", help="a finished study folder (runs/NAME)")
    audit.add_argument(
        "--n", type=int, default=50, help="answers to sample, half of each grade (default: 50)"
    )
    audit.add_argument("--out", default="", help="the sample's CSV (default: RUN/audit.csv)")
    audit.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    audit.add_argument(
        "--labels", default="", help="a labelled sample: report the grader's error rate"
    )
    audit.set_defaults(func=cmd_audit)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input ends with one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="halluscan: %(message)s")
    if getattr(args, "progress", None):
        os.environ["HALLUSCAN_PROGRESS"] = args.progress  # read by every bar (Ray's driver too)
    if getattr(args, "loads_model", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-load weight bar is noise next to ours
    for noisy in ("transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that has gone away is handled below
        return code
    except HalluscanError as e:
        print(f"halluscan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_bars()  # the message goes on a line of its own, not after a progress bar
        print(
            "halluscan: interrupted; completed batches are kept and a re-run resumes",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # `halluscan positions | head`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        # so that the interpreter's final flush does not fail again
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _close_bars() -> None:
    """Close the progress bars that are still open, so each ends its line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
