"""Tier 2: the bundled SmolLM2-135M-Instruct (one session-scoped load)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from halluscan.data import build_world_facts
from halluscan.engine import extract_positions
from halluscan.engine.generate import generate
from halluscan.records import GenerateOptions
from halluscan.study.config import StudyConfig

pytestmark = pytest.mark.slow


def test_bundled_model_shape_and_provenance(smol):
    p = smol.provenance()
    assert p.architecture == "llama" and p.n_layers == 30 and p.hidden_size == 576
    assert p.revision.startswith("sha256:") and smol.is_chat


def test_capture_during_generation_equals_teacher_forcing(smol):
    qs = [q for q in build_world_facts().questions if q.relation == "capital_of_country"][:6]
    opts = GenerateOptions(
        max_new_tokens=12, system_prompt="Answer the question in one short sentence.", batch_size=6
    )
    gens, states, tail = next(generate(smol, qs, opts, layers=list(range(31))))
    assert states is not None and states.shape[:2] == (6, 31)
    for i, g in enumerate(gens):
        p, r = len(g.prompt_ids), len(g.response_ids)
        assert r >= 1 and g.response.strip()
        idx = list(range(p - tail, p + r))
        ref = extract_positions(smol, [list(g.prompt_ids) + list(g.response_ids)], [idx])[0]
        got = states[i, :, : tail + r]
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=2e-3 * float(ref.abs().max()))


@pytest.fixture(scope="module")
def slice_run(tmp_path_factory):
    from halluscan.study.pipeline import run_study

    root = tmp_path_factory.mktemp("runs")
    # the second answer is generated
    pair = (
        {
            "question": "What is the capital of Australia?",
            "answer": "The capital of Australia is Sydney.",
        },
        {"question": "What is the capital of Australia?"},
    )
    cfg = StudyConfig(
        n_questions=72,
        batch_size=36,
        folds=3,
        name="slice",
        runs_dir=str(root),
        quiet=True,
        report_pairs=(pair,),
    )
    return cfg, run_study(cfg), root / "slice"


def test_end_to_end_small_slice(slice_run):
    from halluscan.study.pipeline import run_study

    cfg, m, out = slice_run
    for f in (
        "report.html",
        "metrics.json",
        "heatmap.png",
        "heatmap_gain.png",
        "heatmap.html",
        "provenance.json",
        "store/manifest.json",
        "probes/probes.json",
        "probes/probes.safetensors",
    ):
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n_graded"] == 72 and 0 < saved["accuracy"] < 1
    auc = np.array(saved["heatmap"]["auc"], dtype=float)
    assert auc.shape == (31, 15) and saved["heatmap"]["layers"] == list(range(31))
    # layer 0 at last_q: same token for all
    assert saved["heatmap"]["auc"][0][0] == pytest.approx(0.5, abs=0.02)
    for key in (
        "accuracy_by_relation",
        "exact_answer_found",
        "best_cells",
        "controls",
        "locator_agreement_correct",
        "timings_s",
        "headline",
        "versus",
        "nested",
        "locator_audit",
    ):
        assert key in saved
    head = saved["headline"]
    assert head["strongest"] in saved["versus"] and 0 <= head["ci95"][0] <= head["auc"] <= 1
    assert saved["provenance"]["dataset"]["sha256"] == build_world_facts().sha256
    cell = saved["best_cells"]["exact_answer_last"]
    assert cell["ci95"][0] <= cell["auc"] <= cell["ci95"][1] and isinstance(
        cell["informative"], bool
    )
    from halluscan.probes import ProbeBank

    bank = ProbeBank.load(out / "probes")
    assert (
        bank.layers == list(range(31))
        and bank.position == "exact_answer_last"
        and bank.coef.shape == (31, 576)
    )
    html = (out / "report.html").read_text()
    assert (
        "Probe cell, chosen without the test data" in html
        and "Is it the model, or the answer's text?" in html
        and "Exact-answer location, audited" in html
        and "data:image/png;base64," in html
        and "plotly" in html.lower()
    )
    # per-response maps: the automatic pair (one wrong-answered question, its gold and the model's
    # own answer, both given) and the config's pair, drawn and in the report
    maps = {m["name"]: m for m in saved["response_maps"]}
    assert set(maps) == {"auto", "pair1"}
    auto = maps["auto"]["responses"]
    assert [r["graded"] for r in auto] == [
        "true (the gold answer)",
        "false (the model's own answer)",
    ]
    assert auto[0]["question"] == auto[1]["question"]
    assert maps["pair1"]["responses"][0]["response"] == "The capital of Australia is Sydney."
    # the rule of `halluscan score`: the given answer is read by the given-answer bank
    assert [r["bank"] for r in maps["pair1"]["responses"]] == ["given", "own"]
    assert [r["bank"] for r in auto] == ["given", "given"]
    for pm in maps.values():
        for f in [pm["activity_png"], pm["activity_html"], *pm["attention_png"]]:
            assert Path(f).is_file() and Path(f).stat().st_size > 1000
    assert html.count("activity surfaces") == 2 and "One response, token by token" in html
    # a second run with the same config resumes: nothing is generated again
    m2 = run_study(cfg)
    assert m2.summary.n_graded == 72
    assert m2.timings_s["generate_extract"] < m.timings_s["generate_extract"]


def test_scanner_on_the_bundled_model(smol, slice_run):
    """Known labels from the real BPE tokenizer; streaming scores equal teacher-forced ones."""
    from halluscan.probes import ProbeBank
    from halluscan.scan import Scanner

    _, _, out = slice_run
    scanner = Scanner(smol, ProbeBank.load(out / "probes"))
    r = scanner.score(
        "What is the capital of Peru?",
        "The capital of Peru is Lima.",
        relation="capital_of_country",
    )
    assert r.tokens == ["The", "capital", "of", "Peru", "is", "Lima", "."]
    assert r.exact_answer == "Lima" and r.verdict_token == 5 and r.activity.shape == (31, 7)
    steps = list(scanner.stream("What is the capital of Peru?"))
    forced = scanner.score_ids("What is the capital of Peru?", [s.token_id for s in steps])
    acts = np.stack([s.activity for s in steps], axis=1)
    np.testing.assert_allclose(
        acts, forced.activity, atol=1e-3 * max(1.0, float(np.abs(acts).max()))
    )
    # with the study's token-level bank: grey before the answer, the same cells from it on
    from halluscan.scan.banks import token_bank_of

    tokens = Scanner(smol, ProbeBank.load(out / "probes"), tokens=token_bank_of(out))
    assert tokens.tokens is not None
    steps = list(tokens.stream("What is the capital of Peru?"))
    forced = tokens.score_ids("What is the capital of Peru?", [s.token_id for s in steps])
    acts = np.stack([s.activity for s in steps], axis=1)
    both = np.isfinite(acts).all(0) & np.isfinite(forced.activity).all(0)
    assert both.any() and np.isnan(forced.activity[:, 0]).all()  # "The" is before the answer
    np.testing.assert_allclose(acts[:, both], forced.activity[:, both], rtol=1e-3, atol=1e-2)


def test_answer_choice_on_held_out_questions(slice_run):
    from halluscan.study.choice import answer_choice

    _, _, out = slice_run
    r = answer_choice(out, samples=2, n_test=12, quiet=True)
    a = r.accuracy
    assert r.n_questions == 12 and r.samples == 2 and all(0 <= v <= 1 for v in a.values())
    assert a["oracle"] >= max(a["probe"], a["majority"], a["sample_mean"])
    assert r.n_train_examples <= 72 - 12  # the held-out questions are not trained on
    assert (out / "answer_choice.json").is_file()


def test_shared_prefix_gives_the_same_answers(smol):
    from dataclasses import replace

    qs = [q for q in build_world_facts().questions if q.relation == "currency_of_country"][:8]
    opts = GenerateOptions(
        max_new_tokens=16, system_prompt="Answer the question in one short sentence.", batch_size=8
    )
    a, sa, _ = next(generate(smol, qs, opts, layers=[0, 15, 30]))
    b, sb, _ = next(generate(smol, qs, replace(opts, share_prefix=False), layers=[0, 15, 30]))
    assert [g.response for g in a] == [g.response for g in b]
    assert sa is not None and sb is not None
    for i, g in enumerate(a):
        n = 8 + len(g.response_ids)
        torch.testing.assert_close(
            sa[i, :, :n], sb[i, :, :n], rtol=1e-3, atol=2e-3 * float(sb[i, :, :n].abs().max())
        )


def test_sweep_agrees_with_sklearn_on_real_activations(slice_run):
    from sklearn.linear_model import LogisticRegression

    from halluscan.probes.sweep import auc_rows, cv_auc, folds_for
    from halluscan.store import ActivationStore

    cfg, _, out = slice_run
    store = ActivationStore.open(out / "store")
    ex = store.examples()
    keep = store.valid()[:, store.positions.index("exact_answer_last")]
    y = np.array([0 if e["correct"] else 1 for e in ex])[keep]
    x = store.position("exact_answer_last")[torch.from_numpy(keep)]
    splits = folds_for(y, [e["qid"] for e, k in zip(ex, keep, strict=True) if k], 3, 0)
    ours = cv_auc(x, y, splits, cfg.probe_c)  # [fold, layer]
    xt = x[:, ::3].numpy()  # every third layer keeps the test quick
    for f, (tr, te) in enumerate(splits):
        mu, sd = xt[tr].mean(0), xt[tr].std(0, ddof=1)
        sd[sd < 1e-6] = 1
        ref = []
        for j in range(xt.shape[1]):
            lr = LogisticRegression(C=cfg.probe_c, max_iter=5000).fit(
                (xt[tr, j] - mu[j]) / sd[j], y[tr]
            )
            ref.append(lr.decision_function((xt[te, j] - mu[j]) / sd[j]))
        sk = auc_rows(np.stack(ref), y[te])
        assert np.abs(ours[f, ::3] - sk).max() <= 0.01


def test_p_true_on_the_bundled_model_reads_the_letters_a_and_b(smol):
    from halluscan.engine.ptrue import letters, p_true

    a, b = letters(smol)
    assert (smol.tokenizer.decode([a]), smol.tokenizer.decode([b])) == ("A", "B")
    items = [
        ("What is the capital of France?", "Paris"),
        ("What is the capital of France?", "Berlin"),
    ]
    first, second = p_true(smol, items, "true_first"), p_true(smol, items, "false_first")
    assert ((0 < first) & (first < 1)).all() and ((0 < second) & (second < 1)).all()
    assert not np.allclose(first, second)  # the order of the options matters to a small model
