"""A study's report files.

The heatmap (PNG + HTML) and the HTML page, written into its run folder.
"""

from __future__ import annotations

from halluscan.analyses.results import Metrics
from halluscan.probes.sweep import SweepResult
from halluscan.records import Example
from halluscan.report import heatmap
from halluscan.report.baselines import error_types_section, versus_section
from halluscan.report.figures import write_html
from halluscan.report.given import given_section
from halluscan.report.html import write_report
from halluscan.report.maps import DrawnPair
from halluscan.study.runs import RunDir


def write_study_report(
    run: RunDir,
    metrics: Metrics,
    examples: list[Example],
    sweep: SweepResult | None,
    maps: list[DrawnPair],
    given: SweepResult | None = None,
) -> None:
    """Draw the heatmaps and write ``report.html`` (``metrics`` must carry its provenance).

    Without a sweep (too few examples of a class) the report has no heatmap and says why.
    ``given`` is the given-answer sweep (its heatmap goes with the given-answer section).
    """
    given_png = None
    if given is not None:
        n = metrics.given_bank.n_answers if metrics.given_bank is not None else 0
        title = f"given answers (true + false) · n={n} · {given.folds}-fold CV grouped by question"
        given_png = heatmap.heatmap_png(
            given.auc,
            given.layers,
            given.positions,
            run.heatmap_given_png,
            title,
            target="a false answer",
        )
    if sweep is None:
        # no probes
        write_report(
            run.report, metrics, examples, None, "", maps, given_section(metrics, given_png)
        )
        return
    assert metrics.provenance is not None
    model, dataset = metrics.provenance.model.model_id, metrics.provenance.dataset.name
    base = title = f"{model} · {dataset} · n={len(examples)} · {sweep.folds}-fold CV"
    head = metrics.headline
    if head is not None and head.max_auc is not None and head.auc is not None:
        title += (
            f" · exact-answer max {head.max_auc:.3f} = the best of {head.n_cells} cells "
            f"(optimistic); nested {head.auc:.3f}"
        )
    png = heatmap.heatmap_png(sweep.auc, sweep.layers, sweep.positions, run.heatmap_png, title)
    gain_title = f"{model} · {dataset} · gain over layer {sweep.layers[0]} at the same position"
    gain = heatmap.gain_png(
        sweep.auc, sweep.layers, sweep.positions, run.heatmap_gain_png, gain_title
    )
    fig = heatmap.heatmap_figure(
        sweep.auc, sweep.auc_std, sweep.n, sweep.layers, sweep.positions, base
    )
    write_html(fig, run.heatmap_html)
    div = fig.to_html(include_plotlyjs=True, full_html=False)
    extra = (
        versus_section(metrics) + error_types_section(metrics) + given_section(metrics, given_png)
    )
    write_report(run.report, metrics, examples, (png, gain), div, maps, extra)
