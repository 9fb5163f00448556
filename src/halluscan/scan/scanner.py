"""Per-response scoring: token-by-layer activity maps, attention received, and a verdict.

A :class:`Scanner` pairs a model with a :class:`~halluscan.probes.bank.ProbeBank` (one probe per
layer, trained at ``exact_answer_last``). For one response it gives

- ``activity[l, t]``: layer ``l``'s probe log-odds of *wrong* for the residual stream at
  generated token ``t`` (optionally standardised per layer against the bank's training set);
- ``attention[l, t]``: the attention token ``t`` receives in block ``l`` (1..L), averaged over
  heads and over the later response tokens (or from one query token), scaled to 0-1 per layer;
- a verdict: the bank's probe at its chosen layer, read at the located exact answer's last
  token (the position it was trained at), as ``p_wrong``.

Answers are scored by teacher forcing (``score``), generated first (``score(question)``), or
generated token by token with their scores as they appear (``stream``, on the engine's one
decode loop). The maths lives in :mod:`~halluscan.scan.scoring` and
:mod:`~halluscan.scan.attention`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from halluscan.engine.decode import Row, decode, token_starts
from halluscan.engine.extract import forward_capture
from halluscan.errors import HalluscanError
from halluscan.grade import Grader
from halluscan.models.loading import LoadedModel
from halluscan.models.sites import ATTN_RECEIVED, ATTN_WEIGHTS, RESIDUAL
from halluscan.positions import BANK_POSITION, token_span
from halluscan.probes.bank import ProbeBank
from halluscan.records import (
    RUN_BANKS,
    GenerateOptions,
    Question,
    ScoreResult,
    ScoreSource,
    StreamStep,
    ToScore,
    bank_kind,
)
from halluscan.scan import scoring
from halluscan.scan.attention import (
    normalise_layers,
    query_index,
    received_from_query,
    received_from_sums,
    to_question,
)
from halluscan.scan.banks import check_bank, token_bank_of


class Scanner:
    """Scores responses of ``lm`` with the probes of ``bank``.

    ``bank`` is a :class:`ProbeBank`, or a study folder (``runs/NAME``): then an answer given to
    the model is read by the study's given-answer bank and an answer the model writes by its
    own-answer bank, as ``halluscan score`` chooses (:func:`~halluscan.records.bank_kind`).

    ``layer`` is the probe used for the verdict (default: the bank's ``best_layer``, the
    sweep's best layer at the bank's position, else its last layer). ``standardise`` turns
    each layer's log-odds into z-scores against the bank's training set, so that layers
    are comparable in the activity map (the verdict always uses the probability).
    ``generation`` (default: the bank's study's prompt, stop rule and token cap) says how to
    prompt and stop; ``grader`` (default: world-facts') locates the exact answer.
    """

    def __init__(
        self,
        lm: LoadedModel,
        bank: ProbeBank | str | Path,
        *,
        layer: int | None = None,
        standardise: bool = False,
        query: int | None = None,
        generation: GenerateOptions | None = None,
        grader: Grader | None = None,
        tokens: ProbeBank | None = None,
    ):
        if grader is None:
            from halluscan.data import build_world_facts

            grader = Grader.for_dataset(build_world_facts())
        self.run: Path | None = None  # the study folder whose banks it reads, when given one
        self.by_kind: dict[str, Scanner] = {}
        if not isinstance(bank, ProbeBank) and ProbeBank.exists(bank):
            bank = ProbeBank.load(bank)  # a bank's own folder: that bank for every answer
        if not isinstance(bank, ProbeBank):
            self.run, banks = Path(bank), ProbeBank.of_run(bank)
            tokens = token_bank_of(self.run)
            same = dict(layer=layer, standardise=standardise, query=query, generation=generation)
            self.by_kind = {
                k: Scanner(lm, b, **same, grader=grader, tokens=tokens)  # type: ignore[arg-type]
                for k, b in banks.items()
            }
            bank = banks.get("own") or banks["given"]
        check_bank(lm, bank)
        self.lm, self.bank = lm, bank
        # own answers (graded) or given ones (true / false)
        self.kind = str(bank.meta.get("kind", "own"))
        self.site = str(bank.meta.get("site", RESIDUAL))  # where the bank's probes read
        self.layer = int(
            layer if layer is not None else bank.meta.get("best_layer", bank.layers[-1])
        )
        if self.layer not in bank.layers:
            raise HalluscanError(
                f"layer {self.layer} has no probe in this bank (layers "
                f"{bank.layers[0]}..{bank.layers[-1]})"
            )
        if standardise and bank.score_mean is None:
            raise HalluscanError(
                "this probe bank has no training-set score statistics; re-run the study to "
                "standardise"
            )
        self.standardise, self.query = standardise, query
        self.generation = (
            generation if generation is not None else GenerateOptions.of_bank(bank.meta)
        )
        self.grader = grader
        # the token-level bank colours the activity map (None: the bank itself, at every token)
        self.tokens = tokens if tokens is not None and tokens.layers == bank.layers else None

    def for_answer(self, given: bool) -> Scanner:
        """The scanner that reads a given (or a generated) answer.

        Itself, unless it was handed a study folder: then the scanner of that kind's bank.
        """
        if self.run is None:
            return self
        kind = bank_kind(given)
        if kind not in self.by_kind:
            raise HalluscanError(
                f"{self.run} has no {kind}-answer bank (its study ran without it); "
                f"pass ProbeBank.load('{self.run}/{RUN_BANKS[next(iter(self.by_kind))]}') to "
                "score with the other bank knowingly"
            )
        return self.by_kind[kind]

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt the model sees for ``question`` (chat template, the study's system prompt)."""
        return self.lm.prompt_ids(question, self.generation.system_prompt)

    def score(
        self, question: str, answer: str | None = None, *, relation: str = "custom"
    ) -> ScoreResult:
        """Score ``answer`` to ``question`` by teacher forcing (or generate it first when None)."""
        target = self.for_answer(given=answer is not None)
        if target is not self:
            return target.score(question, answer, relation=relation)
        if answer is None:
            ids = [s.token_id for s in self.stream(question)]
            if not ids:
                raise HalluscanError(
                    f"the model generated no answer to {question!r} (it ended at once); give "
                    "--answer"
                )
            return self.score_ids(question, ids, relation=relation, generated=True)
        if not answer.strip():
            raise HalluscanError(
                "the answer is empty; give the text to score (or leave --answer out to generate "
                "one)"
            )
        ids = list(self.lm.tokenizer(answer, add_special_tokens=False).input_ids)
        return self.score_ids(question, ids, relation=relation)

    def score_ids(
        self,
        question: str,
        response_ids: Sequence[int],
        *,
        relation: str = "custom",
        generated: bool = False,
    ) -> ScoreResult:
        """Score a response given as token ids (teacher forcing)."""
        item = ToScore(question, list(response_ids), relation)
        return self.score_many([item], generated=generated)[0]

    def score_many(
        self,
        items: Sequence[ToScore],
        *,
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
        generated: bool = False,
        attention: bool = True,
    ) -> list[ScoreResult]:
        """Score answers given as token ids, in padded batches.

        ``attention=False`` skips the attention weights (their map is then empty), which is
        what scoring many answers for a verdict needs. ``generated``: the model wrote them.
        """
        target = self.for_answer(given=not generated)
        if target is not self:
            return target.score_many(
                items,
                batch_size=batch_size,
                progress=progress,
                generated=generated,
                attention=attention,
            )
        out: list[ScoreResult] = []
        for b in range(0, len(items), batch_size):
            chunk = items[b : b + batch_size]
            prompts = [self.prompt_ids(it.question) for it in chunk]
            resps = [list(it.response_ids) for it in chunk]
            if any(not r for r in resps):
                raise HalluscanError("a response has no tokens; give a non-empty answer")
            self._check_length(prompts, resps)
            captured = self._forward(prompts, resps, attention)
            received = self._received(prompts, resps, captured) if attention else None
            for i, (it, r) in enumerate(zip(chunk, resps, strict=True)):
                # [layer, token]: each layer's probe, in the hooks
                logits = captured[self.site][i, :, : len(r)]
                att = received[i] if received is not None else torch.zeros(0, len(r))
                res = self._result(it.question, r, it.relation, logits, att, generated)
                if received is not None and self.query is None:  # the question's tokens as keys
                    sums = captured[ATTN_RECEIVED][i]
                    keys = to_question(self.lm.tokenizer, prompts[i], it.question, sums, len(r))
                    res = replace(res, **keys)
                out.append(res)
            if progress is not None:
                progress(len(chunk))
        return out

    def _check_length(self, prompts: list[list[int]], resps: list[list[int]]) -> None:
        """Refuse a prompt + answer longer than the model's context (positions untrained there)."""
        limit = self.lm.context_length
        longest = max(len(p) + len(r) for p, r in zip(prompts, resps, strict=True))
        if limit is not None and longest > limit:
            raise HalluscanError(
                f"the prompt and answer are {longest} tokens, beyond {self.lm.model_id}'s context "
                f"of {limit} tokens; give a shorter answer"
            )

    def _forward(
        self, prompts: list[list[int]], resps: list[list[int]], attention: bool
    ) -> dict[str, torch.Tensor]:
        """Teacher-force prompt + response.

        Every response token's residual (and the attention it receives).
        """
        seqs: list[Sequence[int]] = [p + r for p, r in zip(prompts, resps, strict=True)]
        k = max(len(r) for r in resps)
        rows = [
            [len(p) + min(j, len(r) - 1) for j in range(k)]
            for p, r in zip(prompts, resps, strict=True)
        ]
        sites = {self.site: list(self.bank.layers)}
        if attention and self.query is None:  # summed in the hooks, block by block: linear memory
            sites[ATTN_RECEIVED] = list(range(1, self.lm.n_layers + 1))

        # [B, token] per layer, not [B, token, d]
        def probe(layer: int, x: torch.Tensor) -> torch.Tensor:
            z = self.bank.layer_logit(x, layer)
            return (
                z
                if self.tokens is None
                else torch.stack([z, self.tokens.layer_logit(x, layer)], -1)
            )

        pad = self.lm.tokenizer.pad_token_id
        return forward_capture(
            self.lm.model, seqs, torch.tensor(rows), sites, pad, reduce={self.site: probe}
        )

    def _received(
        self, prompts: list[list[int]], resps: list[list[int]], captured: dict[str, torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per response ``[block, token]``.

        Attention received from its later tokens (or from one query token).
        """
        spans = [(len(p), len(p) + len(r)) for p, r in zip(prompts, resps, strict=True)]
        if self.query is None:
            return [
                received_from_sums(captured[ATTN_RECEIVED][i, :, a:b])
                for i, (a, b) in enumerate(spans)
            ]
        rows = torch.tensor([[a + query_index(self.query, b - a)] for a, b in spans])
        seqs: list[Sequence[int]] = [p + r for p, r in zip(prompts, resps, strict=True)]
        layers = list(range(1, self.lm.n_layers + 1))
        w = forward_capture(
            self.lm.model, seqs, rows, {ATTN_WEIGHTS: layers}, self.lm.tokenizer.pad_token_id
        )
        # [block, token]
        rows_w = [w[ATTN_WEIGHTS][i, :, 0].mean(dim=1)[:, a:b] for i, (a, b) in enumerate(spans)]
        return [received_from_query(row, self.query) for row in rows_w]

    def _result(
        self,
        question: str,
        ids: list[int],
        relation: str,
        logits: torch.Tensor,
        att: torch.Tensor,
        generated: bool,
    ) -> ScoreResult:
        starts, text = token_starts(self.lm.tokenizer, ids)
        span, how = self.grader.locate(Question("q", question, "", (), relation), text)
        toks = token_span(span, starts, len(text)) if span is not None else None
        t = toks[1] if toks is not None else len(ids) - 1
        tok = logits[..., 1] if logits.dim() == 3 else None  # the token-level bank's
        logits = logits[..., 0] if logits.dim() == 3 else logits
        p = float(torch.sigmoid(logits[self.bank.layers.index(self.layer), t]))
        act = scoring.scaled(self.bank, logits.T, self.standardise).T  # [layer, token]
        if tok is not None and self.tokens is not None:
            first = scoring.answer_start(text, starts, toks)
            act = scoring.from_answer(self.tokens, tok, first, self.standardise)
        attention = normalise_layers(att) if len(att) else torch.zeros(0, len(ids))
        return ScoreResult(
            question=question,
            response=text,
            tokens=scoring.token_labels(text, starts),
            activity=act.numpy().astype(np.float64),
            attention=attention.numpy().astype(np.float64),
            activity_layers=list(self.bank.layers),
            attention_layers=list(range(1, self.lm.n_layers + 1)) if len(att) else [],
            p_wrong=p,
            verdict=scoring.verdict(p),
            verdict_layer=self.layer,
            verdict_token=t,
            verdict_position=BANK_POSITION if toks is not None else "last_token",
            exact_answer=text[span.start : span.end] if span is not None else None,
            standardised=self.standardise,
            attention_query="later tokens (mean)" if self.query is None else f"token {self.query}",
            response_ids=list(ids),
            source=ScoreSource(
                "generated" if generated else "given",
                how,
                self.lm.model_id,
                self.bank.position,
                self.kind,
            ),
        )

    def stream(self, question: str) -> Iterator[StreamStep]:
        """Generate greedily, yielding each token with its scores as soon as it has been fed.

        A token's activations exist once it is fed back to the model, which is the same
        forward pass that proposes the next token; so each step costs one forward pass.
        """
        if self.for_answer(given=False) is not self:
            yield from self.for_answer(given=False).stream(question)
            return
        row = Row()
        opts = replace(self.generation, tail=0)  # no prompt states are needed
        steps = decode(
            self.lm,
            [self.prompt_ids(question)],
            opts,
            [row],
            list(self.bank.layers),
            site=self.site,
        )
        for step in steps:
            if step.index < 0 or step.states is None:
                continue  # the prompt
            act, p = self._step_scores(question, row, step.states[0, :, 0])
            # the row keeps its offsets: no re-decoding
            label = scoring.token_labels(row.text, row.starts)[-1]
            yield StreamStep(step.index, label, row.ids[-1], act, p)

    def _step_scores(self, question: str, row: Row, acts: torch.Tensor) -> tuple[np.ndarray, float]:
        """A new token's layer column and p_wrong (NaN before the answer, with a token bank)."""
        if self.tokens is None:
            col = scoring.activity(self.bank, acts, self.standardise).numpy().astype(np.float64)
            return col, scoring.p_wrong(self.bank, acts, self.layer)
        span, _ = self.grader.locate(Question("q", question, "", (), "custom"), row.text)
        toks = token_span(span, row.starts, len(row.text)) if span is not None else None
        if toks is None or len(row.ids) - 1 < toks[0]:  # the answer has not begun: not read
            return np.full(len(self.bank.layers), np.nan), float("nan")
        col = scoring.activity(self.tokens, acts, self.standardise).numpy().astype(np.float64)
        layer = int(self.tokens.meta.get("best_layer", self.layer))
        return col, scoring.p_wrong(self.tokens, acts, layer)
