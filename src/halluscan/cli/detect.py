"""``halluscan detect``: train the whole-tensor detector on finished studies and judge it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from halluscan.cli.probe import ci_text, num_text

if TYPE_CHECKING:
    from halluscan.study.detect import Detection, Held, InDataset, JointRun


def add_detect_command(sub: Any) -> None:
    """``detect``: its flags (the detector's configuration is fixed here, before any test)."""
    from halluscan.probes.tensor import DetectorConfig
    from halluscan.records import CV
    from halluscan.study.runs import output_dir

    d = sub.add_parser(
        "detect",
        help="train a detector on the whole layer x position tensor of one or several studies",
    )
    d.add_argument("--runs", nargs="+", required=True, help="training run folders (runs/NAME)")
    d.add_argument("--test", nargs="*", default=[], help="held-out run folders to score")
    d.add_argument(
        "--out", default=output_dir("detector"), help="output folder (default: %(default)s)"
    )
    d.add_argument("--folds", type=int, default=CV.folds, help="outer folds (default: %(default)s)")
    d.add_argument("--seed", type=int, default=CV.seed, help="fold seed (default: %(default)s)")
    d.add_argument(
        "--no-cv", action="store_true", help="skip the cross-validation: fit, save and test only"
    )
    defaults = DetectorConfig()
    for name in ("bins", "width", "epochs"):
        d.add_argument(
            f"--{name}", type=int, default=getattr(defaults, name), help="(default: %(default)s)"
        )
    d.add_argument("--device", default="cpu", help="where the probes of the controls are fitted")
    d.set_defaults(func=cmd_detect)


def in_lines(r: InDataset) -> list[str]:
    """One run's cross-validated detector against the nested cell and the strongest control."""
    from halluscan.study.detect import NESTED_CELL

    cell, lines = r.versus[NESTED_CELL], []
    lines.append(
        f"{r.run}: detector AUC {num_text(r.auc)} ({ci_text(r.ci95)}; {r.n} answers, "
        f"{r.n_wrong} wrong, the nested folds)"
    )
    lines.append(
        f"  best single cell (nested, {r.cell.position} L{r.cell.layer}) {num_text(cell.auc)}; "
        f"gain {num_text(cell.gain, '+.3f')} ({ci_text(cell.gain_ci95)})"
        + ("" if r.beats_cell else ": the detector does not beat it")
    )
    if r.strongest is not None:
        top = r.versus[r.strongest]
        lines.append(
            f"  strongest control {r.strongest} {num_text(top.auc)}; gain "
            f"{num_text(top.gain, '+.3f')} ({ci_text(top.gain_ci95)})"
            + ("" if r.beats_strongest else ": the detector does not beat it")
        )
    return lines


def joint_lines(rows: list[JointRun]) -> list[str]:
    """Each run's folds under the detector trained on every run at once."""
    out = ["trained on every run at once (one adapter per model), scored on each run's folds:"]
    for j in rows:
        out.append(
            f"  {j.run}: {num_text(j.auc)} ({ci_text(j.ci95)}); vs trained alone "
            f"{num_text(j.gain_over_alone, '+.3f')} ({ci_text(j.gain_over_alone_ci95)}); vs the "
            f"nested cell {num_text(j.gain_over_cell, '+.3f')} ({ci_text(j.gain_over_cell_ci95)})"
        )
    return out


def held_lines(h: Held) -> list[str]:
    """A held-out run: the detector against the fixed-cell probe and the log-prob baseline."""
    lines = [
        f"held out {h.test}: detector {num_text(h.auc)} ({ci_text(h.ci95)}; {h.n} answers, "
        f"{h.n_wrong} wrong, bootstrap over its questions)",
        f"  probe of {h.cell_run} at its cell {h.cell.position} L{h.cell.layer}: "
        f"{num_text(h.cell_auc)} ({ci_text(h.cell_ci95)}); gain "
        f"{num_text(h.gain_over_cell, '+.3f')} ({ci_text(h.gain_over_cell_ci95)})",
    ]
    if h.baseline is not None:
        lines.append(
            f"  strongest log-prob baseline {h.baseline} {num_text(h.baseline_auc)}; gain "
            f"{num_text(h.gain_over_baseline, '+.3f')} ({ci_text(h.gain_over_baseline_ci95)})"
        )
    return lines


def detection_lines(d: Detection) -> list[str]:
    """What ``halluscan detect`` prints at the end."""
    lines: list[str] = []
    for r in d.in_dataset:
        lines += in_lines(r)
    if d.joint:
        lines += joint_lines(d.joint)
    for h in d.held_out:
        lines += held_lines(h)
    lines.append(f"wrote {d.folder} (detector, detect.json) in {d.seconds:.0f} s")
    return lines


def cmd_detect(args: argparse.Namespace) -> int:
    """Cross-validate, fit, save and test the detector."""
    from dataclasses import replace

    from halluscan.probes.tensor import DetectorConfig
    from halluscan.records import CV
    from halluscan.study.detect import detect

    cfg = replace(DetectorConfig(), bins=args.bins, width=args.width, epochs=args.epochs)
    cv = CV(folds=args.folds, seed=args.seed)
    d = detect(args.runs, args.test, args.out, cv, cfg, args.device, cross=not args.no_cv)
    print("\n".join(detection_lines(d)))
    return 0
