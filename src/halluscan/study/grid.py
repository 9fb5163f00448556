"""``halluscan suite --models A B --datasets ...``: the paper's grid, several models side by side.

Each model's suite is an ordinary suite in ``runs/NAME/<model>/`` (its studies resume, a finished
one is not run again). ``runs/NAME/grid.json`` and ``grid.html`` put them together: the heatmaps
in a grid (model rows, dataset columns, one colour scale), the nested best cells with their
intervals, the strongest control and the gain over it, and each model's strongest log-prob
baseline.
"""

from __future__ import annotations

from dataclasses import replace

from halluscan import atomic
from halluscan.analyses.results import Suite
from halluscan.errors import HalluscanError
from halluscan.report.grid import write_grid_report
from halluscan.study import metrics as metrics_io
from halluscan.study.config import StudyConfig
from halluscan.study.runs import RunDir
from halluscan.study.suite import run_suite, study_name
from halluscan.text import short_name


def run_grid(cfg: StudyConfig, models: list[str], datasets: list[str]) -> dict[str, Suite]:
    """A suite per model under ``runs/NAME``; then the grid's files. Returns the suites."""
    folders = [short_name(m) for m in models]
    if len(set(folders)) < len(folders):
        raise HalluscanError(f"suite: two models share a folder name ({', '.join(folders)})")
    root = RunDir.named(cfg.name, cfg.runs_dir)
    suites: dict[str, Suite] = {}
    with root.hold("halluscan suite --models"):
        for model, folder in zip(models, folders, strict=True):
            sub = replace(cfg, model=model, name=folder, runs_dir=str(root.root))
            suites[folder] = run_suite(sub, datasets)
        heatmaps = {
            folder: {
                study_name(d): RunDir.named(study_name(d), root.root / folder).heatmap_png
                for d in datasets
            }
            for folder in folders
        }
        atomic.write_json(
            root.root / "grid.json", {k: metrics_io.to_json(s) for k, s in suites.items()}
        )
        write_grid_report(root.root / "grid.html", cfg.name, suites, heatmaps)
    return suites
