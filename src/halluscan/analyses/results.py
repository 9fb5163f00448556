"""A study's results as one typed record.

What ``metrics.json`` holds, and what the report and the CLI read.


Each part is the record of the analysis that made it (:mod:`.summary`, :mod:`.baselines`,
:mod:`.errortypes`, :mod:`.given`). :mod:`halluscan.study.metrics` alone turns a
:class:`Metrics` into JSON and back. Field metadata tells it how: ``flatten`` writes a record's
fields at the top level, ``omit`` leaves a field out while it is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from halluscan.analyses.baselines import Baseline, Headline
from halluscan.analyses.errortypes import ErrorTypes
from halluscan.analyses.given import GivenBank
from halluscan.analyses.summary import OMIT, BestCell, Controls, Finding, Heatmap, Summary
from halluscan.provenance import Provenance


@dataclass(frozen=True)
class MapResponse:
    """One response drawn in the report: its text, the verdict, and its grade when it was graded."""

    question: str
    response: str
    verdict: str
    p_wrong: float
    graded: str | None  # "correct", "wrong", or None for a pair from the config


@dataclass(frozen=True)
class ResponseMap:
    """A pair of responses drawn side by side: the activity surfaces and attention heatmaps."""

    name: str
    responses: list[MapResponse]
    activity_png: str
    activity_html: str
    attention_png: list[str]


@dataclass(frozen=True)
class RayReport:
    """How a study's collection ran on Ray.

    Per worker its questions and rate, and the driver's commits.
    """

    workers: int
    questions_per_worker: dict[str, int]
    questions_per_s_per_worker: dict[str, float]
    chunks: int
    driver_commit_s_per_chunk: float
    manifest_writes: int
    object_store_MB: float  # noqa: N815 (the key metrics.json has always used)
    wall_s: float
    shards_reassigned: int


@dataclass(frozen=True)
class Metrics:
    """Everything a study found. Without probes (too few of a class) only the summary and why."""

    name: str
    summary: Summary = field(metadata={"flatten": True})
    no_probes: str | None = field(default=None, metadata=OMIT)
    heatmap: Heatmap | None = field(default=None, metadata=OMIT)
    best_cells: dict[str, BestCell] | None = field(default=None, metadata=OMIT)
    controls: Controls | None = field(default=None, metadata=OMIT)
    finding: Finding | None = field(default=None, metadata=OMIT)
    headline: Headline | None = field(default=None, metadata=OMIT)
    baselines: dict[str, Baseline] | None = field(default=None, metadata=OMIT)
    error_types: ErrorTypes | None = field(default=None, metadata=OMIT)
    # folder of the saved own-answer bank (None: none could be fitted)
    probe_bank: str | None = None
    given_bank: GivenBank | None = field(default=None, metadata=OMIT)
    response_maps: list[ResponseMap] | None = field(default=None, metadata=OMIT)
    timings_s: dict[str, float] = field(default_factory=dict)
    provenance: Provenance | None = None
    ray: RayReport | None = field(default=None, metadata=OMIT)

    @property
    def has_probes(self) -> bool:
        """Whether the sweep ran (both classes had enough examples)."""
        return self.no_probes is None and self.heatmap is not None

    def strongest_baseline(self) -> tuple[str, Baseline] | None:
        """The baseline with the highest AUC, with its name (None without baselines)."""
        scored = [(k, b) for k, b in (self.baselines or {}).items() if b.auc is not None]
        return max(scored, key=lambda kv: kv[1].auc or 0.0) if scored else None


@dataclass(frozen=True)
class NamedBaseline:
    """A baseline with its name (the strongest of a study, in the suite)."""

    name: str
    scores: Baseline = field(metadata={"flatten": True})


@dataclass(frozen=True)
class SuiteStudy:
    """What the suite keeps of one dataset's study."""

    n_graded: int
    accuracy: float
    locator_rules: dict[str, int]
    dataset: str = ""
    wall_s: float = 0.0
    no_probes: str | None = field(default=None, metadata=OMIT)
    best_cell: Headline | None = field(default=None, metadata=OMIT)
    beats_every_baseline: bool | None = field(default=None, metadata=OMIT)
    best_baseline: NamedBaseline | None = field(default=None, metadata=OMIT)
    baselines: dict[str, Baseline] | None = field(default=None, metadata=OMIT)

    @classmethod
    def of(cls, m: Metrics, dataset: str, wall_s: float) -> SuiteStudy:
        """The suite's summary of a study's metrics."""
        s = m.summary
        base = cls(s.n_graded, s.accuracy, s.locator_rules, dataset, wall_s)
        if m.no_probes or m.headline is None:  # no sweep, or no exact-answer cell
            return replace(base, no_probes=m.no_probes or "no exact-answer cell with both classes")
        strongest = m.strongest_baseline()
        return replace(
            base,
            best_cell=m.headline,
            beats_every_baseline=bool(m.baselines)
            and all(b.probe_clear for b in (m.baselines or {}).values()),
            best_baseline=NamedBaseline(*strongest) if strongest else None,
            baselines=m.baselines,
        )


@dataclass(frozen=True)
class Transfer:
    """The train x test matrix of best-cell AUCs over a suite's studies (rows: trained on)."""

    runs: list[str]
    best_auc: list[list[float | None]]


@dataclass(frozen=True)
class Suite:
    """A suite: one study per dataset on one model, and how their probes transfer."""

    name: str
    model: str
    datasets: dict[str, SuiteStudy]
    transfer: Transfer
    wall_s: float
