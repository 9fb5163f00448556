"""The GPU path (issue 12).

Its benchmark's --tiny run, and the CUDA checks that run where a GPU is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "extraction_capture_vs_bare",
    "store_write_vs_raw_disk",
    "extraction_with_store_vs_bound",
    "generation_capture_vs_nocapture",
    "generation_vs_hf_static",
    "sweep_gpu_s",
    "sweep_gpu_vs_cpu",
    "study_generate_extract_s",
)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.slow
def test_the_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--tiny", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, key
    assert res["device"] == "cpu" and res["study_stored"] == res["study_questions"]
    # the same device: the same numbers
    assert res["sweep"]["max_abs_auc_diff_device_vs_cpu"] == 0.0


def test_auto_is_the_cpu_in_float32_without_a_gpu(monkeypatch):
    from halluscan.errors import HalluscanError
    from halluscan.models.placement import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "auto") == ("cpu", "float32")
    assert resolve_device("cpu", "bfloat16") == ("cpu", "bfloat16")
    with pytest.raises(HalluscanError, match="--device cuda: no CUDA GPU is visible here"):
        resolve_device("cuda", "auto")


def test_device_and_dtype_flags_reach_the_config_and_the_provenance(tmp_path):
    from halluscan.cli import build_parser
    from halluscan.models import load_model
    from halluscan.study.flags import config_from_args
    from tests.conftest import tiny_folder

    cfg = config_from_args(
        build_parser().parse_args(["run", "--device", "cpu", "--dtype", "bfloat16"])
    )
    assert (cfg.device, cfg.dtype, cfg.probe_device) == ("cpu", "bfloat16", "")
    lm = load_model(str(tiny_folder(tmp_path / "m")), device=cfg.device, dtype=cfg.dtype)
    prov = lm.provenance()
    assert prov.device == "cpu" and prov.dtype == "torch.bfloat16"
    for args in (["--device", "tpu"], ["--device", "cuda:x"]):
        with pytest.raises(Exception, match="device|dtype"):
            config_from_args(build_parser().parse_args(["run", *args])).validate()
    with pytest.raises(SystemExit):  # a fixed set of values: argparse refuses, naming the flag
        build_parser().parse_args(["run", "--dtype", "int8"])


@cuda
def test_the_sweep_on_the_gpu_equals_the_cpu_within_0_002_auc():
    from halluscan.probes.sweep import sweep

    g = torch.Generator().manual_seed(0)
    n, layers, d = 400, 6, 256
    y = (torch.rand(n, generator=g) < 0.4).numpy().astype(np.int64)
    x = torch.randn(n, layers, d, generator=g)
    x[:, :, :4] += (
        torch.from_numpy(y)[:, None, None] * torch.linspace(0, 1.5, layers)[None, :, None]
    )
    valid = np.ones((n, 2), bool)
    groups = [str(i) for i in range(n)]
    kw = dict(c=0.05, folds=5, seed=0)
    cpu = sweep(lambda _p: x, valid, y, groups, list(range(layers)), ["a", "b"], **kw)
    gpu = sweep(
        lambda _p: x, valid, y, groups, list(range(layers)), ["a", "b"], device="cuda", **kw
    )
    assert np.nanmax(np.abs(cpu.auc - gpu.auc)) <= 0.002


@cuda
def test_capture_on_the_gpu_equals_the_cpu():
    from halluscan.engine.extract import forward_capture
    from tests.conftest import tiny_model

    model = tiny_model("llama")
    seqs = [[5, 6, 7, 8, 9], [5, 6, 7, 10]]
    gather = torch.tensor([[1, 4], [2, 3]])
    cpu = forward_capture(model, seqs, gather, {"residual": [0, 1, 2, 3]}, 0)["residual"]
    got = forward_capture(model.cuda(), seqs, gather, {"residual": [0, 1, 2, 3]}, 0)["residual"]
    assert got.device.type == "cpu" and got.is_pinned()
    torch.testing.assert_close(got, cpu, rtol=1e-4, atol=1e-4)
