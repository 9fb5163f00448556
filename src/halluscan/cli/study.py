"""``halluscan run``, ``suite``, ``choose``, ``positions`` and ``data``.

The commands that work on whole studies.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from halluscan.cli.probe import ci_text, num_text

if TYPE_CHECKING:
    from halluscan.analyses.results import Metrics
    from halluscan.study.config import StudyConfig


def _site_lines(m: Metrics) -> list[str]:
    """Each other site (``--sites``): its nested cell and its difference from the residual."""
    out = []
    for s in m.sites or []:
        n = s.nested
        if n is None or n.auc is None:
            out.append(f"site {s.site}: no nested cell")
            continue
        line = f"site {s.site}: nested {n.cell.position} L{n.cell.layer} AUC {n.auc:.3f}"
        if s.gain is not None:
            line += f"; minus residual {s.gain:+.3f} ({ci_text(s.gain_ci95)})"
            line += ": differs" if s.differs else ": no significant difference"
        out.append(line)
    return out


def _token_lines(m: Metrics) -> list[str]:
    """The token-level bank's AUC at the first token offsets."""
    t = m.token_bank
    if t is None:
        return []
    shown = ", ".join(f"+{o.offset} {num_text(o.auc)}" for o in t.offsets[:6])
    lines = [f"token-level bank (layer {t.layer}): AUC by token offset from the answer: {shown}"]
    if t.offsets and t.offsets[0].layer0_auc is not None:
        o = t.offsets[0]
        lines.append(
            f"  at +0, layer 0 (the token's identity) reads {num_text(o.layer0_auc)}; gain "
            f"{num_text(o.gain, '+.3f')} ({ci_text(o.gain_ci95)})"
        )
    return lines


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


def headline_lines(m: Metrics) -> list[str]:
    """The nested probe, the strongest control and the gain over it, and the warnings."""
    h = m.headline
    if h is None:
        return ["no exact-answer cell could be nested (too few answers of a class there)"]
    verdict = "the probe beats it" if h.clear else "the probe does NOT beat it"
    lines = [
        f"headline: {h.position} layer {h.layer}, chosen by nested cross-validation among "
        f"{h.n_cells} cells: AUC {num_text(h.auc)} ({ci_text(h.ci95)}) on {h.n} answers "
        f"({h.n_wrong} wrong)",
        f"strongest control: {h.strongest} {num_text(h.strongest_auc)} "
        f"({ci_text(h.strongest_ci95)}); gain {num_text(h.gain, '+.3f')} ({ci_text(h.gain_ci95)}): "
        + verdict,
    ]
    if h.max_cell is not None and h.max_auc is not None:
        lines.append(
            f"heatmap maximum: {h.max_cell.position} layer {h.max_cell.layer} {h.max_auc:.3f} "
            f"(the best of {h.n_cells} cells: optimistic)"
        )
    warned = m.finding.warnings if m.finding is not None else None
    return lines + [f"warning: {w}" for w in warned or []]


