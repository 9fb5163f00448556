"""The page's endpoints: each checks its input and answers JSON, a stream, or a one-line error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.serve import explore
from halluscan.serve.app import (
    MAX_ANSWER,
    MAX_QUESTION,
    STATIC,
    Busy,
    Served,
    checked,
    event,
    result_json,
)


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _limit(bank: Any) -> float:
    """The activity map's colour limit (log-odds): the bank's training scores, mean + 2 sd."""
    if bank.score_mean is None or bank.score_std is None:
        return 8.0
    return float((bank.score_mean.abs() + 2 * bank.score_std).max())


class Routes:
    """Starlette handlers over one :class:`Served`."""

    def __init__(self, served: Served) -> None:
        self.s = served

    async def page(self, request: Any) -> Any:
        """The page (no build step: its script is served beside it)."""
        from starlette.responses import FileResponse

        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def plotly(self, request: Any) -> Any:
        """Plotly's own bundle, from the installed package: the page works offline."""
        from starlette.responses import FileResponse

        return FileResponse(_plotly_js(), media_type="text/javascript")

    async def info(self, request: Any) -> Any:
        """The model, the banks and their cells, the runs, the limits."""
        from starlette.responses import JSONResponse

        sc = self.s.scanner
        return JSONResponse(
            {
                "model": sc.lm.model_id,
                "run": self.s.run_name,
                "own_bank": self.s.bank_cell(False),
                "given_bank": self.s.bank_cell(True) if "given" in sc.by_kind else None,
                "runs": explore.list_runs(self.s.runs_dir),
                "limits": {"question": MAX_QUESTION, "answer": MAX_ANSWER},
                "max_queue": self.s.gate.max_queue,
                "limit": _limit(sc.for_answer(False).bank),
            }
        )

    async def ask(self, request: Any) -> Any:
        """``GET /api/ask?question=…``: the answer's tokens as server-sent events."""
        from starlette.responses import JSONResponse, StreamingResponse

        try:
            question = checked(request.query_params.get("question"), "question", MAX_QUESTION)
        except HalluscanError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        gate = self.s.gate
        if gate.lock.locked() and gate.waiting >= gate.max_queue:
            return JSONResponse({"error": str(Busy(gate.ahead())), "busy": True}, 503)

        async def stream() -> AsyncIterator[str]:
            try:
                async with gate.slot() as ahead:
                    async for chunk in self.s.ask(question, ahead):
                        yield chunk
            except Busy as e:
                yield event({"type": "error", "message": str(e), "busy": True})
            except HalluscanError as e:
                yield event({"type": "error", "message": str(e)})

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def _scored(self, question: str, answer: str | None, ids: list[int] | None) -> Any:
        from starlette.responses import JSONResponse

        given = ids is None
        scanner = self.s.scanner.for_answer(given)
        try:
            async with self.s.gate.slot():
                if ids is None:
                    r = await asyncio.to_thread(scanner.score, question, answer)
                else:
                    r = await asyncio.to_thread(scanner.score_ids, question, ids, generated=True)
        except Busy as e:
            return JSONResponse({"error": str(e), "busy": True}, status_code=503)
        return JSONResponse(result_json(r, self.s.bank_cell(given)))

    async def score(self, request: Any) -> Any:
        """``POST /api/score {question, answer}``: a typed answer, by the given-answer bank."""
        from starlette.responses import JSONResponse

        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise HalluscanError("send a JSON object {question, answer}")
            q = checked(body.get("question"), "question", MAX_QUESTION)
            a = checked(body.get("answer"), "answer", MAX_ANSWER)
            return await self._scored(q, a, None)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        except HalluscanError as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    async def heatmap(self, request: Any) -> Any:
        """``GET /api/heatmap?run=NAME``: the study's probe heatmap."""
        return await self._explore(lambda q: explore.heatmap(self._run(q)), request)

    async def cell(self, request: Any) -> Any:
        """``GET /api/cell?run=&position=&layer=``: a cell's AUC and its extreme answers."""

        def one(q: Any) -> Any:
            try:
                layer = int(q.get("layer", ""))
            except ValueError:
                raise HalluscanError("layer must be a whole number") from None
            return explore.cell(self._run(q), str(q.get("position")), layer)

        return await self._explore(one, request)

    async def answer(self, request: Any) -> Any:
        """``GET /api/answer?run=&qid=``: one of the study's answers, scored as generated."""
        q = request.query_params
        try:
            run = self._run(q)
            side = explore.side_of(str(run.root))
            e = next((x for x in side.examples if x.qid == q.get("qid")), None)
            if e is None:
                raise HalluscanError(f"no answer {q.get('qid')!r} in {q.get('run')}")
            served = self.s.scanner.lm.provenance().to_json()
            if (side.store.provenance.get("model") or {}).get("revision") != served["revision"]:
                raise HalluscanError("that study's model is not the served model")
        except HalluscanError as err:
            from starlette.responses import JSONResponse

            return JSONResponse({"error": str(err)}, status_code=400)
        return await self._scored(e.question, None, list(e.response_ids))

    def _run(self, q: Any) -> Any:
        return explore.run_dir(self.s.runs_dir, str(q.get("run") or self.s.run_name))

    async def _explore(self, fn: Any, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            return JSONResponse(await asyncio.to_thread(fn, request.query_params))
        except HalluscanError as e:
            return JSONResponse({"error": str(e)}, status_code=400)


def build_app(served: Served) -> Any:
    """The Starlette app: the page, its script, the stream, scoring, and the study explorer."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    r = Routes(served)
    table: list[Any] = [
        Route("/", r.page),
        Route("/static/plotly.min.js", r.plotly),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/info", r.info),
        Route("/api/ask", r.ask),
        Route("/api/score", r.score, methods=["POST"]),
        Route("/api/heatmap", r.heatmap),
        Route("/api/cell", r.cell),
        Route("/api/answer", r.answer),
    ]
    if served.runs_dir.is_dir():
        table.append(Mount("/runs", StaticFiles(directory=served.runs_dir), name="runs"))
    return Starlette(routes=table)
