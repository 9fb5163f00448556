"""A study's results as one typed record.

What ``metrics.json`` holds, and what the report and the CLI read.


Each part is the record of the analysis that made it (:mod:`.summary`, :mod:`.baselines`,
:mod:`.errortypes`, :mod:`.given`). :mod:`halluscan.study.metrics` alone turns a
:class:`Metrics` into JSON and back. Field metadata tells it how: ``flatten`` writes a record's
fields at the top level, ``omit`` leaves a field out while it is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from halluscan.analyses.audit import GradingAudit
from halluscan.analyses.controls import Compared
from halluscan.analyses.errortypes import ErrorTypes
from halluscan.analyses.given import GivenBank
from halluscan.analyses.locator import LocatorAudit, SelfExtraction
from halluscan.analyses.nested import Nested
from halluscan.analyses.summary import (
    OMIT,
    BestCell,
    Controls,
    Finding,
    Heatmap,
    Interval,
    Summary,
)
from halluscan.analyses.verdict import Headline
from halluscan.provenance import Provenance


@dataclass(frozen=True)
class MapResponse:
    """One response drawn in the report: its text, the verdict, and its grade when it was graded."""

    question: str
    response: str
    verdict: str
    p_wrong: float
    graded: str | None  # "correct", "wrong", or None for a pair from the config
    bank: str = "own"  # the bank that read it: "own" (the model's answer) or "given"


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
class OffsetAuc:
    """The token-level bank at one token offset from the exact answer's first token."""

    offset: int
    auc: float | None  # out-of-fold, at the bank's layer, over the answers that reach this offset
    ci95: Interval | None  # bootstrap over questions
    n: int
    n_wrong: int
    layer0_auc: float | None = None  # the control: a probe on layer 0 (the token's identity)
    gain: float | None = None  # auc minus layer0_auc on the same tokens
    gain_ci95: Interval | None = None  # paired bootstrap over questions


@dataclass(frozen=True)
class TokenBank:
    """A probe per layer on every answer token from the exact answer's first token on.

    Labelled by the answer's grade, fitted with the study's grouped folds; what the activity maps
    and the live page colour tokens with. ``layer`` is the study's headline layer (chosen by the
    nested selection, before these scores were seen).
    """

    layer: int
    offsets: list[OffsetAuc]
    layers: list[int]  # the layers scored out of fold (the headline layer)
    pooled_by_layer: list[float | None]  # their out-of-fold AUC, every offset pooled
    n_answers: int
    n_tokens: int
    max_offset: int


@dataclass(frozen=True)
class SiteResult:
    """One site beside the residual stream: its heatmap, its nested cell, and how it differs.

    ``gain`` is the site's nested AUC minus the residual stream's, paired over the same outer
    folds, with a 95 % t-interval; ``differs`` when that interval clears zero.
    """

    site: str
    heatmap: Heatmap
    nested: Nested | None
    gain: float | None
    gain_ci95: Interval | None
    differs: bool


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
    versus: dict[str, Compared] | None = field(default=None, metadata=OMIT)
    nested: Nested | None = field(default=None, metadata=OMIT)
    # the same nested selection without the answers read at the fallback position
    nested_located: Nested | None = field(default=None, metadata=OMIT)
    locator_audit: LocatorAudit | None = field(default=None, metadata=OMIT)
    # the model's extraction of its own exact answers: on a pilot, or on every answer it located
    self_extraction: SelfExtraction | None = field(default=None, metadata=OMIT)
    # the grades checked by hand (``halluscan audit RUN --labels FILE``)
    grading_audit: GradingAudit | None = field(default=None, metadata=OMIT)
    error_types: ErrorTypes | None = field(default=None, metadata=OMIT)
    # folder of the saved own-answer bank (None: none could be fitted)
    probe_bank: str | None = None
    given_bank: GivenBank | None = field(default=None, metadata=OMIT)
    response_maps: list[ResponseMap] | None = field(default=None, metadata=OMIT)
    # the other sites probed (--sites), each against the residual stream
    sites: list[SiteResult] | None = field(default=None, metadata=OMIT)
    # the token-level bank (every answer token from the exact answer on)
    token_bank: TokenBank | None = field(default=None, metadata=OMIT)
    timings_s: dict[str, float] = field(default_factory=dict)
    provenance: Provenance | None = None
    ray: RayReport | None = field(default=None, metadata=OMIT)

    @property
    def has_probes(self) -> bool:
        """Whether the sweep ran (both classes had enough examples)."""
        return self.no_probes is None and self.heatmap is not None

    def strongest_baseline(self) -> tuple[str, Compared] | None:
        """The model's own signal (log-prob, p(True), sampling) with the best AUC, and its name."""
        own = (self.versus or {}).items()
        scored = [(k, b) for k, b in own if b.kind == "baseline" and b.auc is not None]
        return max(scored, key=lambda kv: kv[1].auc or 0.0) if scored else None


@dataclass(frozen=True)
class NamedBaseline:
    """A baseline with its name (the strongest of a study, in the suite)."""

    name: str
    scores: Compared = field(metadata={"flatten": True})


@dataclass(frozen=True)
class SuiteStudy:
    """What the suite keeps of one dataset's study."""

    n_graded: int
    accuracy: float
    locator_rules: dict[str, int]
    dataset: str = ""
    wall_s: float = 0.0
    no_probes: str | None = field(default=None, metadata=OMIT)
    headline: Headline | None = field(default=None, metadata=OMIT)
    best_baseline: NamedBaseline | None = field(default=None, metadata=OMIT)
    versus: dict[str, Compared] | None = field(default=None, metadata=OMIT)

    @classmethod
    def of(cls, m: Metrics, dataset: str, wall_s: float) -> SuiteStudy:
        """The suite's summary of a study's metrics."""
        s = m.summary
        base = cls(s.n_graded, s.accuracy, s.locator_rules, dataset, wall_s)
        if m.no_probes or m.headline is None:  # no sweep, or no exact-answer cell
            return replace(base, no_probes=m.no_probes or "no exact-answer cell with both classes")
        strongest = m.strongest_baseline()
        best = NamedBaseline(*strongest) if strongest else None
        return replace(base, headline=m.headline, best_baseline=best, versus=m.versus)


@dataclass(frozen=True)
class Transfer:
    """How the probes of a suite's studies transfer (rows: trained on; columns: tested on).

    ``auc``: at the cell chosen on the training run (the diagonal: each study's nested AUC);
    ``gain``: over the test run's strongest log-prob baseline, oriented on the training run;
    ``max_auc``: the best of the test heatmap's cells, chosen on the test data (optimistic).
    """

    runs: list[str]
    auc: list[list[float | None]]
    gain: list[list[float | None]] = field(default_factory=list)
    max_auc: list[list[float | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Suite:
    """A suite: one study per dataset on one model, and how their probes transfer."""

    name: str
    model: str
    datasets: dict[str, SuiteStudy]
    transfer: Transfer
    wall_s: float
