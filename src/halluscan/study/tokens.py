"""The token-level bank: a probe per layer on every answer token from the exact answer on.

The exact-answer bank is trained at one token; applied at every token of an answer, it reads
"The" and "capital" as confidently as the answer itself, which makes a per-token map misleading.
Here every token from the exact answer's first token (or the answer's last token, where no exact
answer was located) up to ``MAX_OFFSET`` tokens on is a training row, labelled by its answer's
grade, with every row of an answer in one fold (the study's grouped folds). The rows come from one
teacher-forced pass over the study's own answers (the same token ids). Reported: the out-of-fold
AUC at each token offset, at the study's headline layer (chosen by the nested selection before
these scores exist), and with every offset pooled. The bank fitted on every row is
saved as ``probes_tokens/``; the activity maps and the live page colour tokens with it, and leave
the tokens before the answer grey.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from halluscan.analyses.results import Metrics, OffsetAuc, TokenBank
from halluscan.analyses.transfer import paired_bootstrap
from halluscan.engine.extract import forward_capture
from halluscan.models.sites import RESIDUAL
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import auc_rows, folds_for
from halluscan.progress import bar
from halluscan.provenance import Provenance
from halluscan.records import Example, JsonObject
from halluscan.study.checks import Clock
from halluscan.study.context import StudyContext

MAX_OFFSET = 12  # tokens read from the exact answer's first token on
BATCH = 16


def answer_start(e: Example) -> int | None:
    """The sequence index of the answer's first exact-answer token (or its fallback token)."""
    return e.positions.get("exact_answer_first")


def token_rows(
    ctx: StudyContext, examples: Sequence[Example], keep: np.ndarray
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Residual streams ``[row, layer, d]`` (float16) of every kept answer's tokens from its start.

    Also each row's answer index and token offset.
    """
    lm, cfg = ctx.lm, ctx.config
    todo = [i for i, e in enumerate(examples) if keep[i] and answer_start(e) is not None]
    layers = list(range(lm.n_layers + 1))
    xs, ans, offs = [], [], []
    with bar(len(todo), "token bank", "answer", cfg.quiet) as b:
        for a in range(0, len(todo), BATCH):
            chunk = [examples[i] for i in todo[a : a + BATCH]]
            seqs: list[Sequence[int]] = [ctx.answered(e) for e in chunk]
            starts = [int(answer_start(e)) for e in chunk]  # type: ignore[arg-type]
            n_k = [max(1, min(MAX_OFFSET, len(s) - st)) for s, st in zip(seqs, starts, strict=True)]
            gather = torch.tensor(
                [
                    [st + min(k, n - 1) for k in range(MAX_OFFSET)]
                    for st, n in zip(starts, n_k, strict=True)
                ]
            )
            pad = lm.tokenizer.pad_token_id
            got = forward_capture(lm.model, seqs, gather, {RESIDUAL: layers}, pad)[RESIDUAL]
            for j, n in enumerate(n_k):  # got: [B, layer, k, d]
                xs.append(got[j, :, :n].transpose(0, 1).to(torch.float16))
                ans += [todo[a + j]] * n
                offs += list(range(n))
            b.update(len(chunk))
    if not xs:
        return torch.zeros(0, len(layers), lm.hidden_size), np.zeros(0, int), np.zeros(0, int)
    return torch.cat(xs), np.array(ans), np.array(offs)


def fit_token_bank(
    x: torch.Tensor,
    ans: np.ndarray,
    offs: np.ndarray,
    examples: Sequence[Example],
    layer: int,
    ctx: StudyContext,
) -> tuple[TokenBank, ProbeBank]:
    """Out-of-fold scores per layer over the study's grouped folds; the bank on every row."""
    cv = ctx.config.cv
    y = np.array([0 if examples[i].correct else 1 for i in ans])
    groups = np.array([examples[i].qid for i in ans])
    answers = np.unique(ans)
    ya = np.array([0 if examples[i].correct else 1 for i in answers])
    fold_of = np.full(len(examples), -1)
    for f, (_, te) in enumerate(
        folds_for(ya, [examples[i].qid for i in answers], cv.folds, cv.seed)
    ):
        fold_of[answers[te]] = f
    # the folds score the headline layer and layer 0 (the tokens' identity, the control) alone;
    # the saved bank has every layer, for the maps
    read = [layer, 0]
    oof = np.full((len(y), 2), np.nan)
    for f in range(cv.folds):
        tr, te = fold_of[ans] != f, fold_of[ans] == f
        bank = ProbeBank.fit(x[tr][:, read], y[tr], read, c=cv.c, device=ctx.probe_device)
        oof[te] = bank.decision_function(x[te][:, read]).numpy()
    pooled: list[float | None] = [float(auc_rows(oof[:, :1].T, y)[0])]
    per_offset = []
    for k in range(int(offs.max()) + 1):
        rows = offs == k
        if len(set(y[rows].tolist())) < 2:
            continue
        pair = paired_bootstrap(oof[rows, 0], oof[rows, 1], y[rows], list(groups[rows]))
        per_offset.append(
            OffsetAuc(
                k,
                pair.auc_a,
                pair.ci_a,
                int(rows.sum()),
                int(y[rows].sum()),
                pair.auc_b,
                pair.gain,
                pair.gain_ci,
            )
        )
    record = TokenBank(layer, per_offset, [layer], pooled, len(answers), len(y), MAX_OFFSET)
    meta: JsonObject = {"kind": "tokens", "best_layer": layer, "max_offset": MAX_OFFSET}
    every = list(range(x.shape[1]))
    final = ProbeBank.fit(x, y, every, "answer_tokens", c=cv.c, meta=meta, device=ctx.probe_device)
    return record, final


def token_stage(
    ctx: StudyContext,
    examples: Sequence[Example],
    keep: np.ndarray,
    prov: Provenance,
    metrics: Metrics,
    clock: Clock,
) -> Metrics:
    """The token-level bank of a study with a headline cell: measured, saved, recorded."""
    from dataclasses import replace

    from halluscan.study import runs

    if not ctx.config.token_bank or metrics.headline is None:
        return metrics
    with clock("token_bank"):
        x, ans, offs = token_rows(ctx, examples, keep)
        if len({examples[i].correct for i in set(ans.tolist())}) < 2:
            return metrics
        record, bank = fit_token_bank(x, ans, offs, examples, metrics.headline.layer, ctx)
        meta = runs.bank_meta(ctx.config, prov.to_json(), None, kind="tokens")
        bank.meta = {**meta, **bank.meta}
        bank.save(ctx.run.probes_tokens)
    return replace(metrics, token_bank=record)
