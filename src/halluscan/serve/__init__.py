"""``halluscan serve``: a local page that draws the maps as the answer is written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError

log = logging.getLogger(__name__)
LOCAL = ("127.0.0.1", "localhost", "::1")


def require_web() -> None:
    """A one-line error when the web packages are missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise HalluscanError(
            "halluscan serve needs starlette and uvicorn: pip install starlette uvicorn"
        ) from None


def served_model(run: str | Path, max_queue: int = 8, lm: Any = None) -> Any:
    """The :class:`~halluscan.serve.app.Served` of a finished study: its model and its banks.

    ``lm`` (a loaded model) skips loading the study's own.
    """
    from halluscan.models.loading import load_as
    from halluscan.scan import Scanner
    from halluscan.serve.app import Gate, Served
    from halluscan.study.runs import RunDir, stored_config

    root = RunDir(Path(run))
    if not root.has_metrics():
        raise HalluscanError(f"--run {run}: no finished study there; run `halluscan run` first")
    if max_queue < 0:
        raise HalluscanError("--max-queue must be 0 or more")
    cfg = stored_config(root.open_store())
    model = lm if lm is not None else load_as(cfg)
    scanner = Scanner(model, root.root)
    return Served(scanner, root.root.parent, root.root.name, Gate(max_queue))


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8765, max_queue: int = 8) -> None:
    """Load the study's model once and serve the page until interrupted."""
    require_web()
    import uvicorn

    from halluscan.serve.routes import build_app

    served = served_model(run, max_queue)
    if host not in LOCAL:
        print(
            f"warning: serving on {host}: the page has no authentication; anyone who can reach "
            "this address can use the model"
        )
    print(f"halluscan serve: http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(build_app(served), host=host, port=port, log_level="warning")
