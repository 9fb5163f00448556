"""Issue 24: a new user's first hour. Names that do not collide, refusals before the wait, help."""

from __future__ import annotations

import time

import pytest

from halluscan.cli import build_parser, main
from halluscan.study.config import StudyConfig, default_name
from tests.conftest import peru_france, tiny_flags

SETTINGS = "--stop none --max-new-tokens 3 --batch-size 8 --quiet --no-given-bank --folds 3"


def test_a_study_is_named_by_its_model_and_dataset_unless_named():
    assert StudyConfig().name == "demo"  # the demo keeps its name
    assert StudyConfig(dataset="winobias").name == "smollm2-winobias"
    assert StudyConfig(model="/models/gemma-3-270m.gguf").name == "gemma-3-270m-world-facts"
    assert default_name("org/Llama-3.2-1B", "/data/my questions.csv") == "Llama-3.2-1B-my-questions"
    assert StudyConfig(dataset="winobias", name="mine").name == "mine"


def test_a_run_on_another_studys_folder_is_refused_before_the_model_loads(
    tmp_path, monkeypatch, capsys
):
    tiny = peru_france(tmp_path, 24)
    args = ["run", "--name", "a", *tiny_flags(tiny), *SETTINGS.split()]
    assert main(args) == 0
    capsys.readouterr()

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr("halluscan.models.load_model", no_model)
    t = time.perf_counter()
    assert main([*args, "--n-questions", "30"]) == 2
    took = time.perf_counter() - t
    err = capsys.readouterr().err
    assert "holds a study made with n_questions=0, not 30" in err and "--name a-2" in err
    assert took < 10  # seconds, not a model load
    # a busy folder too: its lock is taken before anything loads
    from halluscan.study.runs import RunDir

    with RunDir(tiny / "runs" / "a").hold("another run"):
        assert main(args) == 2
    assert "is in use by process" in capsys.readouterr().err


def test_version_help_examples_and_choices(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("halluscan ")
    for cmd in ("run", "suite", "probe", "score", "choose", "audit", "data", "positions"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert "examples:" in out and f"halluscan {cmd}" in out.split("examples:")[1], cmd
    with pytest.raises(SystemExit) as e:
        main(["run", "--locator", "guess"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "invalid choice: 'guess'" in err and len(err.strip().splitlines()) == 1
    assert main(["positions"]) == 0
    out = capsys.readouterr().out
    assert "exact_answer_last  " in out and "where the probe banks read" in out


def test_the_example_study_yaml_holds_every_key_and_loads_as_the_defaults():
    import dataclasses
    from pathlib import Path

    from halluscan.study.flags import load_yaml

    path = Path(__file__).resolve().parents[1] / "examples" / "study.yaml"
    data = load_yaml(str(path))
    assert set(data) == {f.name for f in dataclasses.fields(StudyConfig)}
    assert StudyConfig.from_dict(data) == StudyConfig(name="demo")
