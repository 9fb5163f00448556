"""Batched greedy generation with left padding, stopping at the end of the first sentence.

Residual activations are captured *during* generation (prefill: the last ``tail`` prompt
tokens; each decode step: the token just fed), so no second forward pass is needed to
extract them. Only the short answer is generated: the rest of a rambling response is not
graded and would cost most of the time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from halluscan.batching import prefill_prefix, shared_prefix_len, suffix_inputs
from halluscan.models.hooks import capture_residual
from halluscan.models.loading import LoadedModel
from halluscan.records import Generation, Question

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace, unless the
# word before the dot is an abbreviation or an initial ("St. Louis", "U.S. dollar").
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
_ABBREV = re.compile(r"(?:(?:^|[\s.(])[A-Za-z]|\b(?:St|Mt|Ft|Dr|Mr|Mrs|Ms|No|vs|etc))\.$")


@dataclass(frozen=True)
class GenerateOptions:
    """How to prompt and when to stop."""

    max_new_tokens: int = 32
    stop: str = "sentence"  # "sentence", "line" or "none"
    system_prompt: str = ""
    batch_size: int = 64
    tail: int = 8  # prompt tokens whose activations are kept (last_q and negative positions)
    share_prefix: bool = True  # run the prompts' common prefix once per batch
    temperature: float = 0.0  # 0 = greedy; > 0 samples from softmax(logits / temperature)
    seed: int = 0  # for sampling (each batch draws from its own generator seeded with seed + batch index)


def build_prompt_ids(lm: LoadedModel, question: str, system_prompt: str) -> list[int]:
    """Token ids of the prompt: the chat template for chat models, else ``Q: ... A:``."""
    tok = lm.tokenizer
    if lm.is_chat:
        msgs = [{"role": "user", "content": question}]
        if system_prompt:
            msgs.insert(0, {"role": "system", "content": system_prompt})
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return list(tok(text, add_special_tokens=False).input_ids)
    return list(tok(f"Q: {question}\nA:").input_ids)


def find_stop(text: str, mode: str) -> int | None:
    """Character offset where the answer ends in ``text`` (exclusive), or None if not yet."""
    if mode == "none":
        return None
    body = len(text) - len(text.lstrip())
    nl = text.find("\n", body)
    cut = nl if nl >= 0 else None
    if mode == "sentence":
        for m in _SENTENCE_END.finditer(text, body):
            if _ABBREV.search(text[: m.start() + 1]):
                continue
            cut = m.end() if cut is None else min(cut, m.end())
            break
    return cut


def token_starts(tokenizer: object, ids: Sequence[int]) -> tuple[list[int], str]:
    """Start offset of each token in the decoded text (by decoding prefixes), and the text."""
    starts, prev = [], ""
    for i in range(len(ids)):
        cur = tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False)  # type: ignore[attr-defined]
        starts.append(min(len(prev), len(cur)) if cur.startswith(prev) else len(prev))
        prev = cur
    return starts, prev


@dataclass
class _Row:
    ids: list[int]
    done: bool = False
    stopped_by: str = "length"
    cut: int | None = None  # char offset where the answer ends


def _advance(rows: list[_Row], cand: torch.Tensor, lm: LoadedModel, opts: GenerateOptions) -> bool:
    """Append this step's tokens to unfinished rows; True if any row took a token."""
    eos = set(eos_ids(lm))
    took = False
    for r, t in zip(rows, cand.tolist(), strict=True):
        if r.done:
            continue
        if t in eos:
            r.done, r.stopped_by = True, "eos"
            continue
        r.ids.append(t)
        took = True
        text = lm.tokenizer.decode(r.ids, clean_up_tokenization_spaces=False)
        cut = find_stop(text, opts.stop)
        if cut is not None:
            r.done, r.cut = True, cut
            r.stopped_by = "line" if text[cut : cut + 1] == "\n" else opts.stop  # find_stop cuts before a newline
    return took


def eos_ids(lm: LoadedModel) -> list[int]:
    """Token ids that end a generation (the generation config's and the tokenizer's eos)."""
    ids = lm.model.generation_config.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return [i for i in ids + [lm.tokenizer.eos_token_id] if i is not None]


