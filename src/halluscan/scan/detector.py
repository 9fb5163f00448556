"""One answer scored by the whole-tensor detector (``halluscan score --detector DIR``).

The answer is located as a study locates it (the exact answer, else its last answer token), the
residual stream is read at every layer and at the detector's named positions in one
teacher-forced pass, and the detector's adapter for this model gives ``p_wrong``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from halluscan.engine.decode import token_starts
from halluscan.engine.extract import forward_capture
from halluscan.models.sites import RESIDUAL
from halluscan.positions import fallback_token, resolve, token_span
from halluscan.probes.features import Features
from halluscan.probes.tensor import Detector, grid
from halluscan.provenance import model_label
from halluscan.records import JsonObject, Question, ScoreResult
from halluscan.scan.scanner import Scanner


@dataclass(frozen=True)
class DetectorVerdict:
    """The detector's probability that the answer is wrong, and what it read."""

    p_wrong: float
    positions_read: list[str]  # the positions this answer has (the others are masked)
    trained_on: list[str]  # the runs it was trained on


def detector_verdict(
    scanner: Scanner,
    det: Detector,
    meta: JsonObject,
    result: ScoreResult,
    relation: str = "custom",
) -> DetectorVerdict:
    """Score ``result`` (an answer the scanner already scored) with ``det``.

    ``relation`` tells the locator what kind of answer to look for, as in ``score``.
    """
    lm, grader = scanner.lm, scanner.grader
    prompt = list(scanner.prompt_ids(result.question))
    ids = list(result.response_ids)
    starts, text = token_starts(lm.tokenizer, ids)
    span, _ = grader.locate(Question("q", result.question, "", (), relation), text)
    exact = token_span(span, starts, len(text)) if span is not None else None
    exact = exact or fallback_token(text, starts)
    seq_len = len(prompt) + len(ids)
    rows = [resolve(p, len(prompt), len(ids), exact) for p in det.positions]
    valid = np.array([[k is not None and 0 <= k < seq_len for k in rows]])
    cols = [seq_len - 1 if k is None or not ok else k for k, ok in zip(rows, valid[0], strict=True)]
    gather = torch.tensor([cols])
    layers = list(range(lm.n_layers + 1))
    acts = forward_capture(
        lm.model, [prompt + ids], gather, {RESIDUAL: layers}, lm.tokenizer.pad_token_id
    )[RESIDUAL]  # [1, layer, position, d]
    features = Features.from_array(acts.float(), valid, layers, det.positions)
    g = grid(features, model_label(lm.provenance()), det.positions, det.cfg.bins)
    z = float(det.score(g)[0])
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    runs = prov.get("runs", []) if isinstance(prov, dict) else []
    read = [p for p, ok in zip(det.positions, valid[0], strict=True) if ok]
    return DetectorVerdict(float(1 / (1 + np.exp(-z))), read, [str(r) for r in runs])
