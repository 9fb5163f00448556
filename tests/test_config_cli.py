from halluscan.cli import main
from halluscan.config import StudyConfig


def test_yaml_then_flags(tmp_path):
    import argparse

    from halluscan.config import add_config_flags, config_from_args

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


def test_unknown_position_is_one_line(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--runs-dir", str(tmp_path), "--positions", "last_q", "middle")
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
    qs = tmp_path / "q.csv"
    qs.write_text("question,answer\nQ?,A\n")
    code, err = run_cli(
        capsys, "run", "--model", "no-such-org/no-such-model", "--dataset", str(qs), "--runs-dir", str(tmp_path / "r")
    )
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("halluscan: error: model 'no-such-org/no-such-model': could not load it")


def test_missing_gguf_and_non_model_folder(capsys, tmp_path):
    qs = tmp_path / "q.csv"
    qs.write_text("question,answer\nQ?,A\n")
    code, err = run_cli(
        capsys, "run", "--model", str(tmp_path / "m.gguf"), "--dataset", str(qs), "--runs-dir", str(tmp_path / "r")
    )
    assert code == 2 and "GGUF file not found" in err
    code, err = run_cli(
        capsys, "run", "--model", str(tmp_path), "--dataset", str(qs), "--runs-dir", str(tmp_path / "r")
    )
    assert code == 2 and "no config.json in this folder" in err