def _pick(logits: torch.Tensor, temperature: float, rng: torch.Generator | None) -> torch.Tensor:
    """Greedy (temperature 0) or sampled next tokens for a batch of logits [B, V]."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=rng).squeeze(1).to(logits.device)


@torch.inference_mode()
def generate_batch(
    lm: LoadedModel,
    prompts: list[list[int]],
    opts: GenerateOptions,
    layers: list[int] | None,
    rng: torch.Generator | None = None,
) -> tuple[list[_Row], torch.Tensor | None, int]:
    """Generate for one batch. Returns rows, states ``[B, layer, tail + steps, H]`` and tail.

    Finished rows are dropped from the batch (and the KV cache) as soon as their answer
    ends, so a batch costs what its rows need, not what its longest row needs.
    """
    from transformers import DynamicCache

    model = lm.model
    dev = next(model.parameters()).device
    pad = lm.tokenizer.pad_token_id
    # The prompts' common prefix (system prompt, template) runs once and its KV cache is copied
    # to every row; each row's own tokens then follow a gap of masked padding.
    n_pre = shared_prefix_len(prompts, min(len(p) for p in prompts) - opts.tail) if opts.share_prefix else 0
    cache = prefill_prefix(model, prompts[0][:n_pre], len(prompts)) if n_pre else DynamicCache(config=model.config)
    ids, mask, pos, _ = suffix_inputs(prompts, n_pre, pad)
    ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
    tail = min(opts.tail, ids.shape[1])
    rows = [_Row(ids=[]) for _ in prompts]
    active = torch.arange(len(rows))
    buf: torch.Tensor | None = None
    with capture_residual(model, layers, lambda h: h[:, -tail:]) if layers is not None else nullcontext() as cap:
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if cap is not None:
            first = cap.stacked()  # [B, layer, tail, H]
            buf = first.new_zeros(first.shape[0], first.shape[1], tail + opts.max_new_tokens, first.shape[3])
            buf[:, :, :tail] = first
            cap.select = lambda h: h[:, -1:]
        for step in range(opts.max_new_tokens):
            cand = _pick(out.logits[:, -1], opts.temperature, rng)
            live = [rows[i] for i in active.tolist()]
            before = [len(r.ids) for r in live]
            if not _advance(live, cand, lm, opts):
                break
            # Rows that just took a token are fed once more so that its activations exist;
            # the others have finished and leave the batch.
            keep = torch.tensor([len(r.ids) > n for r, n in zip(live, before, strict=True)])
            if not bool(keep.all()):
                sel = keep.nonzero().squeeze(1)
                cache.batch_select_indices(sel.to(dev))
                active, cand, mask, pos = active[keep], cand[sel.to(dev)], mask[sel.to(dev)], pos[sel.to(dev)]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            pos = pos[:, -1:] + 1
            out = model(
                input_ids=cand[:, None], attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
            )
            if cap is not None and buf is not None:
                buf[active, :, tail + step] = cap.stacked()[:, :, 0]
            if all(r.done for r in rows):
                break
    return rows, buf, tail


def finish_row(lm: LoadedModel, qid: str, prompt: list[int], row: _Row) -> Generation:
    """Cut a row at its answer end and compute token offsets."""
    starts, text = token_starts(lm.tokenizer, row.ids)
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
        stopped_by=row.stopped_by,  # "length" unless _advance saw an eos or a stop
    )


def generate(
    lm: LoadedModel,
    questions: Sequence[Question],
    opts: GenerateOptions,
    layers: list[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[list[Generation], torch.Tensor | None, int]]:
    """Yield ``(generations, states, tail)`` per batch, batches sorted by prompt length.

    ``states[i, l, j]`` is layer ``l``'s residual at prompt token ``P - tail + j`` for
    ``j < tail`` and at response token ``j - tail`` after that (P = prompt length of row i).
    """
    prompts = [build_prompt_ids(lm, q.question, opts.system_prompt) for q in questions]
    order = sorted(range(len(questions)), key=lambda i: (len(prompts[i]), i))
    for b in range(0, len(order), opts.batch_size):
        idx = order[b : b + opts.batch_size]
        rng = torch.Generator().manual_seed(opts.seed + b) if opts.temperature > 0 else None
        rows, states, tail = generate_batch(lm, [prompts[i] for i in idx], opts, layers, rng)
        gens = [finish_row(lm, questions[i].qid, prompts[i], r) for i, r in zip(idx, rows, strict=True)]
        if progress is not None:
            progress(len(idx))
        yield gens, states, tail
