"""A detector that reads an answer's whole layer x position tensor, for one model or several.

The idea is ACT-ViT's (Bar-Shalom et al., 2025); the code is ours. Per answer the input is the
residual stream at every stored layer and every named position, ``[layer, position, d]``:

1. the layer axis is average-pooled to a fixed number of bins, so models of any depth share
   one grid (pooling first is exact: the adapter is linear);
2. a per-model adapter standardises each (bin, position) on its model's training answers and
   maps ``d`` to a shared width (models of any width share the rest);
3. a learned embedding marks each grid cell, one small transformer encoder (torch's own layer)
   mixes the cells, absent positions masked out;
4. the cells are mean-pooled and one linear head gives the log-odds of *wrong*.

Training holds out a share of the training questions (grouped) and keeps the epoch with the best
AUC on them: the configuration is fixed before any test answer is seen. Pure maths on arrays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from halluscan import atomic
from halluscan.errors import HalluscanError
from halluscan.probes.features import Features
from halluscan.probes.sweep import auc_rows
from halluscan.records import JsonObject


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's shape and training, fixed before any test answer is seen."""

    bins: int = 8  # the layer axis pooled to this many bins
    width: int = 32  # the shared width after each model's adapter
    heads: int = 4
    depth: int = 1  # transformer encoder layers
    dropout: float = 0.1
    epochs: int = 12  # at most; the best epoch on the held-out training questions is kept
    patience: int = 4  # epochs without a better held-out AUC before stopping
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch: int = 64
    val_share: float = 0.15  # training questions held out to choose the epoch
    seed: int = 0


@dataclass(frozen=True)
class Grid:
    """Answers of one model on the detector's grid: ``x`` [n, bin, position, d], ``mask`` [n, P]."""

    model: str  # which adapter reads them
    positions: tuple[str, ...]
    x: torch.Tensor
    mask: torch.Tensor  # bool: the position exists for the answer

    def rows(self, keep: np.ndarray) -> Grid:
        """The answers ``keep`` (bool or indices) selects."""
        k = torch.as_tensor(np.asarray(keep))
        return Grid(self.model, self.positions, self.x[k], self.mask[k])

    def __len__(self) -> int:
        return int(self.x.shape[0])


def grid(features: Features, model: str, positions: Sequence[str], bins: int) -> Grid:
    """``features`` on the grid: each position read once, its layers pooled to ``bins``."""
    missing = [p for p in positions if p not in features.positions]
    if missing:
        raise HalluscanError(
            f"detector: positions {', '.join(missing)} are not in these answers' store; the "
            "detector needs every position it was built with"
        )
    if len(features.layers) < bins:
        raise HalluscanError(f"detector: {len(features.layers)} layers, fewer than {bins} bins")
    cols = []
    for p in positions:
        x = features.at(p).to(torch.float32)  # [n, layer, d]
        cols.append(F.adaptive_avg_pool1d(x.transpose(1, 2), bins).transpose(1, 2))
    mask = torch.from_numpy(np.stack([features.has(p) for p in positions], axis=1))
    return Grid(model, tuple(positions), torch.stack(cols, dim=2), mask)


class Adapter(nn.Module):
    """One model's standardisation per grid cell and its linear map to the shared width."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, hidden: int, bins: int, n_pos: int, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(bins, n_pos, hidden))
        self.register_buffer("scale", torch.ones(bins, n_pos, hidden))
        self.proj = nn.Linear(hidden, width)

    def standardise_on(self, g: Grid) -> None:
        """Set the mean and scale of each cell from the answers that have it."""
        w = g.mask[:, None, :, None].to(torch.float32)  # [n, 1, P, 1]
        n = w.sum(0).clamp(min=1.0)
        mean = (g.x * w).sum(0) / n
        var = ((g.x - mean) ** 2 * w).sum(0) / n
        self.mean.copy_(mean)
        self.scale.copy_(var.sqrt().clamp(min=1e-4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[n, bin, P, width]``: standardised (absent positions zero), then mapped."""
        z = (x - self.mean) / self.scale * mask[:, None, :, None]
        return self.proj(z)  # [n, bin, P, width]


