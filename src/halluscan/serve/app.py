"""``halluscan serve``: a local page that draws the maps while the answer is written.

One model, loaded once, behind one gate: at most one generation runs at a time, at most
``max_queue`` requests wait, and any more are answered "busy, N ahead" at once. A question
streams as server-sent events, one per token (its text, ``p_wrong`` and the layer column of the
activity map), then the verdict of ``halluscan score`` on the same answer. A closed tab stops its
generation at the next token. The page needs no build step and no network: its script and
plotly's own bundle are served from the installed packages.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.records import JsonObject, ScoreResult, nullable

STATIC = Path(__file__).parent / "static"
MAX_QUESTION, MAX_ANSWER = 400, 1000  # characters


class Busy(Exception):
    """The gate's queue is full."""

    def __init__(self, ahead: int) -> None:
        super().__init__(f"busy, {ahead} ahead; try again in a moment")
        self.ahead = ahead


@dataclass
class Gate:
    """At most one model call at a time; at most ``max_queue`` waiting for it."""

    max_queue: int
    waiting: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def ahead(self) -> int:
        """Requests before a new one: the waiting ones, and the one running."""
        return self.waiting + (1 if self.lock.locked() else 0)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold the model; refuse at once (``Busy``) when the queue is full."""
        ahead = self.ahead()
        if self.lock.locked() and self.waiting >= self.max_queue:
            raise Busy(ahead)
        self.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1
        try:
            yield ahead
        finally:
            self.lock.release()


def checked(text: object, what: str, limit: int) -> str:
    """A user's question or answer: a non-empty string within ``limit`` characters."""
    if not isinstance(text, str) or not text.strip():
        raise HalluscanError(f"the {what} is empty; type one")
    if len(text) > limit:
        raise HalluscanError(f"the {what} is {len(text)} characters; the limit is {limit}")
    return text


def result_json(r: ScoreResult, bank_cell: str) -> JsonObject:
    """What the page draws of a scored answer (the verdict, both maps, the tokens)."""
    return {
        "type": "verdict",
        "question": r.question,
        "response": r.response,
        "tokens": r.tokens,
        "activity": nullable(r.activity),
        "activity_layers": r.activity_layers,
        "attention": nullable(r.attention),
        "attention_layers": r.attention_layers,
        "question_tokens": r.question_tokens,
        "question_attention": []
        if r.question_attention is None
        else nullable(r.question_attention),
        "p_wrong": r.p_wrong,
        "verdict": r.verdict,
        "verdict_layer": r.verdict_layer,
        "verdict_token": r.verdict_token,
        "exact_answer": r.exact_answer,
        "bank": f"{r.bank}-answer bank, {bank_cell}",
    }


def event(obj: JsonObject) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(obj)}\n\n"


@dataclass
class Served:
    """The model behind the page: its scanner, the gate, and where the runs are."""

    scanner: Any  # halluscan.scan.Scanner over a study folder (both banks)
    runs_dir: Path
    run_name: str
    gate: Gate

    def bank_cell(self, given: bool) -> str:
        """The verdict's cell, as the page names it."""
        s = self.scanner.for_answer(given)
        return f"{s.bank.position} layer {s.layer}"

    async def ask(self, question: str, ahead: int) -> AsyncIterator[str]:
        """Tokens as they come, then the verdict; the generation stops if the client leaves."""
        scanner = self.scanner.for_answer(False)
        yield event({"type": "start", "ahead": ahead, "layers": list(scanner.bank.layers)})
        it = scanner.stream(question)
        ids: list[int] = []
        pending: asyncio.Future[Any] | None = None
        try:
            while True:
                # the token is computed in a worker thread; a cancelled request waits for it
                pending = asyncio.ensure_future(asyncio.to_thread(next, it, None))
                step = await asyncio.shield(pending)
                if step is None:
                    break
                ids.append(step.token_id)
                yield event(
                    {
                        "type": "token",
                        "index": step.index,
                        "token": step.token,
                        "p_wrong": nullable(step.p_wrong),
                        "activity": nullable(step.activity),
                    }
                )
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait([pending])
            it.close()  # a closed tab: the decode loop ends at this token
        if not ids:
            yield event({"type": "error", "message": "the model generated no answer"})
            return
        r = await asyncio.to_thread(scanner.score_ids, question, ids, generated=True)
        yield event(result_json(r, self.bank_cell(False)))
