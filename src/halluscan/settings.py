"""A study's settings, built once from its config: what every stage receives instead of the raw config."""

from __future__ import annotations

from dataclasses import dataclass

from halluscan.config import StudyConfig
from halluscan.grade import Grader, grader_for
from halluscan.records import Dataset, GenerateOptions


@dataclass(frozen=True)
class StudySettings:
    """The config, its dataset, how to prompt and stop, and the grader of that dataset."""

    config: StudyConfig
    dataset: Dataset
    generation: GenerateOptions
    grader: Grader

    @classmethod
    def build(cls, cfg: StudyConfig, ds: Dataset | None = None) -> StudySettings:
        """Settings of ``cfg``; its dataset is loaded unless given."""
        if ds is None:
            from halluscan.data import load_dataset

            ds = load_dataset(cfg.dataset, cfg.split, cfg.data_dir)
        return cls(cfg, ds, cfg.generate_options(), grader_for(ds, cfg.locator))
