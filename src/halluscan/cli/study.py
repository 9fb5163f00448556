"""``halluscan run``, ``probe``, ``choose`` and ``positions``.

The commands that work on whole studies.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from halluscan.analyses.results import Metrics


def _given_line(m: Metrics) -> list[str]:
    """The given-answer bank's headline.

    Its held-out AUC on true/false answers, and the own bank's there.
    """
    g = m.given_bank
    if g is None:
        return []
    if g.skipped is not None:
        return [g.skipped]
    assert g.best is not None and g.cross is not None
    b, own = g.best, g.cross.own_bank.get("given_pairs")
    lo, hi = b.ci95 or (float("nan"), float("nan"))
    line = f"given-answer bank: layer {b.layer} AUC {b.auc:.3f} ({lo:.3f}-{hi:.3f}) "
    line += f"on held-out true/false answers ({g.n_answers})"
    if own is not None and own.auc is not None:
        line += f"; the own-answer bank there {own.auc:.3f}"
    return [line]


def _summary(m: Metrics) -> str:
    s = m.summary
    if m.no_probes:  # the reason was logged as a warning
        head = (
            f"graded {s.n_graded} questions, accuracy {s.accuracy:.3f}; no probes (see the warning)"
        )
        return "\n".join([head, *_given_line(m)])
    assert m.finding is not None and m.controls is not None and m.best_cells is not None
    f, c, ea = m.finding, m.controls, s.exact_answer_found
    last_q = m.best_cells["last_q"].auc if "last_q" in m.best_cells else None
    lines = [
        f"graded {s.n_graded} questions, accuracy {s.accuracy:.3f}",
        "accuracy by relation: "
        + ", ".join(f"{r} {a:.2f}" for r, a in s.accuracy_by_relation.items()),
        f"exact answer found: correct {ea['correct']:.3f}, wrong {ea['wrong']:.3f}; locator "
        f"agreement on correct {s.locator_agreement_correct:.3f}",
        f"best exact-answer cell: {f.best_exact_position} layer {f.best_exact_layer} AUC "
        f"{f.best_exact_auc:.3f}; best last_q AUC "
        f"{last_q if last_q is not None else float('nan'):.3f}",
        f"controls: relation only {c.relation_prior_auc:.3f}, layer 0 at exact-answer positions "
        f"{c.layer0_exact_auc:.3f}",
        *_given_line(m),
        "timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in m.timings_s.items()),
    ]
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a study and print its headline numbers."""
    from halluscan.study.flags import config_from_args
    from halluscan.study.pipeline import run_study
    from halluscan.study.runs import RunDir

    cfg = config_from_args(args)
    m = run_study(cfg)
    run = RunDir.named(cfg.name, cfg.runs_dir)
    print(_summary(m))
    print(f"wrote {run.report}, {run.metrics}" + ("" if m.no_probes else f", {run.heatmap_png}"))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Train on one run, test on another (heatmap on the test run), or a matrix over runs."""
    from halluscan import atomic
    from halluscan.errors import HalluscanError
    from halluscan.report import heatmap
    from halluscan.report.figures import write_html
    from halluscan.study.runs import RunDir
    from halluscan.study.transfer import transfer_matrix, transfer_stores

    out = Path(args.out)
    if args.runs:
        m = transfer_matrix(
            [Path(r) for r in args.runs], args.site, args.c, device=_device(args.device)
        )
        matrix = {"runs": args.runs, "best_auc": m.tolist(), "rows": "train", "columns": "test"}
        atomic.write_json(out / "transfer_matrix.json", matrix)
        print("best-cell AUC (rows: train, columns: test)")
        for name, row in zip(args.runs, m, strict=True):
            print(f"{name:>30}  " + "  ".join(f"{v:.3f}" for v in row))
        return 0
    if not (args.train and args.test):
        raise HalluscanError("probe: give --train RUN and --test RUN, or --runs RUN RUN ...")
    train, test = RunDir(Path(args.train)).open_store(), RunDir(Path(args.test)).open_store()
    tested = transfer_stores(train, test, args.site, args.c, device=_device(args.device))
    auc, layers, positions = tested.auc, tested.layers, tested.positions
    if np.all(np.isnan(auc)):
        raise HalluscanError(
            f"no cell could be scored: {args.train} and {args.test} each need correct and wrong "
            "answers at a position; use studies with more questions"
        )
    title = f"probes trained on {args.train}, tested on {args.test}"
    heatmap.heatmap_png(auc, layers, positions, out / "transfer_heatmap.png", title)
    fig = heatmap.heatmap_figure(auc, auc * 0, [0] * len(positions), layers, positions, title)
    write_html(fig, out / "transfer_heatmap.html")
    result = {
        "train": args.train,
        "test": args.test,
        "layers": layers,
        "positions": positions,
        "auc": auc.tolist(),
    }
    atomic.write_json(out / "transfer.json", result)
    j = int(np.nanargmax(np.nan_to_num(auc, nan=-1)))
    layer, pos = layers[j // len(positions)], positions[j % len(positions)]
    print(f"best cell on {args.test}: {pos} layer {layer} AUC {np.nanmax(auc):.3f}; wrote {out}")
    return 0


def _device(device: str) -> str:
    from halluscan.models.loading import resolve_device

    return resolve_device(device)[0]


def cmd_choose(args: argparse.Namespace) -> int:
    """Answer choice on a study's held-out questions.

    Greedy vs majority vote vs the probe's pick.
    """
    from halluscan.study.choice import answer_choice
    from halluscan.study.runs import RunDir

    # it writes into the study's folder
    with RunDir(Path(args.run)).hold("halluscan choose", create=False):
        opts = {
            k: getattr(args, k)
            for k in ("samples", "temperature", "seed", "quiet", "device", "dtype")
        }
        r = answer_choice(args.run, n_test=args.questions, **opts)
    a = r.accuracy
    print(
        f"{r.n_questions} held-out questions, {r.samples} samples each (temperature "
        f"{r.temperature}), probe layer {r.probe_layer} trained on {r.n_train_examples} other "
        "examples"
    )
    for k in ("greedy", "majority", "probe", "oracle", "sample_mean"):
        print(f"  {k:<12} accuracy {a[k]:.3f}")
    for k, g in (
        ("probe_minus_greedy", r.probe_minus_greedy),
        ("probe_minus_majority", r.probe_minus_majority),
    ):
        lo, hi = g.ci95
        print(f"  {k:<21} {g.mean:+.3f} (95 % bootstrap {lo:+.3f} to {hi:+.3f})")
    print(f"wrote {RunDir(Path(args.run)).answer_choice}")
    return 0


def cmd_positions(_args: argparse.Namespace) -> int:
    """List the valid position names."""
    from halluscan.positions import VALID

    print("\n".join(VALID))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``halluscan data fetch llmsknow``: download the LLMsKnow files."""
    from halluscan.data.llmsknow import fetch

    paths = fetch(args.dir)
    print(f"wrote {len(paths)} files into {paths[0].parent}")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    """Run a study per dataset and print each one's probe against its best baseline."""
    from halluscan.study.flags import config_from_args
    from halluscan.study.runs import RunDir
    from halluscan.study.suite import run_suite

    cfg = config_from_args(args)
    s = run_suite(cfg, args.datasets or [])
    for name, d in s.datasets.items():
        if d.best_cell is None:
            print(f"{name}: accuracy {d.accuracy:.3f}; no probes")
            continue
        h, b = d.best_cell, d.best_baseline
        base = f"{b.name} {b.scores.auc or 0:.3f}" if b else "None 0.000"
        print(
            f"{name}: accuracy {d.accuracy:.3f}; probe {h.position} layer {h.layer} AUC "
            f"{h.auc:.3f}, gain over layer 0 {h.gain_over_layer0 or 0:.3f}; best baseline {base}; "
            f"clears every baseline: {'yes' if d.beats_every_baseline else 'no'}"
        )
    run = RunDir.named(cfg.name, cfg.runs_dir)
    print(f"wrote {run.suite_html}, {run.suite_json} ({s.wall_s:.0f} s)")
    return 0
