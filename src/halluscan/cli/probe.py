"""``halluscan probe``: transfer between run folders, judged at the training run's own cell."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from halluscan.analyses.results import Transfer
    from halluscan.analyses.transfer import FixedCell


def num_text(v: float | None, spec: str = ".3f") -> str:
    """A number for the terminal ("n/a" when missing)."""
    return "n/a" if v is None else format(v, spec)


def ci_text(ci: tuple[float, float] | None) -> str:
    """A 95 % interval for the terminal."""
    return "no interval" if ci is None else f"95 % {ci[0]:.3f}–{ci[1]:.3f}"


def fixed_lines(f: FixedCell) -> list[str]:
    """What a reader needs first: the fixed-cell AUC, the logits on the same answers, the gain."""
    cell = f"{f.cell.position} layer {f.cell.layer}"
    there = "" if f.train_auc is None else f"; nested AUC there {f.train_auc:.3f}"
    lines = [
        f"at the cell chosen on {f.train} ({cell}, by {f.chosen_by}{there}):",
        f"  AUC on {f.test} {num_text(f.auc)} ({ci_text(f.ci95)}; bootstrap over its questions), "
        f"{f.n} answers ({f.n_wrong} wrong)",
    ]
    if f.baseline is None:
        lines.append("  no log-prob baseline scores both classes there")
    else:
        beats = f.gain_ci95 is not None and f.gain_ci95[0] > 0
        lines += [
            f"  strongest log-prob baseline on {f.test}: {f.baseline} ({f.baseline_orientation}, "
            f"oriented on {f.train}) {num_text(f.baseline_auc)} ({ci_text(f.baseline_ci95)})",
            f"  gain over it {num_text(f.gain)} ({ci_text(f.gain_ci95)}): the probe "
            + ("beats the logits" if beats else "does not beat the logits"),
        ]
    if f.shared_questions:
        lines.append(f"  {f.shared_questions} questions of {f.test} are in {f.train}: left out")
    if f.max_cell is not None:
        lines.append(
            f"best of {f.n_cells} test cells: {f.max_cell.position} layer {f.max_cell.layer} "
            f"{num_text(f.max_auc)} (chosen on the test data: optimistic)"
        )
    return lines


def matrix_lines(t: Transfer) -> list[str]:
    """The fixed-cell AUC and gain matrices as text (rows: train, columns: test)."""
    width = max(len(r) for r in t.runs)
    lines = ["AUC at the training run's cell (rows: train, columns: test; diagonal: nested AUC)"]
    for name, row in zip(t.runs, t.auc, strict=True):
        lines.append(f"{name:>{width}}  " + "  ".join(num_text(v) for v in row))
    lines.append(
        "gain over the test run's strongest log-prob baseline, oriented on the training run"
    )
    for name, row in zip(t.runs, t.gain, strict=True):
        lines.append(f"{name:>{width}}  " + "  ".join(num_text(v) for v in row))
    return lines


def cmd_probe(args: argparse.Namespace) -> int:
    """Train on one run, test on another at the training run's cell; or a matrix over runs."""
    from halluscan import atomic
    from halluscan.errors import HalluscanError
    from halluscan.models.loading import resolve_device
    from halluscan.report import heatmap
    from halluscan.report.figures import write_html
    from halluscan.study.metrics import to_json
    from halluscan.study.transfer import transfer_matrix, transfer_runs

    out, device = Path(args.out), resolve_device(args.device)[0]
    if args.runs:
        t = transfer_matrix([Path(r) for r in args.runs], args.site, args.c, device=device)
        atomic.write_json(out / "transfer_matrix.json", to_json(t))
        print("\n".join(matrix_lines(t)))
        print(f"wrote {out / 'transfer_matrix.json'}")
        return 0
    if not (args.train and args.test):
        raise HalluscanError("probe: give --train RUN and --test RUN, or --runs RUN RUN ...")
    fixed, tested = transfer_runs(args.train, args.test, args.site, args.c, device)
    title = f"probes trained on {args.train}, tested on {args.test}"
    auc = tested.auc
    heatmap.heatmap_png(auc, tested.layers, tested.positions, out / "transfer_heatmap.png", title)
    fig = heatmap.heatmap_figure(
        auc, auc * 0, [0] * len(tested.positions), tested.layers, tested.positions, title
    )
    write_html(fig, out / "transfer_heatmap.html")
    result = {
        "fixed_cell": to_json(fixed),
        "layers": tested.layers,
        "positions": tested.positions,
        "auc": auc.tolist(),
    }
    atomic.write_json(out / "transfer.json", result)
    print("\n".join(fixed_lines(fixed)))
    print(f"wrote {out}")
    return 0
