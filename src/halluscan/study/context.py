"""The study context: everything a study's stages share, resolved once.

:meth:`StudyContext.build` reads the config, loads the dataset and selects the questions,
checks that the folds can be filled, loads the model where the device policy puts it, and
resolves the automatic batch size. Stages receive the context and re-derive none of it: the
run folder, the device and dtype, the batch size, the site, the bank position, how to prompt
and stop, and the grader each have this one owner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from halluscan.errors import HalluscanError
from halluscan.grade import Grader, grader_for
from halluscan.positions import BANK_POSITION
from halluscan.records import Dataset, Example, GenerateOptions, Question
from halluscan.study.config import StudyConfig
from halluscan.study.runs import RunDir
from halluscan.text import short_name

if TYPE_CHECKING:
    from halluscan.analyses.locator import SelfExtraction
    from halluscan.cluster import RayPlan
    from halluscan.cluster.worker import WorkerSetup
    from halluscan.engine.collect import CollectJob
    from halluscan.models.loading import LoadedModel


@dataclass(frozen=True)
class StudyPlan:
    """A study before its model loads: the config, the dataset and its questions, the run folder."""

    config: StudyConfig
    dataset: Dataset
    questions: tuple[Question, ...]
    run: RunDir
    grader: Grader

    @classmethod
    def of(cls, cfg: StudyConfig, dataset: Dataset | None = None) -> StudyPlan:
        """Check ``cfg``, load its dataset (unless given) and select the questions.

        Nothing is written.
        """
        from halluscan.data import load_dataset, select_questions

        cfg.validate()
        ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.split, cfg.data_dir)
        qs = select_questions(ds, cfg.n_questions, cfg.seed)
        check_folds(cfg, len(qs), ds)
        run = RunDir.named(cfg.name, cfg.runs_dir)
        mode = "asymmetric" if cfg.locator == "asymmetric" else "class-blind"
        return cls(cfg, ds, tuple(qs), run, grader_for(ds, mode))


@dataclass(frozen=True)
class StudyContext:
    """A study with its model loaded: what every stage receives.

    ``config`` holds the resolved batch size (the number ``auto`` became), so the store key and
    the provenance record it; ``generation`` is built from it once.
    """

    plan: StudyPlan
    lm: LoadedModel
    config: StudyConfig
    generation: GenerateOptions
    pilot: SelfExtraction | None = None  # the locator's pilot (``--locator auto``)

    @classmethod
    def build(cls, plan: StudyPlan) -> StudyContext:
        """Load the plan's model on its device; resolve the batch size and the locator."""
        from halluscan.models.loading import load_as

        cfg = plan.config
        lm = load_as(cfg)
        check_lengths(cfg, lm, plan.questions, plan.dataset.name)
        if not cfg.batch_size:  # auto: from the device, and recorded as the number it became
            cfg = replace(cfg, batch_size=auto_batch(cfg, lm, plan.questions))
        tried = None
        if cfg.locator == "auto":  # recorded as the locator it became (the store key says so)
            from halluscan.study import locating

            tried = locating.pilot(
                lm, plan.grader, plan.questions, cfg.generate_options(), cfg.seed
            )
            cfg = replace(cfg, locator=locating.SELF if tried.used else locating.RULE)
        return cls(plan, lm, cfg, cfg.generate_options(), tried)

    @property
    def dataset(self) -> Dataset:
        """The study's dataset."""
        return self.plan.dataset

    @property
    def questions(self) -> tuple[Question, ...]:
        """The questions the study asks (all, or the seeded sample of ``n_questions``)."""
        return self.plan.questions

    @property
    def run(self) -> RunDir:
        """The run folder."""
        return self.plan.run

    @property
    def grader(self) -> Grader:
        """The dataset's grader, with the config's locator."""
        return self.plan.grader

    @property
    def site(self) -> str:
        """The activation site the study reads."""
        return self.config.site

    @property
    def bank_position(self) -> str:
        """Where the probe banks are trained and read."""
        return BANK_POSITION

    @property
    def probe_device(self) -> str:
        """Where probes are fitted: the config's, else the model's device."""
        return self.config.probe_device or self.lm.device

    def answered(self, e: Example) -> list[int]:
        """A stored answer's whole sequence (prompt + response ids), as it was answered.

        Refused when the prompt is now tokenized to another length (the stored positions would
        point elsewhere).
        """
        prompt = self.lm.prompt_ids(e.question, self.config.system_prompt)
        if len(prompt) != e.n_prompt:
            raise HalluscanError(
                f"{self.run.root}: the prompt of {e.qid} is {len(prompt)} tokens now, "
                f"{e.n_prompt} when it was answered; re-run the study in a new folder"
            )
        return [*prompt, *e.response_ids]

    def collect_job(self) -> CollectJob:
        """What the collection loop needs, in this process or on a Ray worker."""
        from halluscan.engine.collect import CollectJob

        # captured as the store keeps it
        opts = replace(self.generation, capture_dtype=self.config.store_dtype)
        return CollectJob(
            opts,
            self.grader,
            tuple(self.config.positions),
            self.site,
            self_extract=self.config.locator == "self",
        )

    def ray_plan(self) -> RayPlan:
        """The config's Ray settings."""
        from halluscan.cluster import RayPlan

        c = self.config
        return RayPlan(
            c.ray, c.workers, c.cpus_per_worker, c.gpus_per_worker, c.ray_write, c.threads, c.quiet
        )

    def worker_setup(self) -> WorkerSetup:
        """What each Ray worker loads and runs: the model where the worker's reservation puts it."""
        from halluscan.cluster.worker import ModelSpec, WorkerSetup
        from halluscan.models.placement import worker_placement

        c = self.config
        device, dtype = worker_placement(c.gpus_per_worker, c.dtype)
        threads = self.ray_plan().worker_threads
        spec = ModelSpec(c.model, device, dtype, c.seed, threads, c.revision, c.chat_template)
        return WorkerSetup(spec, self.collect_job(), c.store_dtype)


