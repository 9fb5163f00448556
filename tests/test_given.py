"""Issue 13.

The given-answer bank (true and false given answers), `score --bank`, and labelled JSONL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from halluscan.cli import main
from halluscan.data.pairs import distractor, given_answers, is_alias
from halluscan.errors import HalluscanError
from halluscan.probes.crossfit import question_folds
from halluscan.probes.sweep import bootstrap_auc, folds_for
from halluscan.records import Question
from halluscan.study import metrics as metrics_io
from tests.conftest import PERU, peru_france, tiny_flags


@pytest.fixture(scope="module")
def world():
    from halluscan.data import build_world_facts

    return build_world_facts()


def test_distractors_are_never_aliases_and_repeat_under_the_seed(world):
    from halluscan.grade import Grader

    grader = Grader.for_dataset(world)
    every = given_answers(world.questions, world, seed=0)
    near = [a for a in every if a.kind == "plausible"]
    pairs = [a for a in every if a.kind != "plausible"]
    assert len(pairs) == 2 * len(world.questions)  # every world-facts question gets one
    by_id = {q.qid: q for q in world.questions}
    # a plausible false answer for capitals and countries (a city, a neighbour), never an alias
    assert len(near) > 900 and {a.relation for a in near} == {
        "capital_of_country",
        "country_of_capital",
        "country_of_city",
    }
    for a in near:
        q = by_id[a.qid]
        assert a.false and a.item_id == f"{q.qid}#plausible" and not is_alias(a.answer, q)
        assert grader.alias_span(q, a.response) is None
    for true, false in zip(pairs[::2], pairs[1::2], strict=True):
        q = by_id[true.qid]
        assert (true.false, false.false, true.answer, false.qid) == (False, True, q.answer, q.qid)
        assert not is_alias(false.answer, q), (q, false.answer)
        assert grader.alias_span(q, false.response) is None  # the study's own grader calls it wrong
        assert grader.alias_span(q, true.response) is not None
        assert f" {false.answer.lower()} " not in f" {q.question.lower()} "
    assert given_answers(world.questions, world, seed=0) == every  # the seed fixes the draw
    other = [a for a in given_answers(world.questions, world, seed=1) if a.kind != "plausible"]
    assert sum(a.answer != b.answer for a, b in zip(pairs, other, strict=True)) > len(pairs) // 4
    # a question's draw does not move when the study selects other questions of the dataset
    subset = given_answers(world.questions[::7], world, seed=0)
    assert {(a.qid, a.answer) for a in subset} <= {(a.qid, a.answer) for a in every}


def test_a_distractor_is_of_the_questions_type():
    q = Question(
        "q1", "What is the capital of Peru?", "Lima", ("Lima", "Ciudad de los Reyes"), "capital"
    )
    pool = ("Lima", "Paris", "Ciudad de los Reyes", "Rome", "Peru")  # Peru is in the question
    draws = {
        distractor(Question(f"q{i}", q.question, q.answer, q.aliases, q.relation), pool, 0)
        for i in range(40)
    }
    assert draws == {"Paris", "Rome"}
    assert distractor(q, ("Lima", "Lima city"), 0) is None  # nothing fits: the question is left out


def test_both_answers_of_a_question_fall_in_the_same_fold(world):
    pairs = given_answers(world.questions[:300], world, seed=0)
    y = np.array([int(a.false) for a in pairs])
    groups = [a.qid for a in pairs]
    splits = folds_for(y, groups, 5, 0)
    for _, test in splits:
        inside = {groups[i] for i in test}
        assert sum(groups.count(q) for q in inside) == len(test)  # both answers of each question
    folds = question_folds(y, groups, 5, 0)
    assert len(folds) == 300 and set(folds.values()) == set(range(5))


def test_a_csv_wrong_answer_column_is_read_and_checked(tmp_path):
    from halluscan.data import load_dataset

    p = tmp_path / "q.csv"
    p.write_text(
        "question,answer,wrong_answer\nWhat is the capital of Peru?,Lima,Paris\nWhat is 2+2?,4,\n"
    )
    ds = load_dataset(str(p))
    assert [q.wrong_answer for q in ds.questions] == ["Paris", ""]
    pairs = given_answers(ds.questions, ds, seed=0)
    # "4" has no false answer
    assert [(a.answer, a.false) for a in pairs] == [("Lima", False), ("Paris", True)]
    typed = tmp_path / "typed.csv"  # with a relation, the relation's other answers are its type
    typed.write_text(
        "question,answer,relation\nCapital of Peru?,Lima,capital\nCapital of "
        "Chile?,Santiago,capital\n"
    )
    ds = load_dataset(str(typed))
    assert [a.answer for a in given_answers(ds.questions, ds, seed=0)] == [
        "Lima",
        "Santiago",
        "Santiago",
        "Lima",
    ]
    bad = tmp_path / "bad.csv"
    row = "Capital of Peru?,Lima,Ciudad de los Reyes,ciudad de los reyes"
    bad.write_text(f"question,answer,aliases,wrong_answer\n{row}\n")
    with pytest.raises(
        HalluscanError, match="row 1: wrong_answer 'ciudad de los reyes' names the answer 'Lima'"
    ):
        load_dataset(str(bad))


def test_bootstrap_auc_resamples_questions():
    y = np.array([0, 1] * 30)
    scores = y + np.random.default_rng(0).normal(0, 0.8, len(y))
    auc, ci = bootstrap_auc(scores, y, [str(i // 2) for i in range(len(y))])
    assert 0.7 < auc < 1 and ci[0] < auc < ci[1]
    assert bootstrap_auc(scores, np.zeros_like(y), ["a"] * len(y))[1] is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model that splits "Lima." in two, and a CSV whose rows carry a wrong answer."""
    return peru_france(tmp_path_factory.mktemp("given"), 24)


