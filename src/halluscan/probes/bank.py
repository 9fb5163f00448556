"""The probe bank: one probe per layer at one position, what per-response scoring uses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from halluscan import atomic
from halluscan.errors import HalluscanError
from halluscan.probes.logreg import fit_logreg
from halluscan.records import DEFAULT_C, RUN_BANKS, JsonObject

META, WEIGHTS = "probes.json", "probes.safetensors"


@dataclass
class ProbeBank:
    """One probe per layer at one position (with its scaler): what per-response scoring uses.

    Saved as ``probes.safetensors`` (coef, intercept, mean, scale; one row per layer) plus
    ``probes.json`` (layers, position, site, C, training size, provenance).
    """

    layers: list[int]
    position: str
    coef: torch.Tensor  # [layer, d] on standardised features
    intercept: torch.Tensor  # [layer]
    mean: torch.Tensor  # [layer, d]
    scale: torch.Tensor  # [layer, d]
    meta: JsonObject = field(default_factory=dict)
    score_mean: torch.Tensor | None = None  # [layer] mean log-odds on the training set
    score_std: torch.Tensor | None = None  # [layer] their std (to standardise activity maps)

    @classmethod
    def fit(
        cls,
        x: torch.Tensor | np.ndarray,
        y: np.ndarray,
        layers: Sequence[int] | None = None,
        position: str = "",
        c: float = DEFAULT_C,
        meta: JsonObject | None = None,
        device: str | torch.device | None = None,
    ) -> ProbeBank:
        """Fit one probe per layer on ``x`` [example, layer, d] with labels ``y`` (1 = wrong).

        Every example trains it (the bank is for new responses). ``layers`` names the layers of
        ``x`` (default 0..L-1); ``position`` is where they were read, recorded for the scorer.
        The fit runs on ``device`` (default: where ``x`` is); the bank's tensors are on the CPU.
        """
        x = torch.as_tensor(x)
        y = np.asarray(y)
        if x.dim() != 3 or len(y) != x.shape[0]:
            raise HalluscanError(
                f"ProbeBank.fit: x {tuple(x.shape)} and {len(y)} labels; give x [example, layer, d]"
            )
        layers = list(range(x.shape[1])) if layers is None else list(layers)
        xc = x.transpose(0, 1).to(device or x.device, torch.float32)  # [layer, n, d]
        centre = xc.mean(1, keepdim=True)
        fit = fit_logreg(xc - centre, y, c)
        info = {
            "c": c,
            "n_train": int(len(y)),
            "n_wrong": int(y.sum()),
            "hidden": int(x.shape[-1]),
            **(meta or {}),
        }
        mean = centre[:, 0] + fit.mean[:, 0]
        z = fit.logits[:, 0]  # [layer, n] training-set log-odds
        stats = {"score_mean": z.mean(1).cpu(), "score_std": z.std(1).clamp(min=1e-6).cpu()}
        tensors = (
            fit.coef[:, 0].cpu(),
            fit.intercept[:, 0].cpu(),
            mean.cpu(),
            fit.scale[:, 0].cpu(),
        )
        return cls(list(layers), position, *tensors, info, **stats)

    def decision_function(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Log-odds of *wrong* per layer: ``x`` [..., layer, d] -> [..., layer]."""
        z = (torch.as_tensor(x).to(torch.float32) - self.mean) / self.scale
        return (z * self.coef).sum(-1) + self.intercept

    def layer_logit(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Log-odds of *wrong* from ``layer``'s probe.

        ``x`` [..., d] -> [...] (one layer of ``decision_function``).
        """
        i = self.layers.index(layer)
        z = (x.to(torch.float32) - self.mean[i].to(x.device)) / self.scale[i].to(x.device)
        return z @ self.coef[i].to(x.device) + self.intercept[i].to(x.device)

    def save(self, folder: str | Path) -> Path:
        """Write ``probes.safetensors`` and ``probes.json`` into ``folder``."""
        from safetensors.torch import save

        out = Path(folder)
        tensors = {
            "coef": self.coef,
            "intercept": self.intercept,
            "mean": self.mean,
            "scale": self.scale,
        }
        if self.score_mean is not None and self.score_std is not None:
            tensors |= {"score_mean": self.score_mean, "score_std": self.score_std}
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        # in memory first: a full disk fails in the writer
        atomic.write_bytes(out / WEIGHTS, save(tensors))
        atomic.write_json(
            out / META, {"layers": self.layers, "position": self.position, **self.meta}
        )
        return out

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """Whether ``folder`` holds a saved bank."""
        return (Path(folder) / META).is_file() and (Path(folder) / WEIGHTS).is_file()

    @classmethod
    def of_run(cls, folder: str | Path) -> dict[str, ProbeBank]:
        """A study folder's banks by kind (``own``, ``given``): the ones it has."""
        root = Path(folder)
        banks = {k: root / sub for k, sub in RUN_BANKS.items() if cls.exists(root / sub)}
        if not banks:
            raise HalluscanError(
                f"{root}: neither a probe bank nor a study folder with one (probes/, "
                "probes_given/); give runs/NAME of a finished `halluscan run`"
            )
        return {k: cls.load(p) for k, p in banks.items()}

    @classmethod
    def load(cls, folder: str | Path) -> ProbeBank:
        """Read a bank written by :meth:`save`."""
        from safetensors.torch import load_file

        p = Path(folder)
        if not cls.exists(p):
            raise HalluscanError(
                f"{p}: no probe bank here ({META}, {WEIGHTS}); run `halluscan run` first"
            )
        meta = json.loads((p / META).read_text())
        t = load_file(str(p / WEIGHTS))
        layers, position = meta.pop("layers"), meta.pop("position")
        stats = {"score_mean": t.get("score_mean"), "score_std": t.get("score_std")}
        return cls(
            layers, position, t["coef"], t["intercept"], t["mean"], t["scale"], meta, **stats
        )
