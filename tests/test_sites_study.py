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
    assert "site mlp: nested" in capsys.readouterr().out
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


def test_suite_models_writes_the_grid_of_models_and_datasets(tmp_path, capsys):
    import shutil

    from tests.conftest import tiny_folder

    tiny = peru_france(tmp_path, 12)
    tiny_folder(tmp_path / "other", split_punct=True)
    shutil.copy(tiny / "q.csv", tiny / "q2.csv")
    capsys.readouterr()
    args = ["suite", "--name", "g", "--runs-dir", str(tmp_path / "runs"), *SETTINGS.split()]
    args += ["--models", str(tiny / "model"), str(tmp_path / "other")]
    args += ["--datasets", str(tiny / "q.csv"), str(tiny / "q2.csv"), "--no-p-true"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "model · q: accuracy" in out and "other · q2: accuracy" in out
    root = tmp_path / "runs" / "g"
    html = (root / "grid.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # 2 models x 2 datasets
    assert "The probe against the strongest control" in html and "strongest log-prob" in html
    grid = json.loads((root / "grid.json").read_text())
    assert set(grid) == {"model", "other"} and set(grid["other"]["datasets"]) == {"q", "q2"}
    assert (root / "other" / "q2" / "metrics.json").is_file()
    # resumes: the finished studies are not run again
    done = (root / "other" / "q2" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (root / "other" / "q2" / "metrics.json").stat().st_mtime_ns == done
