"""Per-response scoring: token-by-layer activity maps, attention received, and a verdict.

A :class:`Scanner` pairs a model with a :class:`~halluscan.probes.ProbeBank` (one probe per
layer, trained at one position, ``exact_answer_last`` by default). For one response it gives

- ``activity[l, t]``: layer ``l``'s probe log-odds of *wrong* for the residual stream at
  generated token ``t`` (optionally standardised per layer against the bank's training set);
- ``attention[l, t]``: the attention token ``t`` receives in block ``l`` (1..L), averaged over
  heads and over the later response tokens (or from one query token), scaled to 0-1 per layer;
- a verdict: the bank's probe at its chosen layer, read at the located exact answer's last
  token (the position it was trained at), as ``p_wrong``.

Answers are scored by teacher forcing (``score``), generated first (``score(question)``), or
generated token by token with their scores as they appear (``stream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from halluscan.errors import HalluscanError
from halluscan.extract import forward_capture, normalise_layers, received
from halluscan.generate import GenerateOptions, build_prompt_ids, eos_ids, find_stop, token_starts
from halluscan.models.hooks import capture_residual
from halluscan.models.loading import LoadedModel, model_identity
from halluscan.positions import token_span
from halluscan.probes import ProbeBank
from halluscan.records import Question

WRONG, RIGHT = "hallucinated", "correct"


def token_labels(text: str, starts: Sequence[int]) -> list[str]:
    """Readable label per token: its exact slice of ``text``, trimmed, newlines as ``⏎``.

    Slicing the decoded text (instead of ``convert_ids_to_tokens``) means no tokenizer
    markers (``Ġ``, ``▁``, ``Ċ``) reach a figure; a token that is only whitespace shows ``␣``.
    """
    ends = list(starts[1:]) + [len(text)]
    out = []
    for s, e in zip(starts, ends, strict=True):
        piece = text[s:e].replace("\n", "⏎").strip()
        out.append(piece if piece else "␣")
    return out


@dataclass
class ScoreResult:
    """One scored response: per-token maps, the verdict, and what they came from."""

    question: str
    response: str
    tokens: list[str]
    activity: np.ndarray  # [layer, token] log-odds of wrong (or z-scores: see standardised)
    attention: np.ndarray  # [block, token] 0-1 per block
    activity_layers: list[int]
    attention_layers: list[int]
    p_wrong: float
    verdict: str
    verdict_layer: int
    verdict_token: int  # index into tokens
    verdict_position: str  # "exact_answer_last", or "last_token" when no exact answer was found
    exact_answer: str | None
    standardised: bool
    attention_query: str  # "later tokens (mean)" or "token -1"
    response_ids: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``score.json``: verdict, p_wrong, tokens, activity and attention as nested lists."""
        return {
            "question": self.question,
            "response": self.response,
            "verdict": self.verdict,
            "p_wrong": self.p_wrong,
            "verdict_layer": self.verdict_layer,
            "verdict_token": self.verdict_token,
            "verdict_position": self.verdict_position,
            "exact_answer": self.exact_answer,
            "tokens": self.tokens,
            "activity": np.round(self.activity, 5).tolist(),
            "activity_layers": self.activity_layers,
            "activity_scale": "z-score per layer (training set)" if self.standardised else "log-odds of wrong",
            "attention": [[None if np.isnan(v) else round(float(v), 5) for v in row] for row in self.attention],
            "attention_layers": self.attention_layers,
            "attention_query": self.attention_query,
            **self.meta,
        }

    def activity_figure(self, other: ScoreResult | None = None) -> Any:
        """Plotly figure: 3D surfaces over heatmaps, side by side with ``other`` on one scale."""
        from halluscan import plots

        return plots.activity_figure([self] if other is None else [self, other])

    def save_activity(self, folder: str | Path, other: ScoreResult | None = None, stem: str = "activity") -> list[Path]:
        """Write ``<stem>.html`` (rotatable) and ``<stem>.png`` (static) into ``folder``."""
        from halluscan import plots

        return plots.activity_files([self] if other is None else [self, other], Path(folder), stem)

    def save_attention(self, folder: str | Path, stem: str = "attention") -> list[Path]:
        """Write ``<stem>.png`` and ``<stem>.html`` (layers x the response's tokens)."""
        from halluscan import plots

        return plots.attention_files(self, Path(folder), stem)


@dataclass
class StreamStep:
    """One generated token and its scores, as :meth:`Scanner.stream` produces them."""

    index: int
    token: str
    token_id: int
    activity: np.ndarray  # [layer] log-odds of wrong (or z-scores)
    p_wrong: float  # the verdict layer's probability for this token


