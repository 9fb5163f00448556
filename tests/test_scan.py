"""Per-response scoring on a tiny random Llama with a word-level tokenizer (fast tier)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.probes import ProbeBank
from halluscan.records import GenerateOptions
from halluscan.scan import Scanner, token_labels
from halluscan.scan.attention import normalise_layers, received
from tests.conftest import tiny_folder


def random_bank(layers=4, d=32, seed=0, position="exact_answer_last"):
    g = torch.Generator().manual_seed(seed)
    return ProbeBank(
        list(range(layers)),
        position,
        torch.randn(layers, d, generator=g),
        torch.zeros(layers),
        torch.zeros(layers, d),
        torch.ones(layers, d),
        {"best_layer": 2},
        torch.full((layers,), 0.5),
        torch.full((layers,), 2.0),
    )


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from halluscan.models import load_model

    return load_model(str(tiny_folder(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture(scope="module")
def scanner(lm):
    return Scanner(lm, random_bank(), generation=GenerateOptions(max_new_tokens=6))


def test_token_labels_are_the_texts_slices_without_markers():
    text = "The capital is Lima.\nOk"
    assert token_labels(text, [0, 3, 11, 14, 19, 20]) == [
        "The",
        "capital",
        "is",
        "Lima",
        ".",
        "⏎Ok",
    ]
    assert token_labels("a  b", [0, 1, 2]) == ["a", "␣", "b"]


def test_scores_have_the_specified_shapes_and_labels(scanner):
    r = scanner.score("What is the capital of Peru", "It is Lima .", relation="capital_of_country")
    assert r.tokens == ["It", "is", "Lima", "."]
    assert r.activity.shape == (4, 4) and r.attention.shape == (3, 4)  # layers 0..3; blocks 1..3
    assert (
        r.exact_answer == "Lima"
        and r.verdict_token == 2
        and r.verdict_position == "exact_answer_last"
    )
    bank = scanner.bank
    assert r.p_wrong == pytest.approx(
        float(torch.sigmoid(torch.tensor(r.activity[2, 2]))), abs=1e-6
    )
    assert r.verdict == ("hallucinated" if r.p_wrong >= 0.5 else "correct")
    js = r.to_json()
    assert {"verdict", "p_wrong", "tokens", "activity", "attention"} <= set(js)
    assert len(js["activity"]) == len(bank.layers) and len(js["activity"][0]) == 4
    assert js["attention"][0][-1] is None  # the last token has no later query to receive from
    json.dumps(js, allow_nan=False)


def test_no_exact_answer_falls_back_to_the_last_token(scanner):
    r = scanner.score("What is the capital of Peru", "it is a city")
    assert r.exact_answer is None and r.verdict_position == "last_token" and r.verdict_token == 3


def test_batches_equal_single_scores(scanner, lm):
    from halluscan.records import ToScore

    items = [
        ("What is the capital of Peru", [16, 6, 12, 15], "custom"),
        ("What is the capital of France", [13], "custom"),
        ("What is a city", [16, 6, 17, 18, 19, 11, 15], "custom"),
    ]
    many = scanner.score_many([ToScore(*it) for it in items], batch_size=3)
    for (q, ids, rel), m in zip(items, many, strict=True):
        one = scanner.score_ids(q, ids, relation=rel)
        np.testing.assert_allclose(m.activity, one.activity, atol=1e-4)
        np.testing.assert_allclose(m.attention, one.attention, atol=1e-4)
        assert m.tokens == one.tokens


def test_streaming_scores_equal_teacher_forcing(scanner):
    steps = list(scanner.stream("What is the capital of Peru"))
    assert 1 <= len(steps) <= 6
    forced = scanner.score_ids("What is the capital of Peru", [s.token_id for s in steps])
    np.testing.assert_allclose(
        np.stack([s.activity for s in steps], axis=1), forced.activity, atol=1e-4
    )
    li = scanner.bank.layers.index(scanner.layer)
    for t, s in enumerate(steps):
        assert s.p_wrong == pytest.approx(
            float(torch.sigmoid(torch.tensor(forced.activity[li, t]))), abs=1e-4
        )
    assert scanner.score("What is the capital of Peru").response_ids == [s.token_id for s in steps]


def test_standardised_activity_uses_the_training_statistics(lm):
    raw = Scanner(lm, random_bank()).score("What is the capital of Peru", "It is Lima .")
    z = Scanner(lm, random_bank(), standardise=True).score(
        "What is the capital of Peru", "It is Lima ."
    )
    np.testing.assert_allclose(z.activity, (raw.activity - 0.5) / 2.0, atol=1e-5)
    assert z.p_wrong == pytest.approx(raw.p_wrong) and z.to_json()["activity_scale"].startswith(
        "z-score"
    )


def test_attention_received_rows_are_normalised_per_layer():
    w = torch.softmax(
        torch.randn(3, 5, 5).masked_fill(torch.ones(5, 5).triu(1).bool(), -1e9), dim=-1
    )
    got = received(w)
    assert torch.isnan(got[:, -1]).all()
    want = torch.stack([torch.stack([w[k, j + 1 :, j].mean() for j in range(4)]) for k in range(3)])
    torch.testing.assert_close(got[:, :-1], want)
    n = normalise_layers(got)
    assert torch.allclose(n[:, :-1].amax(-1), torch.ones(3)) and torch.allclose(
        n[:, :-1].amin(-1), torch.zeros(3)
    )
    one = received(w, query=2)  # from token 2: tokens after it cannot receive
    torch.testing.assert_close(one[:, :3], w[:, 2, :3])
    assert torch.isnan(one[:, 3:]).all()
    assert torch.equal(normalise_layers(torch.ones(2, 4)), torch.zeros(2, 4))  # a constant layer


def test_figures_share_one_colour_scale_and_label_tokens(scanner, tmp_path):
    from halluscan.report import figures as plots

    a = scanner.score("What is the capital of Peru", "It is Rome .")
    b = scanner.score("What is the capital of France", "It is Paris .")
    lim = plots.shared_limit([a, b])
    both = np.abs(np.concatenate([a.activity.ravel(), b.activity.ravel()]))
    assert lim == pytest.approx(np.percentile(both, 98)) and 0 < lim <= both.max()
    fig = plots.activity_figure([a, b])
    surfaces = [t for t in fig.data if t.type == "surface"]
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(surfaces) == 2 and len(heatmaps) == 2
    for t in surfaces:
        assert (t.cmin, t.cmax, t.cmid) == (-lim, lim, 0)
    for t in heatmaps:
        assert (t.zmin, t.zmax, t.zmid) == (-lim, lim, 0)
        assert list(t.y) == a.activity_layers
    scale = surfaces[0].colorscale
    assert scale[0][1] == "#1a9850" and scale[-1][1] == "#d73027"  # green..red
    assert (
        list(fig.layout.xaxis.ticktext) == a.tokens and list(fig.layout.xaxis2.ticktext) == b.tokens
    )
    assert (
        "It is Rome ." in fig.layout.annotations[0].text
        and "capital of France" in fig.layout.annotations[1].text
    )
    paths = plots.activity_files([a, b], tmp_path) + plots.attention_files(a, tmp_path)
    assert sorted(p.name for p in paths) == [
        "activity.html",
        "activity.png",
        "attention.html",
        "attention.png",
        "attention_question.png",  # the question's tokens as keys
    ]
    for p in paths:
        assert p.stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))
    att = plots.attention_figure(a)
    assert list(att.layout.xaxis.ticktext) == a.tokens and list(att.data[0].y) == [1, 2, 3]
    assert (att.data[0].zmin, att.data[0].zmax) == (0, 1)


def test_scanner_refuses_a_bank_that_does_not_fit(lm):
    with pytest.raises(HalluscanError, match="trained at 'last_q'"):
        Scanner(lm, random_bank(position="last_q"))
    with pytest.raises(HalluscanError, match="64-dim activations"):
        Scanner(
            lm,
            ProbeBank(
                [0],
                "exact_answer_last",
                torch.zeros(1, 64),
                torch.zeros(1),
                torch.zeros(1, 64),
                torch.ones(1, 64),
                {"hidden": 64},
            ),
        )
    bank = random_bank()
    bank.meta["model"] = {"model_id": "someone/else", "source": "hub", "revision": "abc"}
    with pytest.raises(HalluscanError, match="trained on someone/else"):
        Scanner(lm, bank)
    with pytest.raises(HalluscanError, match="layer 9 has no probe"):
        Scanner(lm, random_bank(), layer=9)
    with pytest.raises(HalluscanError, match="answer is empty"):
        Scanner(lm, random_bank()).score("What is the capital of Peru", "  ")
    with pytest.raises(HalluscanError, match="outside the response's 4 tokens"):
        Scanner(lm, random_bank(), query=5).score("What is the capital of Peru", "It is Lima .")
    assert Scanner(lm, random_bank(), query=-1).score(
        "What is the capital of Peru", "It is Lima ."
    ).attention.shape == (3, 4)
    with pytest.raises(HalluscanError, match="generated no answer"):
        Scanner(lm, random_bank(), generation=GenerateOptions(max_new_tokens=0)).score(
            "What is the capital of Peru"
        )


def test_score_cli_writes_score_json_and_figures(lm, tmp_path, capsys):
    from halluscan.cli import main

    model = tiny_folder(tmp_path / "m")
    random_bank().save(tmp_path / "bank")
    out = tmp_path / "out"
    base = ["score", "--model", str(model), "--probes", str(tmp_path / "bank"), "--quiet"]
    q = ["--question", "What is the capital of Peru", "--answer", "It is Lima ."]
    assert main([*base, *q, "--out", str(out)]) == 0
    js = json.loads((out / "score.json").read_text())
    assert js["tokens"] == ["It", "is", "Lima", "."] and js["verdict"] in (
        "hallucinated",
        "correct",
    )
    assert np.array(js["activity"]).shape == (4, 4) and 0 <= js["p_wrong"] <= 1
    for name in ("activity.png", "activity.html", "attention.png", "attention.html"):
        assert (out / name).is_file()
    assert "verdict:" in capsys.readouterr().out

    rows = tmp_path / "qa.jsonl"
    rows.write_text(
        '{"question": "What is the capital of Peru", "answer": "It is Lima ."}\n'
        '{"id": "b", "question": "What is the capital of France"}\n'
    )
    assert main([*base, "--jsonl", str(rows), "--out", str(tmp_path / "many")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "many" / "scores.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [0, "b"] and lines[1]["answer_source"] == "generated"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok", "answer": "It"}\n{"answer": "no question"}\n')
    assert main([*base, "--jsonl", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.jsonl" in err and "question" in err, err
    bad.write_text('{"question": "ok", "answer": 3}\n')
    assert main([*base, "--jsonl", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "row 1" in capsys.readouterr().err
    assert main([*base, *q, "--query", "last", "--out", str(out)]) == 2
    assert "--query 'last'" in capsys.readouterr().err
    assert main([*base, "--jsonl", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


def test_long_responses_wrap_in_the_attention_png(tmp_path):
    from types import SimpleNamespace

    import matplotlib.image

    from halluscan.report import figures as plots

    n = 2 * plots.ATTN_WRAP + 5
    att = np.random.default_rng(0).random((3, n))
    common = {
        "attention_layers": [1, 2, 3],
        "question": "Q?",
        "response": "long",
        "attention_query": "later",
    }
    r = SimpleNamespace(tokens=[f"t{i}" for i in range(n)], attention=att, **common)
    short = plots.attention_png(
        SimpleNamespace(tokens=r.tokens[:10], attention=att[:, :10], **common),
        tmp_path / "short.png",
    )
    long = plots.attention_png(r, tmp_path / "long.png")
    h_short, w_short = matplotlib.image.imread(short).shape[:2]
    h_long, w_long = matplotlib.image.imread(long).shape[:2]
    assert h_long > 2 * h_short  # three rows of tokens, not one very wide strip
    assert w_long < 0.32 * plots.ATTN_WRAP * 110 + 400


def test_a_missing_default_bank_is_refused_with_the_command_that_makes_it(tmp_path):
    from halluscan.cli.score import default_bank
    from halluscan.errors import HalluscanError

    with pytest.raises(HalluscanError) as err:
        default_bank("org/other-model", str(tmp_path))
    msg = str(err.value)
    assert "`halluscan run --model org/other-model --runs-dir " + str(tmp_path) + "`" in msg
    assert "other-model-world-facts" in msg and "\n" not in msg
    with pytest.raises(HalluscanError, match=r"`halluscan run --runs-dir"):
        default_bank("smollm2", str(tmp_path), kind="given")
    random_bank().save(tmp_path / "demo" / "probes")
    assert default_bank("smollm2", str(tmp_path)) == tmp_path / "demo" / "probes"


def test_a_study_folder_scores_given_and_generated_answers_with_their_own_banks(lm, tmp_path):
    """Handed runs/NAME, the scanner chooses the bank as `halluscan score` does."""
    own, given = random_bank(seed=1), random_bank(seed=2)
    own.meta["kind"], given.meta["kind"] = "own", "given"
    own.save(tmp_path / "run" / "probes")
    given.save(tmp_path / "run" / "probes_given")
    opts = GenerateOptions(max_new_tokens=4)
    both = Scanner(lm, tmp_path / "run", generation=opts)
    q, a = "what is the capital of peru ?", "the capital of peru is lima ."
    r = both.score(q, a)
    alone = Scanner(lm, given, generation=opts).score(q, a)
    assert r.bank == "given" and r.p_wrong == pytest.approx(alone.p_wrong)
    assert r.p_wrong != pytest.approx(Scanner(lm, own, generation=opts).score(q, a).p_wrong)
    generated = both.score(q)
    assert generated.bank == "own" and generated.source.answer_source == "generated"
    assert [s.p_wrong for s in both.stream(q)] == [
        s.p_wrong for s in Scanner(lm, own, generation=opts).stream(q)
    ]
    # a bank's own folder reads every answer with that bank
    assert Scanner(lm, tmp_path / "run" / "probes", generation=opts).score(q, a).bank == "own"
    # a study without a given-answer bank refuses a given answer, naming the other bank
    (tmp_path / "run" / "probes_given" / "probes.json").unlink()
    with pytest.raises(HalluscanError, match="no given-answer bank.*probes'"):
        Scanner(lm, tmp_path / "run", generation=opts).score(q, a)
    with pytest.raises(HalluscanError, match="neither a probe bank nor a study folder"):
        Scanner(lm, tmp_path / "nothing")


def test_score_writes_a_new_folder_each_time_and_checks_out_before_scoring(
    tmp_path, capsys, monkeypatch
):
    import os
    from pathlib import Path

    from halluscan.cli import main
    from halluscan.cli.score import SHOWN, clip

    model = tiny_folder(tmp_path / "m")
    random_bank().save(tmp_path / "bank")
    base = ["score", "--model", str(model), "--probes", str(tmp_path / "bank"), "--quiet"]
    base += ["--runs-dir", str(tmp_path / "runs")]
    q = ["--question", "What is the capital of Peru", "--answer", "It is Lima ."]
    assert main([*base, *q]) == 0 and main([*base, *q]) == 0
    made = sorted((tmp_path / "runs" / "score").iterdir())
    assert len(made) == 2 and all((f / "score.json").is_file() for f in made)
    assert f"wrote {made[-1]}/: score.json, activity.png" in capsys.readouterr().out

    def no_model(*a, **k):
        raise AssertionError("the model loaded before the refusal")

    monkeypatch.setattr("halluscan.models.loading.load_model", no_model)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    if os.access(locked, os.W_OK):  # root writes anywhere: deny as the kernel would a user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and real(p, m))
    try:
        assert main([*base, *q, "--out", str(locked / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{locked} is not writable" in err
    finally:
        os.chmod(locked, 0o755)
    assert main([*base, *q, "--out", str(tmp_path / "bank" / "probes.json")]) == 2
    assert "a file, not a folder" in capsys.readouterr().err
    long = "word " * 5000
    assert len(clip(long)) < SHOWN + 80 and "25,000 characters" in clip(long)
    assert clip("Lima.") == "Lima."


def test_score_checks_its_banks_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from halluscan.cli import main

    def no_model(*a, **k):
        raise AssertionError("the model loaded before the refusal")

    monkeypatch.setattr("halluscan.models.loading.load_model", no_model)
    q = ["score", "--question", "Q?", "--answer", "A.", "--runs-dir", str(tmp_path), "--quiet"]
    assert main([*q, "--model", "org/other"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no given-answer bank" in err and "--model org/other" in err
    random_bank().save(tmp_path / "run" / "probes")  # a study folder with its own bank only
    assert main([*q, "--probes", str(tmp_path / "run")]) == 2
    assert "no probe bank there (nor a study folder with a given-answer bank" in (
        capsys.readouterr().err
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "Q?"}\n')  # a generated answer: the own bank, which exists
    with pytest.raises(AssertionError, match="the model loaded"):
        main([*q[:1], "--jsonl", str(rows), "--probes", str(tmp_path / "run"), "--quiet"])
