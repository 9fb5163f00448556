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

    monkeypatch.setattr("halluscan.models.loading.load_model", no_model)
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
    commands = ("run", "suite", "probe", "detect", "serve", "score", "choose", "audit", "data")
    for cmd in (*commands, "positions"):
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

    from halluscan.study.flags import example_yaml, load_yaml

    path = Path(__file__).resolve().parents[1] / "examples" / "study.yaml"
    # regenerate: from halluscan.study.flags import example_yaml; write example_yaml() there
    assert path.read_text() == example_yaml(), "examples/study.yaml is out of step with the config"
    data = load_yaml(str(path))
    assert set(data) == {f.name for f in dataclasses.fields(StudyConfig)}
    assert StudyConfig.from_dict(data) == StudyConfig(name="demo")


def test_an_over_long_question_is_refused_before_generation_and_leaves_nothing(
    tmp_path, monkeypatch, capsys
):
    from tests.conftest import tiny_folder

    model = tiny_folder(tmp_path / "model")
    rows = [f"What is the capital of Peru {i},Lima" for i in range(9)]
    rows.insert(3, "What is the capital of " + "Peru " * 200 + ",Lima")  # row 4: 205 words
    csv = tmp_path / "q.csv"
    csv.write_text("question,answer\n" + "\n".join(rows) + "\n")

    def no_generation(*a, **k):
        raise AssertionError("generation started")

    monkeypatch.setattr("halluscan.engine.generate.generate_batch", no_generation)
    args = ["run", "--model", str(model), "--dataset", str(csv), "--runs-dir", str(tmp_path / "r")]
    assert main([*args, "--max-new-tokens", "4", "--folds", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "q.csv: question 4 (its id or row number) is" in err and "context of 64" in err
    assert not (tmp_path / "r").exists()  # no run folder, no store


def test_batches_are_sized_by_tokens_as_well_as_rows():
    from halluscan.engine.generate import ROW_TOKENS, batch_order

    short, long = [0] * 10, [0] * (2 * ROW_TOKENS - 10)
    prompts = [short] * 20 + [long] * 5
    by_rows = batch_order(prompts, 8)
    assert [len(b) for b in by_rows] == [8, 8, 8, 1]  # rows only: a long prompt rides with shorts
    by_tokens = batch_order(prompts, 8, new_tokens=10)
    # the shorts fill batches; four longs (4 x 1,024 tokens) fill the budget of 8 x 512
    assert [len(b) for b in by_tokens] == [8, 8, 4, 4, 1]
    assert sorted(sum(by_tokens, [])) == list(range(25))
    for b in by_tokens:
        assert len(b) * (max(len(prompts[i]) for i in b) + 10) <= 8 * ROW_TOKENS


def test_titles_use_the_models_short_name():
    from halluscan.text import display_name, short_name

    assert display_name("/home/me/models/gemma-3-270m-it.Q4_K_M.gguf") == "gemma-3-270m-it.Q4_K_M"
    assert display_name("smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf)") == "smollm2"
    assert display_name("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    assert display_name("./local-hf-folder/") == "local-hf-folder"
    assert short_name("smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf)") == "smollm2"


def test_progress_is_plain_lines_in_a_log_and_a_bar_only_when_asked(capsys, monkeypatch):
    from halluscan import progress

    monkeypatch.delenv("HALLUSCAN_PROGRESS", raising=False)
    assert progress.mode() == "lines"  # pytest's stderr is not a terminal
    with progress.bar(3, "work", "q") as b:
        for _ in range(3):
            b.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err and "work: 100%" in err and err.endswith("\n")
    with progress.bar(3, "quiet work", "q", quiet=True) as b:
        b.update(3)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("HALLUSCAN_PROGRESS", "bar")
    with progress.bar(3, "forced", "q") as b:
        b.update(3)
    assert "\r" in capsys.readouterr().err
    args = build_parser().parse_args(["score", "--question", "Q?", "--progress", "off"])
    assert args.progress == "off"


def test_chat_template_and_revision_flags(tmp_path, capsys):
    from halluscan.models import load_model
    from halluscan.models.loading import CHAT, PLAIN
    from tests.conftest import tiny_folder

    model = str(tiny_folder(tmp_path / "model"))
    lm = load_model(model)
    assert not lm.is_chat and lm.provenance().prompt_format == PLAIN
    want = list(lm.tokenizer("Q: What is the capital of Peru\nA:").input_ids)
    assert lm.prompt_ids("What is the capital of Peru", "") == want
    capsys.readouterr()
    csv = tmp_path / "q.csv"
    csv.write_text("question,answer\n" + "".join(f"What is {i},Lima\n" for i in range(10)))
    base = ["run", "--model", model, "--dataset", str(csv), "--runs-dir", str(tmp_path / "r")]
    assert main([*base, "--chat-template", "on"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no chat template, so --chat-template on" in err
    assert main([*base, "--revision", "v1"]) == 2
    assert "--revision 'v1' applies to hub ids" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    # a chat model's template can be turned off, and provenance says which format was used
    smol = load_model("smollm2", chat_template="off")
    assert smol.provenance().prompt_format == PLAIN
    assert load_model("smollm2").provenance().prompt_format == CHAT


def test_a_semicolon_csv_and_a_one_row_file_say_what_is_wrong(tmp_path, capsys):
    semi = tmp_path / "semi.csv"
    semi.write_text("question;answer\nWhat is the capital of Peru?;Lima\n")
    runs = ["--runs-dir", str(tmp_path / "r")]
    assert main(["run", "--dataset", str(semi), *runs]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "looks ';'-separated; save it comma-separated" in err
    one = tmp_path / "one.csv"  # e.g. a file whose other rows repeat the first
    one.write_text("question,answer\nWhat is the capital of Peru?,Lima\n")
    assert main(["run", "--dataset", str(one), *runs]) == 2
    err = capsys.readouterr().err.strip()
    assert "one.csv holds 1 question, but --folds 5 needs at least 10" in err
    assert not (tmp_path / "r").exists()


def test_a_full_disk_stops_the_run_before_the_next_batch_is_generated(
    tmp_path, monkeypatch, capsys
):
    import shutil
    from collections import namedtuple

    from halluscan.engine import collect as collect_mod

    tiny = peru_france(tmp_path, 24)
    capsys.readouterr()
    generated = []
    real = collect_mod.generate

    def counting(*a, **k):
        generated.append(1)
        yield from real(*a, **k)

    monkeypatch.setattr(collect_mod, "generate", counting)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    args = ["run", "--name", "full", *tiny_flags(tiny), *SETTINGS.split()]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MB free, and a chunk takes about" in err
    assert "free disk space and run again (it resumes)" in err
    assert len(generated) == 1  # the first batch's chunk was taken; no second batch was generated
