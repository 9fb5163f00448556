import re

import pytest

from halluscan.cli import main
from halluscan.errors import HalluscanError
from halluscan.study.config import StudyConfig


def test_yaml_then_flags(tmp_path):
    import argparse

    from halluscan.study.flags import add_config_flags, config_from_args

    y = tmp_path / "c.yaml"
    y.write_text("batch_size: 8\nseed: 3\npositions: [last_q, '-1']\n")
    p = argparse.ArgumentParser()
    add_config_flags(p)
    cfg = config_from_args(p.parse_args(["--config", str(y), "--seed", "5"]))
    assert (cfg.batch_size, cfg.seed, cfg.positions) == (8, 5, ("last_q", "-1"))
    assert StudyConfig().positions[-1] == "-1"


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def run_model(capsys, tmp_path, model: str):
    """``run --model MODEL`` on ten questions (enough for 5 folds): exit code and stderr."""
    qs = tmp_path / "q.csv"
    qs.write_text("question,answer\n" + "".join(f"Q{i}?,A\n" for i in range(10)))
    return run_cli(
        capsys, "run", "--model", model, "--dataset", str(qs), "--runs-dir", str(tmp_path / "r")
    )


def test_unknown_position_is_one_line(capsys, tmp_path):
    code, err = run_cli(
        capsys, "run", "--runs-dir", str(tmp_path), "--positions", "last_q", "middle"
    )
    assert code == 2 and err.count("\n") == 0
    assert "unknown position 'middle'; valid positions: last_q" in err


def test_unknown_config_key(capsys, tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("batchsize: 8\n")
    code, err = run_cli(capsys, "run", "--config", str(y))
    assert code == 2 and "unknown config key(s) batchsize" in err


def test_bad_csv_is_one_line_and_writes_nothing(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,gold\nQ?,A\n")
    code, err = run_cli(capsys, "run", "--dataset", str(bad), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 0 and "bad.csv: missing column 'answer'" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_model_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = run_model(capsys, tmp_path, "no-such-org/no-such-model")
    assert code == 2 and err.count("\n") == 0
    assert err.startswith(
        "halluscan: error: model 'no-such-org/no-such-model' is not in the Hugging Face cache"
    )
    assert "(HF_HUB_OFFLINE is set)" in err


def test_unknown_hub_id_without_network_fails_before_any_download_attempt(
    capsys, tmp_path, monkeypatch
):
    """No network.

    One probe of the host, then one line; transformers (and its retries) is never called.
    """
    from halluscan.models import hub, loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    probed = []
    monkeypatch.setattr(
        hub, "_reachable", lambda host, timeout: probed.append((host, timeout)) or False
    )
    monkeypatch.setattr(
        loading, "_load_pretrained", lambda *a, **k: pytest.fail("tried to download")
    )
    code, err = run_model(capsys, tmp_path, "org/model")
    assert code == 2 and err.count("\n") == 0 and "huggingface.co cannot be reached" in err
    assert probed == [("huggingface.co", 3.0)] and not (tmp_path / "r").exists()


def test_missing_gguf_and_non_model_folder(capsys, tmp_path):
    code, err = run_model(capsys, tmp_path, str(tmp_path / "m.gguf"))
    assert code == 2 and "GGUF file not found" in err
    folder = tmp_path / "folder"
    folder.mkdir()
    code, err = run_model(capsys, tmp_path, str(folder))
    assert code == 2 and "no config.json in this folder" in err


@pytest.mark.parametrize(
    "yaml_text,pattern",
    [
        (
            "positions: last_q\n",
            r"config key positions must be a list of position names.*got 'last_q' \(str\)",
        ),
        ("positions: 5\n", r"config key positions must be a list of position names.*got 5 \(int\)"),
        ("folds: '5'\n", r"config key folds must be an integer, got '5' \(str\)"),
        ("folds: 2.5\n", r"config key folds must be an integer, got 2.5 \(float\)"),
        ("quiet: 'yes'\n", r"config key quiet must be true or false, got 'yes' \(str\)"),
        (
            "probe_c: 1e-2\n",
            r"config key probe_c must be a number, got '1e-2' \(str\) \(YAML reads 1e-2 as text",
        ),
        ("name: 7\n", r"config key name must be a string, got 7 \(int\)"),
        ("seed:\n", r"config key seed must be an integer, got None"),
        (
            "n_questions: -1\n",
            r"config: n_questions=-1 is negative; give 0 \(all\) or a positive count",
        ),
        ("probe_c: 0\n", r"config: probe_c=0 must be a positive number"),
        ("probe_c: -0.5\n", r"config: probe_c=-0.5 must be a positive number"),
        ("name: '  '\n", r"config: name is empty"),
        (
            "positions: [last_q, '-1', last_q]\n",
            r"config: positions lists 'last_q' more than once; give each once",
        ),
    ],
)
def test_bad_yaml_values_name_the_key_and_type(capsys, tmp_path, yaml_text, pattern):
    y = tmp_path / "c.yaml"
    y.write_text(yaml_text)
    code, err = run_cli(capsys, "run", "--config", str(y), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 0
    assert re.search(pattern, err), err
    assert not (tmp_path / "runs").exists()


def test_yaml_positions_may_be_unquoted_numbers(tmp_path):
    from halluscan.study.flags import load_yaml

    y = tmp_path / "c.yaml"
    y.write_text("positions: [last_q, -1, -8]\nprobe_c: 1\n")
    assert load_yaml(y) == {"positions": ("last_q", "-1", "-8"), "probe_c": 1}
    assert StudyConfig(**load_yaml(y)).validate().probe_c == 1


def test_python_api_values_are_checked_too():
    with pytest.raises(HalluscanError, match=r"config: folds must be an integer, got '5' \(str\)"):
        StudyConfig(folds="5").validate()  # type: ignore[arg-type]
    with pytest.raises(HalluscanError, match=r"config: positions must be a list of position names"):
        StudyConfig(positions="last_q").validate()  # type: ignore[arg-type]
