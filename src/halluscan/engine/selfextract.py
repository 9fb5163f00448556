"""The model extracts its own exact answer: a locator that never sees the label or the gold.

Each (question, response) goes into a fresh prompt that asks the study's own model to copy the
exact answer out of the response, or to say there is none. The instruction and a few worked
examples (our own wording) are the prompt prefix every row of a batch shares and runs once;
each row adds its question and response. Decoding is greedy, a few tokens, to the end of the
line. The published study located answers the same way, with each model extracting its own.

An extraction counts only when it is a span of the response (:func:`span_in`): the model may
copy, never invent. The same pass runs for every response, before grading.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from halluscan.engine.generate import batch_order, finish_row, generate_batch
from halluscan.models.loading import LoadedModel
from halluscan.records import GenerateOptions, Span
from halluscan.text import fold

NONE = "NONE"
MAX_WORDS = 6  # a longer copy is most of the sentence, not its exact answer
INSTRUCTION = """You read a question and a response to it. Copy the exact answer out of the \
response: the few words that answer the question, exactly as they are written there. If the \
response gives no answer, write NONE. Write nothing else.

Question: What is the capital of Peru?
Response: The capital of Peru is Lima, on the Pacific coast.
Exact answer: Lima

Question: In which country is the city of Porto?
Response: Porto is a port city in the north of Portugal.
Exact answer: Portugal

Question: Who painted the Mona Lisa?
Response: I am not sure who painted it.
Exact answer: NONE

Question: What is the currency of Japan?
Response: Japan pays in yen, issued by the Bank of Japan.
Exact answer: yen"""
ITEM = "Question: {question}\nResponse: {response}\nExact answer:"
OPTIONS = GenerateOptions(
    max_new_tokens=12, stop="line", tail=1, share_prefix=True, token_stats=False
)


def span_in(response: str, extracted: str) -> Span | None:
    """Where ``extracted`` occurs in ``response`` (case, accents and spacing folded), or None.

    Quotes and closing punctuation around the extraction are dropped first. NONE, a copy of more
    than ``MAX_WORDS`` words, and a copy of the whole of a longer answer (a sentence, not its
    answer) are None.
    """
    text = extracted.strip().strip("\"'“”‘’`").rstrip(".,;:!?").strip()
    if not text or text.upper() == NONE or len(text.split()) > MAX_WORDS:
        return None
    words = [re.escape(w) for w in fold(text).lower().split()]
    pattern = re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")
    folded, where = "", []  # the folded response, and each of its characters' source index
    for i, ch in enumerate(response):
        f = fold(ch).lower()
        folded += f
        where += [i] * len(f)
    hit = pattern.search(folded)
    if hit is None:
        return None
    span = Span(where[hit.start()], where[hit.end() - 1] + 1)
    rest = (response[: span.start] + response[span.end :]).strip(" .,;:!?\n")
    # a copy of a whole sentence-long answer is no extraction of its exact answer
    return None if not rest and len(text.split()) > 3 else span


@torch.inference_mode()
def self_extract(
    lm: LoadedModel,
    items: Sequence[tuple[str, str]],
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, Span | None]]:
    """Per (question, response): what the model wrote, and its span in the response.

    The span is None when the model found no answer, or wrote a text that is not in the response.
    """
    prompts = [lm.prompt_ids(ITEM.format(question=q, response=r), INSTRUCTION) for q, r in items]
    opts = replace(OPTIONS, batch_size=batch_size)
    out: list[tuple[str, Span | None]] = [("", None)] * len(items)
    for idx in batch_order(prompts, batch_size):
        rows, _, _ = generate_batch(lm, [prompts[i] for i in idx], opts, None)
        for i, row in zip(idx, rows, strict=True):
            said = finish_row(lm, str(i), prompts[i], row).response.strip()
            out[i] = (said, span_in(items[i][1], said))
        if progress is not None:
            progress(len(idx))
    return out
