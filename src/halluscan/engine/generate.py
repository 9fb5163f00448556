"""Batched generation with left padding, stopping at the end of the first sentence.

Residual activations are captured *during* generation (prefill: the last ``tail`` prompt
tokens; each decode step: the token just fed), so no second forward pass is needed to
extract them. Only the short answer is generated: the rest of a rambling response is not
graded and would cost most of the time. The loop and its stop rule live in
:mod:`halluscan.engine.decode`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from halluscan.engine.decode import EagerFeed, Row, decode
from halluscan.models.loading import LoadedModel
from halluscan.models.sites import RESIDUAL
from halluscan.records import GenerateOptions, Generation, Question


@torch.inference_mode()
def generate_batch(
    lm: LoadedModel,
    prompts: list[list[int]],
    opts: GenerateOptions,
    layers: list[int] | None,
    rng: torch.Generator | None = None,
    on_prefill: Callable[[EagerFeed], None] | None = None,
    site: str = RESIDUAL,
) -> tuple[list[Row], torch.Tensor | None, int]:
    """Generate for one batch. Returns rows, states ``[B, layer, tail + steps, H]`` and tail.

    The states stay on the model's device (each step writes into one buffer there, with no
    sync); the caller moves what it keeps to the host once. Without ``layers`` nothing is
    captured: the states are None and the tail 0.
    """
    rows = [Row() for _ in prompts]
    buf: torch.Tensor | None = None
    tail = 0
    for step in decode(lm, prompts, opts, rows, layers, rng, on_prefill=on_prefill, site=site):
        if step.states is None:
            continue
        if buf is None:  # the prompt's states come first
            b, n_layers, tail, h = step.states.shape
            buf = step.states.new_zeros(b, n_layers, tail + opts.max_new_tokens, h)
            buf[:, :, :tail] = step.states
        else:
            buf[step.active, :, tail + step.index] = step.states[:, :, 0]
    return rows, buf, tail


def finish_row(lm: LoadedModel, qid: str, prompt: list[int], row: Row) -> Generation:
    """Cut a row at its answer end (its token offsets were kept while it was decoded)."""
    starts, text = row.starts, row.text
    n = len(row.ids)
    if row.cut is not None:
        n = sum(1 for s in starts if s < row.cut)
        text = text[: row.cut]
    return Generation(
        qid=qid,
        prompt_ids=tuple(prompt),
        response_ids=tuple(row.ids[:n]),
        response=text,
        token_starts=tuple(starts[:n]),
        token_logprobs=tuple(round(x, 5) for x in row.logprobs[:n]),
        token_entropies=tuple(round(x, 5) for x in row.entropies[:n]),
        stopped_by=row.stopped_by,  # "length" unless the stop rule saw an eos or a stop
    )


# a batch's token budget per row of its batch size: rows x (longest prompt + new tokens) stays
# within batch_size x ROW_TOKENS, so long prompts get fewer rows (short ones fill the batch)
ROW_TOKENS = 512


def batch_order(
    prompts: Sequence[Sequence[int]], batch_size: int, new_tokens: int | None = None
) -> list[list[int]]:
    """The batches of prompt indices :func:`generate` runs.

    Sorted by prompt length (ties by index), at most ``batch_size`` rows each. With
    ``new_tokens``, batches are sized by tokens too: a batch's rows times its longest prompt plus
    ``new_tokens`` stay within ``batch_size * ROW_TOKENS`` (at least one row).
    """
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    if new_tokens is None:
        return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    budget = batch_size * ROW_TOKENS
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:  # ascending length: the row joining is the batch's longest
        if cur and (
            len(cur) >= batch_size or (len(cur) + 1) * (len(prompts[i]) + new_tokens) > budget
        ):
            out.append(cur)
            cur = []
        cur.append(i)
    return out + [cur] if cur else out


def generate(
    lm: LoadedModel,
    questions: Sequence[Question],
    opts: GenerateOptions,
    layers: list[int] | None = None,
    progress: Callable[[int], None] | None = None,
    on_prefill: Callable[[list[str], EagerFeed], None] | None = None,
    site: str = RESIDUAL,
) -> Iterator[tuple[list[Generation], torch.Tensor | None, int]]:
    """Yield ``(generations, states, tail)`` per batch, batches sorted by prompt length.

    ``on_prefill(qids, feed)`` runs after each batch's prompts are prefilled (see :func:`decode`).

    ``states[i, l, j]`` is ``site``'s state at layer ``layers[l]`` at prompt token ``P - tail + j``
    for
    ``j < tail`` and at response token ``j - tail`` after that (P = prompt length of row i).
    """
    prompts = [lm.prompt_ids(q.question, opts.system_prompt) for q in questions]
    for k, idx in enumerate(batch_order(prompts, opts.batch_size)):
        seed = opts.seed + k * opts.batch_size  # the batch's first place in the order
        rng = torch.Generator().manual_seed(seed) if opts.temperature > 0 else None
        hook = None
        if on_prefill is not None:
            qids = [questions[i].qid for i in idx]
            hook = lambda feed, qids=qids: on_prefill(qids, feed)  # noqa: E731
        rows, states, tail = generate_batch(
            lm, [prompts[i] for i in idx], opts, layers, rng, hook, site
        )
        gens = [
            finish_row(lm, questions[i].qid, prompts[i], r) for i, r in zip(idx, rows, strict=True)
        ]
        if progress is not None:
            progress(len(idx))
        yield gens, states, tail
