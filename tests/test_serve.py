"""halluscan serve: the gate, the stream's cancellation, bad input, and the page in Chromium."""

import asyncio
import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from halluscan.cli import main
from halluscan.errors import HalluscanError
from halluscan.records import StreamStep
from halluscan.serve.app import Busy, Gate, Served, checked
from halluscan.serve.routes import build_app
from tests.conftest import PERU, peru_france, tiny_flags

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)><b>bold</b>"


def test_the_gate_runs_one_and_tells_the_rest_how_many_are_ahead():
    async def go():
        gate = Gate(max_queue=1)
        order = []

        async def user(name, hold):
            async with gate.slot() as ahead:
                order.append((name, ahead))
                await asyncio.sleep(hold)

        first = asyncio.create_task(user("a", 0.05))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(user("b", 0))
        await asyncio.sleep(0.01)
        with pytest.raises(Busy, match="busy, 2 ahead"):
            async with gate.slot():
                pass
        await asyncio.gather(first, second)
        return order, gate

    order, gate = asyncio.run(go())
    assert order == [("a", 0), ("b", 1)] and not gate.lock.locked() and gate.waiting == 0


class SlowScanner:
    """A scanner whose stream yields a token every 20 ms and records when it was closed."""

    def __init__(self):
        self.closed_after = None
        self.bank = type("B", (), {"layers": [0, 1], "position": "p"})()
        self.layer = 1

    def for_answer(self, given):
        return self

    def stream(self, question):
        n = 0
        try:
            for n in range(1000):
                time.sleep(0.02)
                yield StreamStep(n, f"t{n}", n, np.array([0.1, float("nan")]), 0.5)
        finally:
            self.closed_after = n


def test_a_closed_stream_stops_its_generation_and_frees_the_model():
    async def go():
        fake = SlowScanner()
        served = Served(fake, None, "r", Gate(2))
        got = []
        agen = served.ask("q", 0)
        async for chunk in agen:
            got.append(json.loads(chunk[6:]))
            if len(got) == 3:
                break
        await agen.aclose()
        return fake, got

    fake, got = asyncio.run(go())
    assert [g["type"] for g in got] == ["start", "token", "token"]
    assert got[1]["activity"] == [0.1, None]  # NaN travels as null: the JSON stays valid
    assert fake.closed_after is not None and fake.closed_after < 5