class Scanner:
    """Scores responses of ``lm`` with the probes of ``bank``.

    ``layer`` is the probe used for the verdict (default: the bank's ``best_layer``, the
    sweep's best layer at the bank's position, else its last layer). ``standardise`` turns
    each layer's log-odds into z-scores against the bank's training set, so that layers
    are comparable in the activity map (the verdict always uses the probability).
    """

    def __init__(
        self,
        lm: LoadedModel,
        bank: ProbeBank,
        *,
        layer: int | None = None,
        standardise: bool = False,
        query: int | None = None,
        system_prompt: str | None = None,
        max_new_tokens: int | None = None,
        grader: Any | None = None,
    ):
        trained_on = bank.meta.get("model")
        if isinstance(trained_on, dict) and model_identity(trained_on) != model_identity(lm.provenance()):
            raise HalluscanError(
                f"the probe bank was trained on {trained_on.get('model_id')} but the model is {lm.model_id}; "
                "use the bank of a study of this model (--probes runs/NAME/probes)"
            )
        if bank.meta.get("hidden") not in (None, int(lm.model.config.hidden_size)):
            raise HalluscanError(
                f"the probe bank was trained on {bank.meta['hidden']}-dim activations but {lm.model_id} has "
                f"{lm.model.config.hidden_size}; use the bank of a study of this model (--probes)"
            )
        if bank.position != "exact_answer_last":
            raise HalluscanError(
                f"this probe bank was trained at {bank.position!r}; per-response scoring needs one trained at "
                "'exact_answer_last' (what `halluscan run` saves in runs/NAME/probes)"
            )
        self.lm, self.bank = lm, bank
        self.layer = int(layer if layer is not None else bank.meta.get("best_layer", bank.layers[-1]))
        if self.layer not in bank.layers:
            raise HalluscanError(
                f"layer {self.layer} has no probe in this bank (layers {bank.layers[0]}..{bank.layers[-1]})"
            )
        if standardise and bank.score_mean is None:
            raise HalluscanError(
                "this probe bank has no training-set score statistics; re-run the study to standardise"
            )
        self.standardise, self.query = standardise, query
        # By default the prompt is the one the bank's study used (its system prompt and cap).
        sp = bank.meta.get("system_prompt", "") if system_prompt is None else system_prompt
        cap = int(bank.meta.get("max_new_tokens", 32)) if max_new_tokens is None else max_new_tokens
        stop = str(bank.meta.get("stop", "sentence"))  # the study's stopping rule, too
        self.opts = GenerateOptions(max_new_tokens=cap, system_prompt=sp, batch_size=1, stop=stop)
        if grader is None:
            from halluscan.data import build_world_facts
            from halluscan.grade import Grader

            wf = build_world_facts()
            grader = Grader(wf.relation_vocab, wf.entity_vocab)
        self.grader = grader
        from halluscan.models.sites import blocks

        self.n_blocks = len(blocks(lm.model))

    # -- scoring -------------------------------------------------------------------------
    def _activity(self, acts: torch.Tensor) -> torch.Tensor:
        """``acts`` [..., layer, d] -> log-odds (or z-scores) [..., layer]."""
        z = self.bank.decision_function(acts)
        if self.standardise and self.bank.score_mean is not None and self.bank.score_std is not None:
            z = (z - self.bank.score_mean) / self.bank.score_std
        return z

    def _verdict_p(self, acts: torch.Tensor) -> float:
        li = self.bank.layers.index(self.layer)
        return float(torch.sigmoid(self.bank.decision_function(acts)[..., li]))

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt the model sees for ``question`` (its chat template, the study's system prompt)."""
        return build_prompt_ids(self.lm, question, self.opts.system_prompt)

    def score(self, question: str, answer: str | None = None, *, relation: str = "custom") -> ScoreResult:
        """Score ``answer`` to ``question`` by teacher forcing (or generate it first when None)."""
        if answer is None:
            ids = [s.token_id for s in self.stream(question)]
            if not ids:
                raise HalluscanError(f"the model generated no answer to {question!r} (it ended at once); give --answer")
            return self.score_ids(question, ids, relation=relation, generated=True)
        if not answer.strip():
            raise HalluscanError("the answer is empty; give the text to score (or leave --answer out to generate one)")
        ids = list(self.lm.tokenizer(answer, add_special_tokens=False).input_ids)
        return self.score_ids(question, ids, relation=relation)

    def score_ids(self, question: str, response_ids: Sequence[int], *, relation: str = "custom",
                  generated: bool = False) -> ScoreResult:  # fmt: skip
        """Score a response given as token ids (teacher forcing)."""
        return self.score_many([(question, list(response_ids), relation)], generated=generated)[0]

    def score_many(
        self,
        items: Sequence[tuple[str, Sequence[int], str]],
        *,
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
        generated: bool = False,
        attention: bool = True,
    ) -> list[ScoreResult]:
        """Score ``(question, response_ids, relation)`` triples in padded batches.

        ``attention=False`` skips the attention weights (their map is then empty), which is
        what scoring many answers for a verdict needs.
        """
        out: list[ScoreResult] = []
        for b in range(0, len(items), batch_size):
            chunk = items[b : b + batch_size]
            prompts = [self.prompt_ids(q) for q, _, _ in chunk]
            resps = [list(r) for _, r, _ in chunk]
            if any(not r for r in resps):
                raise HalluscanError("a response has no tokens; give a non-empty answer")
            seqs: list[Sequence[int]] = [p + r for p, r in zip(prompts, resps, strict=True)]
            k = max(len(r) for r in resps)
            gather = torch.tensor(
                [[len(p) + min(j, len(r) - 1) for j in range(k)] for p, r in zip(prompts, resps, strict=True)]
            )
            sites = {"residual": list(self.bank.layers)}
            if attention:
                sites["attn_weights"] = list(range(1, self.n_blocks + 1))
            cap = forward_capture(self.lm.model, seqs, gather, sites, self.lm.tokenizer.pad_token_id)
            for i, ((q, _, rel), p, r) in enumerate(zip(chunk, prompts, resps, strict=True)):
                n = len(r)
                acts = cap["residual"][i, :, :n].transpose(0, 1)  # [token, layer, d]
                if attention:
                    w = cap["attn_weights"][i, :, :n].mean(dim=2)  # [block, query, key]
                    w = w[..., len(p) : len(p) + n]  # keys: the response's own tokens
                else:
                    w = torch.zeros(0, n, n)
                out.append(self._result(q, r, rel, acts, w, generated))
            if progress is not None:
                progress(len(chunk))
        return out

    def _result(self, question: str, ids: list[int], relation: str, acts: torch.Tensor, w: torch.Tensor,
                generated: bool) -> ScoreResult:  # fmt: skip
        starts, text = token_starts(self.lm.tokenizer, ids)
        span, how = self.grader.locate(Question("q", question, "", (), relation), text)
        toks = token_span(span, starts, len(text)) if span is not None else None
        t = toks[1] if toks is not None else len(ids) - 1
        p = self._verdict_p(acts[t])
        activity = self._activity(acts).T  # [layer, token]
        attention = normalise_layers(received(w, self.query)) if len(w) else torch.zeros(0, len(ids))
        return ScoreResult(
            question=question,
            response=text,
            tokens=token_labels(text, starts),
            activity=activity.numpy().astype(np.float64),
            attention=attention.numpy().astype(np.float64),
            activity_layers=list(self.bank.layers),
            attention_layers=list(range(1, self.n_blocks + 1)) if len(w) else [],
            p_wrong=p,
            verdict=WRONG if p >= 0.5 else RIGHT,
            verdict_layer=self.layer,
            verdict_token=t,
            verdict_position="exact_answer_last" if toks is not None else "last_token",
            exact_answer=text[span.start : span.end] if span is not None else None,
            standardised=self.standardise,
            attention_query="later tokens (mean)" if self.query is None else f"token {self.query}",
            response_ids=list(ids),
            meta={
                "answer_source": "generated" if generated else "given",
                "locator": how,
                "model": self.lm.model_id,
                "probe_position": self.bank.position,
            },  # fmt: skip
        )

    # -- streaming -----------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, question: str) -> Iterator[StreamStep]:
        """Generate greedily, yielding each token with its scores as soon as it has been fed.

        A token's activations exist once it is fed back to the model, which is the same
        forward pass that proposes the next token; so each step costs one forward pass.
        """
        model, tok = self.lm.model, self.lm.tokenizer
        dev = next(model.parameters()).device
        prompt = self.prompt_ids(question)
        eos = set(eos_ids(self.lm))
        ids: list[int] = []
        li = self.bank.layers.index(self.layer)
        with capture_residual(model, list(self.bank.layers), lambda h: h[:, -1:]) as cap:
            out = model(input_ids=torch.tensor([prompt], device=dev), use_cache=True)
            for step in range(self.opts.max_new_tokens):
                nxt = int(out.logits[0, -1].argmax())
                if nxt in eos:
                    break
                starts, text = token_starts(tok, [*ids, nxt])
                cut = find_stop(text, self.opts.stop)
                if cut is not None and starts[-1] >= cut:
                    break  # the answer ended before this token (it is cut, as in generate())
                ids.append(nxt)
                out = model(input_ids=torch.tensor([[nxt]], device=dev), past_key_values=out.past_key_values,
                            use_cache=True)  # fmt: skip
                acts = cap.stacked()[0, :, 0]  # [layer, d]
                p = float(torch.sigmoid(self.bank.decision_function(acts)[li]))
                act = self._activity(acts).numpy().astype(np.float64)
                yield StreamStep(step, token_labels(text, starts)[-1], nxt, act, p)
                if cut is not None:
                    break