def check_folds(cfg: StudyConfig, n_questions: int, ds: Dataset) -> None:
    """Refuse, before any generation, folds that the question count can never fill.

    Names the dataset and how many questions it holds, so that a file cut short (one row left
    after duplicates, a malformed file read as one row) is seen for what it is.
    """
    if cfg.folds * 2 > n_questions:
        held = len(ds.questions)
        took = f" (--n-questions {cfg.n_questions} of them)" if n_questions < held else ""
        many = "s" if held != 1 else ""
        raise HalluscanError(
            f"{ds.name} holds {held} question{many}{took}, but --folds {cfg.folds} needs at least "
            f"{2 * cfg.folds} ({cfg.folds} of each class); give a file with more questions (check "
            "that it was read as you meant), or fewer --folds (2 needs 4)"
        )


def check_lengths(
    cfg: StudyConfig, lm: LoadedModel, qs: tuple[Question, ...], dataset: str
) -> None:
    """Refuse, before any generation, a question whose prompt and answer exceed the context.

    Names the question (its id, or its row number in a file without ids), its token count and
    the model's context size: positions beyond it were never trained, and the batch would not fit.
    """
    limit = lm.context_length
    if limit is None:
        return
    need = cfg.max_new_tokens
    over = [
        (q.qid, n)
        for q in qs
        if (n := len(lm.prompt_ids(q.question, cfg.system_prompt))) + need > limit
    ]
    if over:
        qid, n = over[0]
        more = f" ({len(over) - 1} more are too)" if len(over) > 1 else ""
        model = short_name(lm.model_id)
        raise HalluscanError(
            f"{dataset}: question {qid} (its id or row number) is {n} tokens with the prompt; with "
            f"{need} new tokens that is beyond {model}'s context of {limit}{more}; shorten or "
            "remove it"
        )


def auto_batch(cfg: StudyConfig, lm: LoadedModel, qs: tuple[Question, ...]) -> int:
    """The automatic batch size of this study on ``lm``'s device (its longest prompt decides)."""
    import torch

    from halluscan.models.placement import auto_batch_size

    opts = cfg.generate_options()
    longest = max(len(lm.prompt_ids(q.question, cfg.system_prompt)) for q in qs)
    item = torch.finfo(getattr(torch, cfg.store_dtype)).bits // 8
    return auto_batch_size(
        lm.model, lm.device, longest + opts.max_new_tokens, opts.tail + opts.max_new_tokens, item
    )