def _summary(m: Metrics) -> str:
    s = m.summary
    if m.no_probes:  # the reason was logged as a warning
        head = (
            f"graded {s.n_graded} questions, accuracy {s.accuracy:.3f}; no probes (see the warning)"
        )
        return "\n".join([head, *_given_line(m)])
    ea = s.exact_answer_found
    lines = [
        f"graded {s.n_graded} questions, accuracy {s.accuracy:.3f}",
        "accuracy by relation: "
        + ", ".join(f"{r} {a:.2f}" for r, a in s.accuracy_by_relation.items()),
        f"exact answer found: correct {ea['correct']:.3f}, wrong {ea['wrong']:.3f}; locator "
        f"agreement on correct {s.locator_agreement_correct:.3f}",
        *headline_lines(m),
        *_given_line(m),
        *_site_lines(m),
        *_token_lines(m),
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
    """List the valid position names and what each one is."""
    from halluscan.positions import MEANING, VALID

    width = max(map(len, VALID))
    print("\n".join(f"{p:<{width}}  {MEANING[p]}" for p in VALID))
    print(
        "An answer with no located exact answer is read at its last answer token at the "
        "exact_answer_* positions, and flagged."
    )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``halluscan data fetch llmsknow``: download the LLMsKnow files."""
    from halluscan.data.llmsknow import fetch

    paths = fetch(args.dir)
    print(f"wrote {len(paths)} files into {paths[0].parent}")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    """Run a study per dataset and print each one's probe against its best baseline."""
    from halluscan.cli.probe import matrix_lines
    from halluscan.study.flags import config_from_args
    from halluscan.study.runs import RunDir
    from halluscan.study.suite import run_suite
    from halluscan.text import short_name

    cfg = config_from_args(args)
    if args.models:
        return _grid(args, cfg)
    if args.name is None:  # a suite's own default name, not a study's
        cfg = replace(cfg, name=f"{short_name(cfg.model)}-suite")
    s = run_suite(cfg, args.datasets or [])
    for name, d in s.datasets.items():
        h = d.headline
        if h is None:
            print(f"{name}: accuracy {d.accuracy:.3f}; no probes")
            continue
        print(
            f"{name}: accuracy {d.accuracy:.3f}; nested probe {h.position} layer {h.layer} AUC "
            f"{num_text(h.auc)}; strongest control {h.strongest} {num_text(h.strongest_auc)}; "
            f"gain {num_text(h.gain, '+.3f')}: "
            + ("the probe beats it" if h.clear else "not beaten")
        )
    if s.transfer.auc:
        print("\n".join(matrix_lines(s.transfer)))
    run = RunDir.named(cfg.name, cfg.runs_dir)
    print(f"wrote {run.suite_html}, {run.suite_json} ({s.wall_s:.0f} s)")
    return 0


def _grid(args: argparse.Namespace, cfg: StudyConfig) -> int:
    """``suite --models``: a suite per model, and the grid page."""
    from halluscan.study.grid import run_grid
    from halluscan.study.runs import RunDir

    if args.name is None:
        cfg = replace(cfg, name="grid")
    suites = run_grid(cfg, list(args.models), args.datasets or [])
    for folder, s in suites.items():
        for name, d in s.datasets.items():
            h = d.headline
            auc = (
                "no probes" if h is None else f"nested {num_text(h.auc)} at {h.position} L{h.layer}"
            )
            print(f"{folder} · {name}: accuracy {d.accuracy:.3f}; {auc}")
    print(f"wrote {RunDir.named(cfg.name, cfg.runs_dir).root / 'grid.html'}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """``halluscan audit RUN``: write a sample of grades to check, or read the checked one back."""
    from halluscan.errors import HalluscanError
    from halluscan.study.audit import read_labels, write_sample
    from halluscan.study.runs import RunDir

    run = RunDir(Path(args.run))
    if not run.has_metrics():
        raise HalluscanError(f"{run.root}: no finished study there (no metrics.json); run it first")
    if args.labels:
        a = read_labels(run, Path(args.labels))
        for grade, e in a.by_grade.items():
            lo, hi = e.ci95 or (float("nan"), float("nan"))
            rate = "n/a" if e.rate is None else f"{e.rate:.1%}"
            print(
                f"graded {grade}: {e.errors} of {e.checked} wrong ({rate}, 95 % {lo:.1%}–{hi:.1%})"
            )
        lo, hi = a.ci95 or (float("nan"), float("nan"))
        rate = "n/a" if a.error_rate is None else f"{a.error_rate:.1%}"
        print(f"grading error rate of the study: {rate} (95 % {lo:.1%}–{hi:.1%}); {a.skipped} rows "
              f"not labelled; wrote {run.metrics}, {run.report}")  # fmt: skip
        return 0
    if args.n < 2:
        raise HalluscanError(f"audit: --n {args.n}; give at least 2 answers to check")
    path = write_sample(run, args.n, Path(args.out) if args.out else None, args.seed)
    print(f"wrote {path}: fill its label column (correct, wrong or ambiguous), then run "
          f"`halluscan audit {run.root} --labels {path}`")  # fmt: skip
    return 0