def test_forked_answers_equal_teacher_forcing_and_the_generation_pass_stores_them(tiny, tmp_path):
    from halluscan.engine.extract import extract_positions
    from halluscan.engine.given import GivenWork, collect_given, forced
    from halluscan.models import load_model
    from halluscan.store import ActivationStore
    from halluscan.study.config import StudyConfig
    from halluscan.study.context import StudyContext, StudyPlan
    from halluscan.study.given import open_given_store
    from halluscan.study.pipeline import Stores, Timer, collect_stage, study_provenance
    from halluscan.study.runs import store_layout

    lm = load_model(str(tiny / "model"))
    cfg = StudyConfig(
        dataset=str(tiny / "q.csv"),
        batch_size=8,
        stop="none",
        max_new_tokens=3,
        store_dtype="float32",
        runs_dir=str(tmp_path),
        name="run",
        quiet=True,
    )
    plan = StudyPlan.of(cfg)
    ctx = StudyContext(plan, lm, cfg, cfg.generate_options())
    qs = list(plan.questions)
    items = forced(lm, given_answers(qs, plan.dataset, 0))
    assert [i.answer.response for i in items[:2]] == ["Lima.", "Rome."]
    # the full stop is never read
    assert [lm.tokenizer.decode(i.ids) for i in items[:2]] == ["Lima", "Rome"]
    assert items[0].cols == {"exact_answer_first": 0, "exact_answer_last": 0}
    layout = store_layout(cfg, lm.n_layers, lm.hidden_size)
    store = ActivationStore.open_or_create(ctx.run.store, key="k", layout=layout, provenance={})
    during = open_given_store(ctx, "k", study_provenance(ctx))
    assert collect_stage(ctx, Stores(store, GivenWork(items, during)), Timer()) > 0
    assert during.n_examples == len(items)  # every given answer, fed during generation
    plain_store = ActivationStore.open_or_create(
        tmp_path / "plain", key="k", layout=layout, provenance={}
    )
    # the forks leave the generation as it was:
    assert collect_stage(ctx, Stores(plain_store, None), Timer()) == 0.0
    assert [e["response_ids"] for e in store.examples()] == [
        e["response_ids"] for e in plain_store.examples()
    ]
    torch.testing.assert_close(store.position("-1"), plain_store.position("-1"))
    alone_ctx = StudyContext(
        StudyPlan.of(replace(cfg, name="alone")), lm, cfg, cfg.generate_options()
    )
    alone = open_given_store(alone_ctx, "k", study_provenance(alone_ctx))
    assert collect_given(lm, items, alone, ctx.generation) == len(items)
    assert collect_given(lm, items, alone, ctx.generation) == 0  # resumes: nothing left
    ids_a, ids_b = [e["qid"] for e in during.examples()], [e["qid"] for e in alone.examples()]
    a = during.position("exact_answer_last")
    b = alone.position("exact_answer_last")[[ids_b.index(i) for i in ids_a]]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # and both equal plain teacher forcing
    f = next(it for it in items if it.answer.item_id == ids_a[3])
    prompt = lm.prompt_ids(f.answer.question, cfg.system_prompt)
    plain = extract_positions(lm, [prompt + f.ids], [[len(prompt) + f.cols["exact_answer_last"]]])[
        0, :, 0
    ]
    torch.testing.assert_close(a[3], plain, atol=1e-4, rtol=1e-4)