class Detector(nn.Module):
    """Per-model adapters, a shared encoder over the grid, a mean pool and a linear head."""

    def __init__(
        self, hidden: dict[str, int], positions: Sequence[str], cfg: DetectorConfig
    ) -> None:
        super().__init__()
        self.cfg, self.positions, self.models = cfg, tuple(positions), tuple(hidden)
        self.hidden = dict(hidden)
        n_pos = len(self.positions)
        self.adapters = nn.ModuleList(
            Adapter(hidden[m], cfg.bins, n_pos, cfg.width) for m in self.models
        )
        self.where = nn.Parameter(torch.randn(cfg.bins, n_pos, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, 2 * cfg.width, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, 1)

    def adapter(self, model: str) -> Adapter:
        """The adapter of ``model``; a one-line error for a model it was not trained on."""
        if model not in self.models:
            raise HalluscanError(
                f"detector: no adapter for {model!r} (trained on {', '.join(self.models)}); "
                "train it with that model's study among --runs"
            )
        return cast(Adapter, self.adapters[self.models.index(model)])

    def forward(self, g: Grid) -> torch.Tensor:
        """Log-odds of wrong, ``[n]``."""
        h = self.adapter(g.model)(g.x, g.mask) + self.where  # [n, bin, P, width]
        keep = g.mask[:, None, :].expand(-1, self.cfg.bins, -1).flatten(1)  # [n, bin*P]
        h = self.encoder(h.flatten(1, 2), src_key_padding_mask=~keep)
        w = keep[..., None].to(h.dtype)
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.head(self.norm(pooled))[:, 0]

    @torch.no_grad()
    def score(self, g: Grid, batch: int = 256) -> np.ndarray:
        """Log-odds of wrong for every answer of ``g`` (NaN for one with no position)."""
        self.eval()
        out = np.full(len(g), np.nan)
        for a in range(0, len(g), batch):
            part = g.rows(np.arange(a, min(a + batch, len(g))))
            ok = part.mask.any(1).numpy()
            if ok.any():
                out[a : a + len(part)][ok] = self(part.rows(ok)).numpy()
        return out

    def spec(self) -> dict[str, object]:
        """What rebuilds it: the config, positions, and each model's width."""
        return {
            "config": asdict(self.cfg),
            "positions": list(self.positions),
            "hidden": self.hidden,
        }


@dataclass(frozen=True)
class Labelled:
    """One model's training answers: the grid, labels (1 = wrong) and question ids."""

    grid: Grid
    y: np.ndarray
    groups: np.ndarray


def held_out_questions(groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``[answer]`` True for the answers of a ``share`` of the questions, drawn with ``seed``."""
    qs = np.unique(groups)
    rng = np.random.default_rng(seed)
    pick = set(rng.choice(qs, size=max(1, round(share * len(qs))), replace=False).tolist())
    return np.array([g in pick for g in groups])


def _auc(det: Detector, parts: Sequence[Labelled]) -> float:
    """Mean AUC over ``parts`` (each part's own answers; NaN parts skipped)."""
    aucs = []
    for p in parts:
        z = det.score(p.grid)
        ok = np.isfinite(z)
        if len(set(p.y[ok].tolist())) == 2:
            aucs.append(float(auc_rows(z[ok][None], p.y[ok])[0]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _batches(
    parts: Sequence[Labelled], size: int, rng: np.random.Generator
) -> list[tuple[int, np.ndarray]]:
    """One epoch's batches: each from one model's answers, in a random order."""
    out = []
    for i, p in enumerate(parts):
        rows = rng.permutation(np.flatnonzero(p.grid.mask.any(1).numpy()))
        out += [(i, rows[a : a + size]) for a in range(0, len(rows), size)]
    return [out[j] for j in rng.permutation(len(out))]


DEFAULT = DetectorConfig()


def fit_detector(parts: Sequence[Labelled], cfg: DetectorConfig = DEFAULT) -> Detector:
    """A detector trained on the answers of one model or several (one adapter each)."""
    if not parts or any(len(set(p.y.tolist())) < 2 for p in parts):
        raise HalluscanError("detector: every model's training answers need both classes")
    if any(p.grid.x.shape[1] != cfg.bins for p in parts):
        raise HalluscanError(f"detector: build the grids with bins={cfg.bins}, the config's")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    hidden = {p.grid.model: int(p.grid.x.shape[-1]) for p in parts}
    det = Detector(hidden, _positions(parts), cfg)
    held = [held_out_questions(p.groups, cfg.val_share, cfg.seed) for p in parts]
    train = [_part(p, ~h) for p, h in zip(parts, held, strict=True)]
    val = [_part(p, h) for p, h in zip(parts, held, strict=True)]
    for p in train:
        det.adapter(p.grid.model).standardise_on(p.grid)
    opt = torch.optim.AdamW(det.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, waited = -1.0, None, 0
    for _ in range(cfg.epochs):
        det.train()
        for i, rows in _batches(train, cfg.batch, rng):
            p = train[i]
            y = torch.from_numpy(p.y[rows]).to(torch.float32)
            weight = (len(p.y) - p.y.sum()) / max(int(p.y.sum()), 1)  # classes weighed equally
            loss = F.binary_cross_entropy_with_logits(
                det(p.grid.rows(rows)), y, pos_weight=torch.tensor(float(weight))
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        auc = _auc(det, val)
        if auc > best:
            best, waited = auc, 0
            best_state = {k: v.detach().clone() for k, v in det.state_dict().items()}
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    if best_state is not None:
        det.load_state_dict(best_state)
    return det.eval()


def _part(p: Labelled, keep: np.ndarray) -> Labelled:
    return Labelled(p.grid.rows(keep), p.y[keep], p.groups[keep])


def _positions(parts: Sequence[Labelled]) -> tuple[str, ...]:
    held = {p.grid.positions for p in parts}
    if len(held) != 1:
        raise HalluscanError("detector: the models' answers are read at different positions")
    return held.pop()


META, WEIGHTS = "detector.json", "detector.safetensors"


def save_detector(det: Detector, folder: str | Path, meta: JsonObject) -> Path:
    """Write ``detector.safetensors`` and ``detector.json`` (spec and ``meta``) to ``folder``."""
    from safetensors.torch import save

    out = Path(folder)
    tensors = {k: v.contiguous() for k, v in det.state_dict().items()}
    atomic.write_bytes(out / WEIGHTS, save(tensors))  # in memory first: a full disk fails here
    atomic.write_json(out / META, {**det.spec(), **meta})
    return out


def detector_exists(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved detector."""
    return (Path(folder) / META).is_file() and (Path(folder) / WEIGHTS).is_file()


def load_detector(folder: str | Path) -> tuple[Detector, JsonObject]:
    """A detector written by :func:`save_detector`, and its metadata."""
    from safetensors.torch import load_file

    p = Path(folder)
    if not detector_exists(p):
        raise HalluscanError(
            f"{p}: no detector here ({META}, {WEIGHTS}); train one with `halluscan detect`"
        )
    meta = json.loads((p / META).read_text())
    try:
        cfg = DetectorConfig(**meta.pop("config"))
        det = Detector(meta.pop("hidden"), meta.pop("positions"), cfg)
        det.load_state_dict(load_file(str(p / WEIGHTS)))
    except (KeyError, TypeError, RuntimeError) as e:
        raise HalluscanError(f"{p}: a damaged or foreign detector ({e})") from None
    return det.eval(), meta
