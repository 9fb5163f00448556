"""Frozen records passed between stages. Stages talk only through these and the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# A JSON object as read from or written to a file: a stored record, a manifest, a row of a
# question file. Its schema belongs to whoever reads it; results have typed records instead.
JsonObject = dict[str, Any]


DEFAULT_C = 0.05  # the probes' inverse L2 strength (sklearn's C), unless a study says otherwise


@dataclass(frozen=True)
class CV:
    """How probes are cross-validated: folds (stratified, grouped by question), the seed, and C."""

    folds: int = 5
    seed: int = 0
    c: float = DEFAULT_C


@dataclass(frozen=True)
class Question:
    """One question with its gold answer; ``aliases`` includes the answer itself."""

    qid: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    relation: str = "custom"
    # a false answer of the same type (user CSVs, the other candidate of winobias/winogrande)
    wrong_answer: str = ""
    answerable: bool = True  # False: the right answer is a refusal (unanswerable math questions)
    # a false answer that sits close to the truth (world-facts: the country's largest city that
    # is not its capital; a neighbouring country), for the given-answer bank's hard negatives
    plausible: str = ""


@dataclass(frozen=True)
class Dataset:
    """A named question set with the hash of its content, for provenance."""

    name: str
    questions: tuple[Question, ...]
    sha256: str
    # Entity names of the answer type of each relation (for class-blind answer location).
    relation_vocab: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Further entity names of any kind that an answer may name.
    entity_vocab: tuple[str, ...] = ()
    # which grader: alias, choice (two candidates), label (mnli) or number (math)
    kind: str = "alias"
    notes: tuple[str, ...] = ()  # what building it left out, and why


@dataclass(frozen=True)
class Generation:
    """A generated response: prompt and response token ids and the response text."""

    qid: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    response: str
    # Character offset where each response token starts in ``response`` (len = n tokens).
    token_starts: tuple[int, ...]
    stopped_by: str  # "sentence", "line", "eos" or "length"
    # log p of each response token under the model (greedy: its max)
    token_logprobs: tuple[float, ...] = ()
    token_entropies: tuple[float, ...] = ()  # entropy of the distribution each token came from


@dataclass(frozen=True)
class Span:
    """A character span ``[start, end)`` in a response."""

    start: int
    end: int


@dataclass(frozen=True)
class Grade:
    """Correctness and the located exact answer of one response."""

    qid: str
    correct: bool
    alias_span: Span | None  # where a gold alias matched (correct responses only)
    exact_span: Span | None  # the located exact answer used for probing
    exact_text: str | None
    locator: str  # which rule found exact_span ("type", "entity", "fallback", "alias", "none")
    ambiguous: str | None = None  # why the grade is unsure (None: it is not)


# The kinds of given answer: the truth; a random answer of the type; a plausible one (close to the
# truth); the model's own wrong answer (its greedy one's exact answer). Store ids end in them.
TRUE, RANDOM, PLAUSIBLE, OWN = "true", "false", "plausible", "own"

# what a study asks chat models
DEFAULT_SYSTEM_PROMPT = "Answer the question in one short sentence."
# The settings a probe bank records of its study, so that scoring prompts and stops as its study
# did.
BANK_SETTINGS = ("system_prompt", "max_new_tokens", "stop")
# where a study folder keeps its probe banks, by the answers each reads: the model's own
# (graded) and answers given to it (true / false)
RUN_BANKS = {"own": "probes", "given": "probes_given"}
TOKEN_BANK = "probes_tokens"  # a study's token-level bank (every answer token from the answer on)


def bank_kind(given_answer: bool) -> str:
    """The bank that reads an answer: given-answer for one given to the model, else own-answer."""
    return "given" if given_answer else "own"


@dataclass(frozen=True)
class GenerateOptions:
    """How to prompt and when to stop: what generation, scoring and answer choice share."""

    max_new_tokens: int = 32
    stop: str = "sentence"  # "sentence", "line" or "none"
    system_prompt: str = ""
    batch_size: int = 64
    tail: int = 8  # prompt tokens whose activations are kept (last_q and negative positions)
    share_prefix: bool = True  # run the prompts' common prefix once per batch
    temperature: float = 0.0  # 0 = greedy; > 0 samples from softmax(logits / temperature)
    # for sampling (each batch draws from its own generator seeded with seed + batch index)
    seed: int = 0
    # dtype of captured states ("bfloat16": what the store keeps, half the memory)
    capture_dtype: str = "float32"
    # record each token's log-probability and entropy (the log-prob baselines)
    token_stats: bool = True
    # eager (rows leave), static (fixed shapes), compiled (static + CUDA graphs); auto: by device
    decoder: str = "auto"

    @classmethod
    def of_bank(cls, meta: JsonObject) -> GenerateOptions:
        """How a probe bank's study prompted and stopped, one answer at a time.

        A study's defaults fill what the bank did not record.
        """
        recorded = {k: meta[k] for k in BANK_SETTINGS if k in meta}
        return cls(**{"system_prompt": DEFAULT_SYSTEM_PROMPT, **recorded, "batch_size": 1})


def _span_json(s: Span | None) -> list[int] | None:
    return [s.start, s.end] if s else None


@dataclass(frozen=True)
class Example:
    """One graded, located example of a study, as stored beside its activations (one JSON line)."""

    qid: str
    relation: str
    question: str
    gold: str
    response: str
    correct: bool
    exact_text: str | None
    exact_span: Span | None
    alias_span: Span | None
    locator: str
    stopped_by: str
    n_prompt: int
    response_ids: tuple[int, ...]
    positions: dict[str, int | None]  # named position -> index in prompt + response (None = absent)
    # per response token, from the generation pass (baselines)
    token_logprobs: tuple[float, ...] = ()
    token_entropies: tuple[float, ...] = ()
    token_starts: tuple[int, ...] = ()  # where each response token starts in ``response``
    ambiguous: str | None = None  # why the grade is unsure (None: it is not)
    # located by the model's extraction: whether the rule locator's span overlaps it
    rule_agrees: bool | None = None

    @property
    def exact_fallback(self) -> bool:
        """No exact answer was located: the exact-answer positions are the answer's last token."""
        return self.exact_span is None and self.positions.get("exact_answer_last") is not None

    @classmethod
    def of(cls, q: Question, g: Generation, gr: Grade, positions: dict[str, int | None]) -> Example:
        """The record of question ``q``, its generation ``g`` and grade ``gr``."""
        return cls(
            qid=q.qid,
            relation=q.relation,
            question=q.question,
            gold=q.answer,
            response=g.response,
            correct=gr.correct,
            exact_text=gr.exact_text,
            exact_span=gr.exact_span,
            alias_span=gr.alias_span,
            locator=gr.locator,
            stopped_by=g.stopped_by,
            n_prompt=len(g.prompt_ids),
            response_ids=g.response_ids,
            positions=dict(positions),
            token_logprobs=g.token_logprobs,
            token_entropies=g.token_entropies,
            token_starts=g.token_starts,
            ambiguous=gr.ambiguous,
        )

    def to_json(self) -> JsonObject:
        """The stored form (the store's JSON lines keep these keys, in field order)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(exact_span=_span_json(self.exact_span), alias_span=_span_json(self.alias_span))
        out.update(response_ids=list(self.response_ids), positions=dict(self.positions))
        out.update(
            token_logprobs=list(self.token_logprobs), token_entropies=list(self.token_entropies)
        )
        out.update(token_starts=list(self.token_starts))
        return out

    @classmethod
    def from_json(cls, d: JsonObject) -> Example:
        """Read a stored record back (fields added later, such as log-probs, default to empty)."""
        values: JsonObject = {
            f.name: d[f.name] for f in fields(cls) if f.name in d or f.default is MISSING
        }
        spans = {k: Span(*values[k]) if values[k] else None for k in ("exact_span", "alias_span")}
        tuples: JsonObject = {
            k: tuple(values[k])
            for k in ("response_ids", "token_logprobs", "token_entropies", "token_starts")
            if k in values
        }
        return cls(**{**values, **spans, **tuples})


@dataclass(frozen=True)
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
    verdict: str  # "hallucinated" or "correct"
    verdict_layer: int
    verdict_token: int  # index into tokens
    verdict_position: str  # "exact_answer_last", or "last_token" when no exact answer was found
    exact_answer: str | None
    standardised: bool
    attention_query: str  # "later tokens (mean)" or "token -1"
    response_ids: list[int] = field(default_factory=list)
    source: ScoreSource | None = None  # what scored it (kept in score.json)
    # the question's tokens as keys: [block, question token], the mean weight the answer's tokens
    # give each, 0-1 per block (empty without attention, or with one query token)
    question_tokens: list[str] = field(default_factory=list)
    question_attention: np.ndarray | None = None

    def to_json(self) -> JsonObject:
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
            "activity": nullable(self.activity),
            "activity_layers": self.activity_layers,
            "activity_scale": "z-score per layer (training set)"
            if self.standardised
            else "log-odds of wrong",
            "attention": nullable(self.attention),
            "question_tokens": self.question_tokens,
            "question_attention": None
            if self.question_attention is None
            else nullable(self.question_attention),
            "attention_layers": self.attention_layers,
            "attention_query": self.attention_query,
            **(asdict(self.source) if self.source is not None else {}),
        }

    @property
    def bank(self) -> str:
        """Which bank scored: ``own`` (trained on the model's answers) or ``given``."""
        return self.source.bank if self.source is not None else "own"


@dataclass(frozen=True)
class ScoreSource:
    """Where a score came from: the answer, how it was located, the model, and the probe bank."""

    answer_source: str  # "given" or "generated"
    locator: str
    model: str
    probe_position: str
    bank: str  # "own" or "given"


@dataclass(frozen=True)
class ToScore:
    """An answer to score: the question, the answer's token ids, and the relation (helps locate)."""

    question: str
    response_ids: Sequence[int]
    relation: str = "custom"


@dataclass(frozen=True)
class StreamStep:
    """One generated token and its scores, as soon as it has been fed to the model."""

    index: int
    token: str
    token_id: int
    activity: np.ndarray  # [layer] log-odds of wrong (or z-scores)
    p_wrong: float  # the verdict layer's probability for this token


def nullable(a: Any) -> Any:
    """A numeric array (any shape) as nested lists for JSON: 5 decimals, NaN or inf as null."""
    import numpy as np

    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 0:
        return round(float(x), 5) if np.isfinite(x) else None
    return [nullable(v) for v in x]
