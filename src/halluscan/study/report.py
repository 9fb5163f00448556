"""A study's report files.

The heatmap (PNG + HTML) and the HTML page, written into its run folder.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from halluscan.analyses.results import Metrics
from halluscan.models.sites import RESIDUAL
from halluscan.probes.sweep import SweepResult
from halluscan.records import Example
from halluscan.report import heatmap
from halluscan.report.baselines import error_types_section, versus_section
from halluscan.report.figures import write_html
from halluscan.report.given import given_section
from halluscan.report.html import write_report
from halluscan.report.maps import DrawnPair
from halluscan.report.sites import sites_section, tokens_section
from halluscan.study.runs import RunDir
from halluscan.text import display_name


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
    prov = metrics.provenance
    model, dataset = display_name(prov.model.model_id), display_name(prov.dataset.name)
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
    sites = sites_section(metrics, {RESIDUAL: png, **draw_sites(run, metrics, base)})
    extra = (
        versus_section(metrics)
        + sites
        + tokens_section(metrics)
        + error_types_section(metrics)
        + given_section(metrics, given_png)
    )
    write_report(run.report, metrics, examples, (png, gain), div, maps, extra)


def draw_sites(run: RunDir, metrics: Metrics, base: str) -> dict[str, Path]:
    """Each other site's heatmap (``--sites``), on the residual stream's colour scale."""
    out = {}
    for s in metrics.sites or []:
        h, nest = s.heatmap, s.nested
        title = f"{base} · {s.site}" + (f" · nested {nest.auc:.3f}" if nest and nest.auc else "")
        auc = np.array(h.auc, dtype=float)
        out[s.site] = heatmap.heatmap_png(
            auc, h.layers, h.positions, run.heatmap_site_png(s.site), title
        )
    return out


def rewrite_report(run: RunDir, metrics: Metrics, examples: list[Example]) -> None:
    """Write ``report.html`` again from a finished study's metrics and its drawn figures.

    For what changes after the study (a grading audit): nothing is fitted or drawn again; the
    interactive surfaces are linked rather than embedded.
    """
    from halluscan.errors import HalluscanError

    heat = metrics.heatmap
    if heat is None or not run.heatmap_png.is_file():
        raise HalluscanError(f"{run.root}: the study has no heatmap to report; run it again")
    auc = np.array(heat.auc, dtype=float)
    fig = heatmap.heatmap_figure(
        auc, np.array(heat.auc_std, dtype=float), heat.n_per_position, heat.layers,
        heat.positions, metrics.name,
    )  # fmt: skip
    div = fig.to_html(include_plotlyjs=True, full_html=False)
    maps = [
        DrawnPair(
            m, f"<p><a href='{html.escape(m.activity_html)}'>the interactive surfaces</a></p>"
        )
        for m in metrics.response_maps or []
    ]
    given_png = run.heatmap_given_png if run.heatmap_given_png.is_file() else None
    drawn = {s.site: run.heatmap_site_png(s.site) for s in metrics.sites or []}
    extra = (
        versus_section(metrics)
        + sites_section(metrics, {RESIDUAL: run.heatmap_png, **drawn})
        + tokens_section(metrics)
        + error_types_section(metrics)
        + given_section(metrics, given_png)
    )
    pngs = (run.heatmap_png, run.heatmap_gain_png)
    write_report(run.report, metrics, examples, pngs, div, maps, extra)