def test_user_text_is_checked():
    assert checked("What?", "question", 10) == "What?"
    with pytest.raises(HalluscanError, match="the question is empty"):
        checked("  ", "question", 10)
    with pytest.raises(HalluscanError, match="is 11 characters; the limit is 10"):
        checked("x" * 11, "question", 10)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study, and the page over it."""
    tiny = peru_france(tmp_path_factory.mktemp("serve"), 12)
    flags = "--stop none --max-new-tokens 3 --batch-size 8 --quiet --folds 2".split()
    assert main(["run", "--name", "s", *tiny_flags(tiny), *flags]) == 0
    return tiny / "runs" / "s"


def test_the_api_refuses_bad_input_in_one_line(study):
    from starlette.testclient import TestClient

    from halluscan.serve import served_model

    served = served_model(study, max_queue=0)
    with TestClient(build_app(served)) as c:
        assert c.get("/api/info").json()["run"] == "s"
        assert "is empty" in c.get("/api/ask?question=%20").json()["error"]
        r = c.post("/api/score", json={"question": "Q?", "answer": "x" * 1001})
        assert r.status_code == 400 and "limit is 1000" in r.json()["error"]
        assert c.post("/api/score", content=b"{").json()["error"] == "the body is not JSON"
        assert "no finished study" in c.get("/api/heatmap?run=../../etc").json()["error"]
        assert "whole number" in c.get("/api/cell?run=s&position=last_q&layer=x").json()["error"]
        r = c.get("/static/plotly.min.js")
        assert r.status_code == 200 and len(r.content) > 1_000_000  # served offline
        with c.stream("GET", f"/api/ask?question={PERU} 1") as s:
            events = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: ")]
        assert events[0]["type"] == "start" and events[-1]["type"] == "verdict"
    with pytest.raises(HalluscanError, match="no finished study there"):
        served_model(study.parent / "nope")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page_url(study):
    """The page served on the loopback address from a thread, for the browser."""
    import uvicorn

    from halluscan.serve import served_model

    served = served_model(study, max_queue=4)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(served), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", served
    server.should_exit = True
    thread.join(10)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser, url):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # every redraw of a map records its number of token columns
    page.add_init_script(
        "window.__cols = []; document.addEventListener('DOMContentLoaded', () => {"
        " const react = Plotly.react; Plotly.react = function (div, data, ...rest) {"
        " if (div.classList && div.classList.contains('map'))"
        " window.__cols.push(data[0].z[0].length);"
        " return react.call(this, div, data, ...rest); }; });"
    )
    page.goto(url)
    page.wait_for_function("document.querySelector('#info').textContent.startsWith('model')")
    return page, dialogs


def test_a_question_streams_the_map_grows_and_the_verdict_is_scores(browser, page_url):
    url, served = page_url
    page, dialogs = _page(browser, url)
    col = page.locator(".col").first
    col.locator(".q").fill(f"{PERU} 3")
    col.locator(".go").click()
    page.wait_for_function("document.querySelector('.verdict').textContent.includes('p_wrong')")
    cols = page.evaluate("window.__cols")
    streamed = [c for c in cols[:-1]]
    assert streamed[:3] == [1, 2, 3]  # one more column per token, as it arrived
    assert col.locator(".tok").count() == 3
    want = served.scanner.score(f"{PERU} 3")
    assert f"p_wrong {want.p_wrong:.3f}" in col.locator(".verdict").text_content()
    assert want.verdict in col.locator(".verdict").text_content()
    assert not dialogs


def test_a_heatmap_cell_click_lists_answers_and_hostile_text_stays_text(browser, page_url):
    url, _ = page_url
    page, dialogs = _page(browser, url)
    page.click("#tab-explore")
    page.wait_for_selector("#heatmap .nsewdrag")
    page.locator("#heatmap .nsewdrag").click()  # a real click in the middle of the heatmap
    page.wait_for_selector("#cell table tr.answer")
    assert page.locator("#cell tr.answer").count() >= 2
    assert "AUC" in page.locator("#cell p").text_content()
    # hostile text in a listed answer: the page's own table shows it as text
    page.evaluate(
        "h => document.body.appendChild(answerTable('t', [{qid: 'x', question: h, response: h,"
        " exact_answer: h, gold: h, grade: 'wrong', p_wrong: 0.5}], 's'))",
        HOSTILE,
    )
    cells = page.locator("body > div:last-child td").all_text_contents()
    assert cells[2:5] == [HOSTILE] * 3
    page.locator("#cell tr.answer").first.click()  # an answer opens its maps
    page.wait_for_function(
        "document.querySelector('#picked .verdict').textContent.includes('p_wrong')"
    )
    assert page.locator("#picked .map .main-svg").count() >= 1
    assert page.locator("#picked .attn .main-svg").count() >= 1
    page.evaluate(
        "h => { const d = document.createElement('div'); d.className = 'map'; d.id = 'hostile';"
        " document.body.appendChild(d); drawMap(d, [[1, 2]], [h, 'x'], [0], h); }",
        HOSTILE,
    )
    ticks = page.evaluate(
        "() => Array.from(document.querySelectorAll('#hostile .xtick text'))"
        ".map(t => t.textContent)"
    )
    assert HOSTILE in ticks
    assert page.locator("#hostile .gtitle").text_content() == HOSTILE
    assert page.locator("img[src='x']").count() == 0 and page.locator("#hostile b").count() == 0
    assert not dialogs


def test_the_token_bank_is_trained_and_greys_what_comes_before_the_answer(study):
    from halluscan.engine.decode import token_starts
    from halluscan.probes.bank import ProbeBank
    from halluscan.scan import scoring
    from halluscan.serve import served_model
    from halluscan.study import metrics as metrics_io
    from halluscan.study.runs import RunDir

    run = RunDir(study)
    t = metrics_io.read(run).token_bank
    assert t is not None and t.offsets and t.offsets[0].offset == 0
    assert all(0 <= o.auc <= 1 and o.n > 0 for o in t.offsets)
    assert all(o.layer0_auc is not None and o.gain is not None for o in t.offsets)
    assert t.n_tokens >= t.n_answers and len(t.pooled_by_layer) == len(t.layers)
    assert ProbeBank.load(run.probes_tokens).meta["kind"] == "tokens"
    scanner = served_model(study).scanner.for_answer(False)
    assert scanner.tokens is not None
    for q in (f"{PERU} 1", f"{PERU} 2", "What is the capital of France 3"):
        r = scanner.score(q)
        starts, text = token_starts(scanner.lm.tokenizer, r.response_ids)
        located = [k for k in range(len(r.tokens)) if not np.isnan(r.activity[0, k])]
        first = located[0]
        assert located == list(range(first, len(r.tokens)))  # read from one token to the end
        assert np.isnan(r.activity[:, :first]).all() and np.isfinite(r.activity[:, first:]).all()
        exact = None if r.exact_answer is None else r.response.index(r.exact_answer)
        if exact is not None:  # it starts at the exact answer's first token
            assert starts[first] <= exact < (starts[first + 1] if first + 1 < len(starts) else 1e9)
        assert scoring.verdict(r.p_wrong) == r.verdict  # the verdict is still the exact bank's


def test_the_reports_pair_is_one_question_with_its_gold_and_the_models_wrong_answer():
    from halluscan.analyses.summary import same_question
    from halluscan.records import Span
    from tests.conftest import example

    right = example("a", correct=True)
    echo = example("b", correct=False, exact_text="paris")  # its own answer is the gold: no pair
    wrong = example("c", correct=False, gold="Lima", exact_text="Cusco", exact_span=Span(0, 5))
    unlocated = example("d", correct=False, gold="Lima", exact_text=None, exact_span=None)
    assert same_question([right, echo, unlocated, wrong]) is wrong
    assert same_question([right, echo, unlocated]) is None


def test_the_question_tokens_are_keys_of_the_answers_attention(study, tmp_path):
    from halluscan.report import figures
    from halluscan.serve import served_model

    scanner = served_model(study).scanner
    r = scanner.score("What is the capital of Peru", "Lima.")
    assert r.question_tokens == ["What", "is", "the", "capital", "of", "Peru"]
    qa = r.question_attention
    assert qa.shape == (len(r.attention_layers), 6) and np.nanmax(qa) == 1.0 and qa.min() >= 0
    assert json.loads(json.dumps(r.to_json()))["question_tokens"] == r.question_tokens
    files = figures.attention_files(r, tmp_path)
    assert (tmp_path / "attention_question.png") in files
