"""Issue 11.

Nothing lost, nothing silently wrong (locks, resume checks, bounded memory, one-line errors).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from halluscan.cli import main
from halluscan.errors import HalluscanError
from halluscan.store import ActivationStore
from tests.conftest import tiny_folder

N_RACE = 600


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A tiny model folder and a CSV of N_RACE questions (the model answers them all wrong)."""
    root = tmp_path_factory.mktemp("study")
    tiny_folder(root / "model")
    rows = ["question,answer"] + [f"What is the capital of Peru {i},Lima" for i in range(N_RACE)]
    (root / "q.csv").write_text("\n".join(rows) + "\n")
    return root


def run_args(root: Path, name: str) -> list[str]:
    return [
        "run",
        "--model",
        str(root / "model"),
        "--dataset",
        str(root / "q.csv"),
        "--runs-dir",
        str(root / "runs"),
        "--name",
        name,
        "--stop",
        "none",
        "--batch-size",
        "8",
        "--quiet",
    ]


def start(root: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "halluscan.cli", *run_args(root, name)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def lock_pid(run: Path) -> int | None:
    try:
        return int(json.loads((run / ".lock").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def committed(run: Path) -> int:
    try:
        return len(json.loads((run / "store" / "manifest.json").read_text())["chunks"])
    except (OSError, ValueError):
        return 0


def check_store(run: Path) -> None:
    store = ActivationStore.open(run / "store")
    ids = [e["qid"] for e in store.examples()]
    assert store.verify() == [] and len(ids) == N_RACE and len(set(ids)) == N_RACE


@pytest.mark.slow
def test_a_second_process_on_the_same_run_is_refused(tiny_study, capsys):
    run = tiny_study / "runs" / "race"
    first = start(tiny_study, "race")
    wait_for(lambda: lock_pid(run) == first.pid, first, "the first run took the lock")
    code = main(run_args(tiny_study, "race"))  # while the first one generates
    err = capsys.readouterr().err.strip()
    assert first.poll() is None, (
        "the first run must still be working for this test to mean anything"
    )
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert (
        f"is in use by process {first.pid} (halluscan run, since " in err
        and "use another --name" in err
    )
    out, ferr = first.communicate(timeout=300)
    assert first.returncode == 0, ferr
    check_store(run)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_leaves_no_lock_that_blocks_its_resume(tiny_study, capsys):
    run = tiny_study / "runs" / "killed"
    first = start(tiny_study, "killed")
    wait_for(lambda: committed(run) >= 2, first, "two chunks were committed")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    # killed mid-way, its note left behind
    assert lock_pid(run) == first.pid and committed(run) < N_RACE // 8
    assert main(run_args(tiny_study, "killed")) == 0, capsys.readouterr().err
    check_store(run)


def test_an_all_wrong_study_still_writes_its_report(tiny_study, capsys, caplog):
    assert main(run_args(tiny_study, "allwrong")) == 0
    out = capsys.readouterr().out
    run = tiny_study / "runs" / "allwrong"
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_graded"] == N_RACE and m["accuracy"] == 0.0 and m["probe_bank"] is None
    why = m["no_probes"]
    assert "0 correct and 600 wrong" in why and "5 more correct answers are needed" in why
    html = (run / "report.html").read_text()
    assert "accuracy <b>0.000</b>" in html and "5 more correct answers are needed" in html
    # the graded answers
    assert "What is the capital of Peru" in html and "Exact-answer location" in html
    assert not (run / "heatmap.png").exists()
    assert "warning: No probe heatmap" in caplog.text and "no probes (see the warning)" in out


def test_a_damaged_chunk_is_refused_by_name_on_resume(tmp_path):
    layout = {
        "positions": ["p"],
        "dtype": "float32",
        "sites": {"residual": {"layers": [0], "dims": [2]}},
    }
    store = ActivationStore.open_or_create(tmp_path / "s", key="k", layout=layout, provenance={})
    for c in range(2):
        store.append(
            {"residual": torch.ones(2, 1, 1, 2)},
            np.ones((2, 1), bool),
            [{"qid": f"{c}{i}"} for i in range(2)],
        )
    with pytest.raises(ValueError, match="id\\(s\\) 00 are already stored"):
        store.append({"residual": torch.ones(1, 1, 1, 2)}, np.ones((1, 1), bool), [{"qid": "00"}])
    with pytest.raises(ValueError, match="id\\(s\\) x are already stored"):
        store.append(
            {"residual": torch.ones(2, 1, 1, 2)},
            np.ones((2, 1), bool),
            [{"qid": "x"}, {"qid": "x"}],
        )
    data = (tmp_path / "s" / "residual" / "chunk_000001.npy").read_bytes()
    (tmp_path / "s" / "residual" / "chunk_000001.npy").write_bytes(
        data[:-1] + bytes([data[-1] ^ 1])
    )
    assert ActivationStore.open(tmp_path / "s").verify() == ["chunk_000001"]
    with pytest.raises(
        HalluscanError, match=r"chunk chunk_000001 is damaged \(.*residual/chunk_000001.npy"
    ):
        ActivationStore.open_or_create(tmp_path / "s", key="k", layout=layout, provenance={})


def test_the_batch_size_and_the_models_provenance_are_part_of_the_store_key():
    from dataclasses import replace

    from halluscan.provenance import ModelInfo
    from halluscan.study.config import StudyConfig
    from halluscan.study.runs import store_key

    prov = ModelInfo("smollm2", "gguf", "sha256:a", "llama", 30, 576, "torch.float32", "cpu")
    keys = {store_key(prov, "d", StudyConfig(batch_size=b)) for b in (16, 64)}
    assert len(keys) == 2
    variants = [
        prov,
        replace(prov, dtype="torch.bfloat16"),
        replace(prov, revision="sha256:b"),
        replace(prov, device="cuda"),
    ]
    # the same name, another model: refused
    assert len({store_key(p, "d", StudyConfig()) for p in variants}) == 4


def one_line(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_bad_input_is_refused_before_any_generation(tiny_study, capsys, tmp_path):
    runs = tmp_path / "runs"
    base = ["run", "--model", str(tiny_study / "model"), "--dataset", str(tiny_study / "q.csv")]
    err = one_line(capsys, *base, "--runs-dir", str(runs), "--folds", "10000")
    assert f"q.csv holds {N_RACE} questions, but --folds 10000 needs at least 20000" in err
    assert not runs.exists()
    for name in ("../../elsewhere", "a/b", ".."):
        err = one_line(capsys, *base, "--runs-dir", str(runs), "--name", name)
        assert f"name {name!r} is not a plain folder name" in err
    assert not runs.exists() and not (tmp_path / "elsewhere").exists()
    err = one_line(capsys, "score", "--question", "   ", "--answer", "Lima")
    assert "--question is blank" in err
    err = one_line(capsys, "score", "--question", "Q?", "--answer", " ")
    assert "--answer is blank" in err


def test_csv_quoting_errors_name_the_line_and_long_fields_are_read(tmp_path, caplog):
    from halluscan.data import load_dataset

    bad = tmp_path / "bad.csv"
    bad.write_text('question,answer\nWhat is x?,1\n"What is y?,2\nQ3,3\n')
    with pytest.raises(
        HalluscanError, match=r"bad.csv: line 3 is not valid CSV \(a quoted field is never closed\)"
    ):
        load_dataset(str(bad))
    bad.write_text('question,answer\nQ1,1\n"Q2"x,2\n')
    with pytest.raises(
        HalluscanError, match=r"line 3 is not valid CSV \(',' expected after '\"'\)"
    ):
        load_dataset(str(bad))
    long = tmp_path / "long.csv"
    text = "word " * 40_000  # 200,000 characters, over the csv module's default field limit
    long.write_text(f'question,answer\n"{text}",yes\nQ2,no\n')
    ds = load_dataset(str(long))
    assert len(ds.questions) == 2 and len(ds.questions[0].question) == len(text.strip())
    dup = tmp_path / "dup.csv"
    dup.write_text("question,answer\nQ1,a\nQ2,b\nQ1,a\nQ1,c\n Q2 ,b\n")
    ds = load_dataset(str(dup))
    assert [(q.question, q.answer) for q in ds.questions] == [("Q1", "a"), ("Q2", "b"), ("Q1", "c")]
    assert (
        "dup.csv: dropped 2 row(s) that repeat an earlier row's question and answer" in caplog.text
    )


def test_a_full_disk_while_saving_the_bank_or_a_figure_is_one_line(tmp_path, monkeypatch):
    import halluscan.atomic as atomic
    from halluscan.report import heatmap
    from tests.test_scan import random_bank

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(
        HalluscanError, match=r"could not write .*probes.safetensors: No space left on device"
    ):
        random_bank().save(tmp_path / "bank")
    with pytest.raises(
        HalluscanError, match=r"could not write .*heatmap.png: No space left on device"
    ):
        heatmap.heatmap_png(np.full((2, 2), 0.7), [0, 1], ["a", "b"], tmp_path / "heatmap.png", "t")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporary file is left behind


def test_no_warnings_from_our_calls_into_torch_or_transformers(tmp_path):
    """Generation with a shared-prefix cache and teacher-forced capture, warnings as errors."""
    import warnings

    from halluscan.engine.generate import generate
    from halluscan.models import load_model
    from halluscan.records import GenerateOptions, Question

    lm = load_model(str(tiny_folder(tmp_path / "m")))
    qs = [
        Question(str(i), f"What is the capital of {c}", "Lima", ("Lima",), "x")
        for i, c in enumerate(["Peru"] * 3)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = list(generate(lm, qs, GenerateOptions(batch_size=3, share_prefix=True), [0, 1]))
    assert out and out[0][1] is not None


def test_interrupt_message_starts_its_own_line(capsys, monkeypatch):
    from tqdm import tqdm

    import halluscan.cli as cli

    def busy(_args):
        bar = tqdm(total=10, desc="generate")
        bar.update(3)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_positions", busy)
    assert cli.main(["positions"]) == 130
    err = capsys.readouterr().err
    assert (
        err.splitlines()[-1]
        == "halluscan: interrupted; completed batches are kept and a re-run resumes"
    )


def test_a_reader_that_leaves_early_is_not_an_error():
    p = subprocess.Popen(
        [sys.executable, "-m", "halluscan.cli", "positions"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.close()  # like `| head` exiting at once
    assert p.wait(timeout=60) == 0 and p.stderr.read() == b""


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_attention_received_in_blocks_equals_the_full_matrix(monkeypatch, family):
    """The hooks' block-by-block sums equal the full [layer, query, key] matrix's (with padding)."""
    import halluscan.models.hooks as hooks
    from halluscan.engine.extract import forward_capture
    from halluscan.scan.attention import received, received_from_sums
    from tests.conftest import tiny_model

    model = tiny_model(family)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 100, (n,), generator=g).tolist() for n in (5, 7)]
    resps = [torch.randint(3, 100, (n,), generator=g).tolist() for n in (9, 4)]
    seqs = [p + r for p, r in zip(prompts, resps, strict=True)]
    k = max(map(len, resps))
    rows = torch.tensor(
        [
            [len(p) + min(j, len(r) - 1) for j in range(k)]
            for p, r in zip(prompts, resps, strict=True)
        ]
    )
    layers = [1, 2, 3]
    full = forward_capture(model, seqs, rows, {"attn_weights": layers}, 0)["attn_weights"]
    monkeypatch.setattr(hooks, "QUERY_BLOCK", 3)  # several blocks, one of them partly padding
    sums = forward_capture(model, seqs, rows, {"attn_received": layers}, 0)["attn_received"]
    for i, (p, r) in enumerate(zip(prompts, resps, strict=True)):
        a, b = len(p), len(p) + len(r)
        want = received(full[i, :, : len(r)].mean(dim=2)[..., a:b])
        torch.testing.assert_close(
            received_from_sums(sums[i, :, a:b]), want, equal_nan=True, rtol=1e-5, atol=1e-6
        )


def test_an_answer_beyond_the_context_is_refused_in_one_line(tmp_path):
    from halluscan.models import load_model
    from halluscan.scan import Scanner
    from tests.test_scan import random_bank

    lm = load_model(str(tiny_folder(tmp_path / "m")))  # a context of 64 positions
    scanner = Scanner(lm, random_bank())
    with pytest.raises(
        HalluscanError, match=r"the prompt and answer are \d+ tokens, beyond .*context of 64 tokens"
    ):
        scanner.score("What is the capital of Peru", " ".join(["Lima"] * 80))
    assert scanner.score("What is the capital of Peru", " ".join(["Lima"] * 40)).activity.shape == (
        4,
        40,
    )


def test_hostile_markup_in_user_text_is_drawn_literally(tmp_path):
    from halluscan.records import ScoreResult
    from halluscan.report import figures, heatmap

    evil = (
        '<b>bold</b> <a href="https://x.example">link</a> <span style="font-size:60px">big</span> '
        "$x^2$"
    )
    tokens = ["<b>", "Lima", "</b>", "$x$"]
    r = ScoreResult(
        question=evil,
        response=evil,
        tokens=tokens,
        activity=np.zeros((2, 4)),
        attention=np.zeros((2, 4)),
        activity_layers=[0, 1],
        attention_layers=[1, 2],
        p_wrong=0.5,
        verdict="correct",
        verdict_layer=1,
        verdict_token=3,
        verdict_position="last_token",
        exact_answer=None,
        standardised=False,
        attention_query="later tokens (mean)",
        response_ids=[1, 2, 3, 4],
    )
    figs = [figures.activity_figure([r]), figures.attention_figure(r)]
    figs.append(
        heatmap.heatmap_figure(
            np.full((2, 2), 0.7), np.zeros((2, 2)), [1, 1], [0, 1], ["a", "b"], evil
        )
    )
    for fig in figs:
        # plotly's JSON escapes "/" and "<"; compare the text itself
        js = json.dumps(json.loads(fig.to_json()))
        for raw in ("<b>bold", "<a href", "<span style"):
            assert raw not in js
        assert "&lt;b&gt;bold&lt;/b&gt; &lt;a href=" in js
    ticks = figs[1].layout.xaxis.ticktext
    assert list(ticks) == ["&lt;b&gt;", "Lima", "&lt;/b&gt;", "$x$"]
    assert figs[0].data[0].customdata[0][0] == "&lt;b&gt;"  # hover text too
    # 3D labels: plain text, entities would show
    assert figs[0].layout.scene.xaxis.ticktext == tuple(tokens)
    for p in figures.activity_files([r], tmp_path) + figures.attention_files(r, tmp_path):
        assert p.stat().st_size > 1000
