"""``--sites``: the MLP and attention outputs beside the residual stream, in one study."""

from __future__ import annotations

import json

import numpy as np

from halluscan.cli import main
from tests.conftest import peru_france, tiny_flags

SETTINGS = "--stop none --max-new-tokens 3 --batch-size 8 --quiet --no-given-bank --folds 3"


def test_a_study_probes_each_site_and_compares_it_with_the_residual_stream(tmp_path, capsys):
    tiny = peru_france(tmp_path, 24)
    args = ["run", "--name", "s", *tiny_flags(tiny), *SETTINGS.split()]
    assert main([*args, "--sites", "residual,mlp,attn"]) == 0
    run = tiny / "runs" / "s"
    m = json.loads((run / "metrics.json").read_text())
    assert [s["site"] for s in m["sites"]] == ["mlp", "attn"]
    for s in m["sites"]:
        assert s["heatmap"]["layers"][0] == 1 and len(s["heatmap"]["positions"]) == 15
        if s["gain"] is not None:  # paired over the headline's folds
            lo, hi = s["gain_ci95"]
            assert lo <= s["gain"] <= hi and s["differs"] == (lo > 0 or hi < 0)
        assert (run / f"heatmap_{s['site']}.png").stat().st_size > 1000
    html = (run / "report.html").read_text()
    assert "Sites: where in the block the signal is" in html and "MLP output" in html
    assert "timings_s" in m and "extract_sites" in m["timings_s"]
    # the sites store keeps its own row order; the features follow the study's examples
    from halluscan.store import ActivationStore
    from halluscan.study.runs import study_examples
    from halluscan.study.sites import site_features

    sites = ActivationStore.open(run / "store_sites")
    assert sites.n_examples == 48 and sites.sites == ["mlp", "attn"]
    own = ActivationStore.open(run / "store")
    examples = study_examples(own)
    f = site_features(sites, "mlp", examples, own.valid())
    row = {r["qid"]: i for i, r in enumerate(sites.examples())}
    x, raw = f.at("exact_answer_last"), sites.position("exact_answer_last", "mlp")
    assert [row[e.qid] for e in examples] != list(range(48))  # the orders do differ
    for i, e in enumerate(examples):
        assert np.array_equal(x[i].numpy(), raw[row[e.qid]].numpy())
    # a second run resumes: nothing extracted again, the same comparison
    capsys.readouterr()
    assert main([*args, "--sites", "residual,mlp,attn"]) == 0
    m2 = json.loads((run / "metrics.json").read_text())
    assert [s["nested"] for s in m2["sites"]] == [s["nested"] for s in m["sites"]]


def test_sites_are_checked_before_anything_runs(tmp_path, capsys):
    tiny = peru_france(tmp_path, 4)
    capsys.readouterr()
    args = ["run", "--name", "x", *tiny_flags(tiny), *SETTINGS.split()]
    assert main([*args, "--sites", "residual,ffn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "give each of residual, mlp, attn at most once" in err
    assert not (tiny / "runs").exists()
