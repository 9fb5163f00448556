"""20 clients at once on ``halluscan serve`` over the demo run, on the loopback address only.

The server runs as a user starts it (``halluscan serve --run runs/demo``, a subprocess, its own
memory). First one client alone asks a question: its time to first token is the baseline. Then
``--clients`` clients ask at the same moment; each must get its stream to the end or a "busy,
N ahead" answer, within ``--timeout`` seconds (none may hang). Then one client alone again.

Recorded: per client what it got, its time to first token and to the end; p50/p95 of the time
to first token of the streams served under load, and their ratio to the lone client's; the
server's resident memory (VmRSS) after the first lone client, after the burst, and after the
last lone client (flat: the burst leaves nothing behind).

Writes ``benchmarks/results/serve_load.json``.

    python benchmarks/serve_load.py            # the demo study
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "What is the capital of Peru?",
    "What is the capital of Kenya?",
    "What is the currency of Japan?",
    "In which country is the city of Porto?",
    "What is the capital of Norway?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ask(base: str, question: str, timeout: float) -> dict[str, Any]:
    import httpx

    t0 = time.perf_counter()
    first, tokens, kind = None, 0, "hung"
    try:
        with httpx.stream(
            "GET", f"{base}/api/ask", params={"question": question}, timeout=timeout
        ) as r:
            if r.status_code == 503:
                r.read()
                return {"got": "busy", "message": r.json()["error"], "s": time.perf_counter() - t0}
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                e = json.loads(line[6:])
                if e["type"] == "token":
                    tokens += 1
                    first = first if first is not None else time.perf_counter() - t0
                elif e["type"] == "verdict":
                    kind = "stream"
                elif e["type"] == "error":
                    kind = "busy" if e.get("busy") else "error"
    except httpx.TimeoutException:
        kind = "hung"
    return {"got": kind, "ttft_s": first, "tokens": tokens, "s": time.perf_counter() - t0}


def pct(v: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(v, q)) if v else None


def main() -> None:
    from halluscan.study.config import DEMO
    from halluscan.study.runs import RunDir

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(RunDir.named(DEMO).root))
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_load.json"))
    args = ap.parse_args()
    port = free_port()
    exe = str(Path(sys.executable).parent / "halluscan")
    cmd = [exe, "serve", "--run", args.run, "--port", str(port)]
    server = subprocess.Popen([*cmd, "--max-queue", str(args.max_queue)], stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "halluscan serve: http://..." once the model is loaded
        time.sleep(1.0)
        alone = ask(base, QUESTIONS[0], args.timeout)
        rss = {"after_one_client": rss_mb(server.pid)}
        results: list[dict[str, Any]] = [{} for _ in range(args.clients)]

        def client(i: int) -> None:
            results[i] = ask(base, QUESTIONS[i % len(QUESTIONS)], args.timeout)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.timeout + 10)
        burst_s = time.perf_counter() - t0
        rss["after_burst"] = rss_mb(server.pid)
        again = ask(base, QUESTIONS[0], args.timeout)
        rss["after_last_client"] = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    ttft = [r["ttft_s"] for r in results if r.get("got") == "stream" and r["ttft_s"] is not None]
    counts = {k: sum(r.get("got") == k for r in results) for k in ("stream", "busy", "error")}
    counts["hung"] = args.clients - counts["stream"] - counts["busy"] - counts["error"]
    out = {
        "run": args.run,
        "clients": args.clients,
        "max_queue": args.max_queue,
        "counts": counts,
        "alone_ttft_s": alone["ttft_s"],
        "alone_again_ttft_s": again["ttft_s"],
        "load_ttft_p50_s": pct(ttft, 50),
        "load_ttft_p95_s": pct(ttft, 95),
        "load_p50_over_alone": None if not ttft else pct(ttft, 50) / alone["ttft_s"],
        "burst_s": round(burst_s, 2),
        "server_rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "clients_detail": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "clients_detail"}, indent=2))


if __name__ == "__main__":
    main()
