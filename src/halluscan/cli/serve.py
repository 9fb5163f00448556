"""``halluscan serve``: its flags and command."""

from __future__ import annotations

import argparse
from typing import Any


def add_serve_command(sub: Any) -> None:
    """``serve``: the local page over one study's model and banks."""
    from halluscan.study.runs import RUNS_DIR

    s = sub.add_parser("serve", help="a local page: ask, watch the maps grow, explore a study")
    s.add_argument(
        "--run",
        default=f"{RUNS_DIR}/demo",
        help="a finished study whose model and banks serve (default: %(default)s)",
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, local only)"
    )
    s.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    s.add_argument(
        "--max-queue",
        type=int,
        default=8,
        help="requests that may wait for the model; more are told 'busy' (default: %(default)s)",
    )
    s.set_defaults(func=cmd_serve, loads_model=True)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from halluscan.serve import serve

    serve(args.run, args.host, args.port, args.max_queue)
    return 0
