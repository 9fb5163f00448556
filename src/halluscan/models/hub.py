"""Hub ids: fail at once, with one line, when a model is neither cached nor reachable."""

from __future__ import annotations

import os

from halluscan.errors import HalluscanError


def check_hub(spec: str, revision: str = "", timeout: float = 3.0) -> None:
    """Fail at once (not after a minute of retries) for a hub id neither cached nor reachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec, "config.json", revision=revision or None), str):
        return  # cached: transformers reads it (offline too)
    host = (
        (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").split("://")[-1].split("/")[0]
    )
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in (
        "1",
        "ON",
        "YES",
        "TRUE",
    )
    if offline or not _reachable(host, timeout):
        raise HalluscanError(
            f"model {spec!r}{f' at revision {revision!r}' if revision else ''} is not in the "
            f"Hugging Face cache and {host} cannot be "
            f"reached{' (HF_HUB_OFFLINE is set)' if offline else ''}; connect to the network, or "
            "give a local model folder, a .gguf file, or 'smollm2'"
        )


def _reachable(host: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (with lookup)."""
    import socket
    import threading

    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    # a hung name lookup cannot hold us past the timeout
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)