def _run(tiny: Path, *extra: str) -> list[str]:
    settings = "--stop none --max-new-tokens 3 --batch-size 8 --quiet".split()
    return [*tiny_flags(tiny), *settings, *extra]


def test_a_study_trains_the_given_bank_and_score_picks_the_bank(tiny, capsys):
    from halluscan.study import runs
    from halluscan.study.runs import RunDir

    assert (
        main(["run", "--name", "g", "--folds", "3", "--p-true", "--samples", "2", *_run(tiny)]) == 0
    )
    assert "given-answer bank: layer" in capsys.readouterr().out
    run = RunDir.named("g", tiny / "runs")
    m = metrics_io.read(run)
    g = m.given_bank
    examples = runs.study_examples(run.open_store())
    own_wrong = sum(not e.correct and bool(e.exact_text) for e in examples)
    # a true and a random false answer per question, and the model's own wrong answers
    assert g.n_questions == 48 and 96 < g.n_answers <= 96 + own_wrong
    assert {"false", "own"} <= set(g.by_kind) and all(
        0 <= c.auc <= 1 for c in g.by_kind.values() if c.auc is not None
    )
    assert 0 <= g.best.auc <= 1 and g.best.ci95[0] <= g.best.auc <= g.best.ci95[1]
    meta = json.loads((run.probes_given / "probes.json").read_text())
    assert (meta["kind"], meta["position"], meta["best_layer"]) == (
        "given",
        "exact_answer_last",
        g.best.layer,
    )
    assert "given_bank" in m.timings_s and "given_answers_in_generation" in m.timings_s
    # the baselines ride along (issue 14): 8 log-prob scores and p(True), on the nested folds,
    # beside the cheap controls (issue 22)
    assert {
        "logprob_min_exact_answer",
        "p_true_true_first",
        "p_true_mean",
        "sampling_consistency",
        "text",
        "rule",
        "text+rule+relation",
        "layer 0 at the same position",
    } <= set(m.versus)
    assert m.versus["p_true_mean"].orientation in ("higher = wrong", "lower = wrong", "mixed")
    assert "p_true" in m.timings_s and {"nested_selection", "controls"} <= set(m.timings_s)
    assert m.headline.strongest in m.versus and m.finding.strongest_control == m.headline.strongest
    # --samples 2: the types of error, and a probe for those with enough questions
    types = m.error_types.types
    assert m.error_types.samples == 2 and sum(t.count for t in types.values()) > 0
    assert "Types of error" in run.report.read_text()
    # the headline, at the top
    top = run.report.read_text().split("class='finding'>")[1].split("</div>")[0]
    assert "the strongest cheap control" in top and f"<b>{m.headline.gain:.3f}</b>" in top
    assert "Given answers: scoring an answer the model did not write" in run.report.read_text()
    assert run.heatmap_given_png.is_file()

    base = ["score", "--model", str(tiny / "model"), "--runs-dir", str(tiny / "runs"), "--quiet"]
    probes = {"own": str(run.probes), "given": str(run.probes_given)}
    # --probes: the bank that folder holds, and score.json says which
    for bank, path in probes.items():
        out = tiny / f"score_{bank}"
        assert (
            main(
                [
                    *base,
                    "--question",
                    f"{PERU} 1",
                    "--answer",
                    "Lima",
                    "--probes",
                    path,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert json.loads((out / "score.json").read_text())["bank"] == bank
        assert f"{bank}-answer bank" in capsys.readouterr().out

    # the whole-tensor detector of this study, saved, and read by score --detector
    det = tiny / "det"
    flags = ["--no-cv", "--bins", "2", "--epochs", "2", "--out", str(det)]
    assert main(["detect", "--runs", str(run.root), *flags]) == 0
    assert "wrote" in capsys.readouterr().out and (det / "detect.json").is_file()
    out = tiny / "score_det"
    args = ["--question", f"{PERU} 1", "--answer", "Lima", "--probes", probes["given"]]
    assert main([*base, *args, "--detector", str(det), "--out", str(out)]) == 0
    scored = json.loads((out / "score.json").read_text())["detector"]
    assert 0 <= scored["p_wrong"] <= 1 and scored["trained_on"] == [str(run.root)]
    assert "whole-tensor detector" in capsys.readouterr().out
    assert main([*base, *args, "--detector", str(tiny), "--out", str(out)]) == 2  # no detector

    labelled = tiny / "labelled.jsonl"
    pair = (("Lima", 1), ("Paris", "false"))
    lines = [
        {"question": f"{PERU} {i}", "answer": a, "label": lab} for i in range(6) for a, lab in pair
    ]
    labelled.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tiny / "scored"
    assert (
        main([*base, "--jsonl", str(labelled), "--probes", probes["given"], "--out", str(out)]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["n_false"], summary["bank"]) == (12, 6, ["given"])
    assert 0 <= summary["auc"] <= 1 and 0 <= summary["verdict_accuracy"] <= 1
    assert "labelled answers: 12 (6 false); AUC of p_wrong" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows[:2]] == [True, False] and {r["bank"] for r in rows} == {
        "given"
    }


def test_answer_choice_reuses_the_studys_samples(tiny, monkeypatch):
    """The study above ran with --samples 2.

    `halluscan choose --samples 2` reads them instead of sampling again.
    """
    from halluscan.study import choice
    from halluscan.study.runs import RunDir

    run = RunDir.named("g", tiny / "runs")
    assert json.loads(run.samples.read_text())["samples"] == 2

    def no_sampling(*a, **kw):
        raise AssertionError("sampled again")

    monkeypatch.setattr(choice, "sample_answers", no_sampling)
    assert (
        main(["choose", "--run", str(run.root), "--samples", "2", "--questions", "10", "--quiet"])
        == 0
    )
    assert json.loads(run.answer_choice.read_text())["samples_reused_from_study"] is True
    # 3 samples were never drawn: it samples
    with pytest.raises(AssertionError, match="sampled again"):
        choice.answer_choice(run.root, samples=3, n_test=10, quiet=True)


def test_score_chooses_the_bank_by_what_it_is_given(tiny, monkeypatch, tmp_path):
    import argparse

    from halluscan.cli import score

    picked = []
    monkeypatch.setattr(
        score, "default_bank", lambda model, runs, kind: picked.append(kind) or Path("x")
    )
    monkeypatch.setattr(score, "_score_one", lambda scanner, args, out: 0)

    class FakeBank:
        meta: dict = {}
        position = "exact_answer_last"

    monkeypatch.setattr("halluscan.probes.bank.ProbeBank.load", lambda folder: FakeBank())
    monkeypatch.setattr(
        "halluscan.scan.Scanner", lambda lm, bank, **kw: argparse.Namespace(kind="k", layer=1)
    )
    monkeypatch.setattr("halluscan.models.loading.load_model", lambda *a, **kw: None)
    base = ["score", "--question", "Q?", "--out", str(tmp_path)]
    for extra, want in (
        ([], "own"),
        (["--answer", "A"], "given"),
        (["--answer", "A", "--bank", "own"], "own"),
        (["--bank", "given"], "given"),
    ):
        assert main([*base, *extra]) == 0
        assert picked.pop() == want, extra
    with pytest.raises(SystemExit) as err:  # argparse's choices: one line, exit 2
        main([*base, "--bank", "theirs"])
    assert err.value.code == 2


def test_a_label_needs_an_answer_and_a_known_value(tiny, tmp_path, capsys):
    for row, msg in (
        ({"question": "Q?", "label": True}, 'row 1 has a "label" but no "answer"'),
        (
            {"question": "Q?", "answer": "A", "label": "maybe"},
            "row 1: \"label\" is 'maybe'; give true/false or 1/0",
        ),
    ):
        p = tmp_path / "x.jsonl"
        p.write_text(json.dumps(row) + "\n")
        assert main(["score", "--jsonl", str(p), "--probes", str(tmp_path)]) == 2
        assert msg in capsys.readouterr().err


def test_a_suite_runs_a_study_per_dataset_and_resumes(tiny, capsys):
    """Issue 14.

    `halluscan suite` (on the tiny CSV and a reworded copy), its files, transfer, and resume.
    """

    from halluscan.study.runs import RunDir

    # the same kind of questions, but other ones: a transfer test (the same ones would be refused)
    rows = (tiny / "q.csv").read_text().splitlines()
    (tiny / "q2.csv").write_text(
        "\n".join([rows[0]] + [r.replace(" of ", " of the country ", 1) for r in rows[1:]]) + "\n"
    )
    flags = [
        "--model",
        str(tiny / "model"),
        "--runs-dir",
        str(tiny / "suites"),
        "--folds",
        "3",
        "--no-given-bank",
    ]
    flags += ["--stop", "none", "--max-new-tokens", "3", "--batch-size", "8", "--quiet"]
    args = ["suite", "--name", "s", "--datasets", str(tiny / "q.csv"), str(tiny / "q2.csv"), *flags]
    assert main(args) == 0
    root = RunDir.named("s", tiny / "suites")
    s = json.loads(root.suite_json.read_text())
    assert list(s["datasets"]) == ["q", "q2"] and s["transfer"]["runs"] == ["q", "q2"]
    d = s["datasets"]["q"]
    assert (
        d["headline"]["position"].startswith("exact_answer")
        and "logprob_mean_response" in d["versus"]
        and d["headline"]["strongest"] in d["versus"]
    )
    t = s["transfer"]
    # fixed-cell AUCs everywhere (the diagonal: each study's nested AUC); the optimistic maximum
    # over the test cells is at least the fixed cell's
    assert len(t["auc"]) == 2 and all(v is not None for row in t["auc"] for v in row)
    assert t["auc"][0][0] == d["headline"]["auc"]
    assert t["max_auc"][0][1] >= t["auc"][0][1] and t["max_auc"][0][0] is None
    page = root.suite_html.read_text()
    assert "Do the probes transfer?" in page and "strongest control" in page
    assert "at the cell chosen on the training run" in page
    out = capsys.readouterr().out
    assert "q: accuracy" in out and "strongest control" in out
    assert main(args) == 0  # finished studies are not run again
    again = json.loads(root.suite_json.read_text())
    assert all(again["datasets"][n]["wall_s"] < 1.0 for n in ("q", "q2"))
