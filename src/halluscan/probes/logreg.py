"""Batched L2 logistic regression: the solver behind every probe in halluscan.

:func:`fit_logreg` fits many problems at once (every layer of a position x every
cross-validation fold) with sklearn's objective, ``C * sum(logloss) + 0.5 * ||w||^2`` on
standardised features with an unpenalised intercept, and sklearn's stopping rule. It is an
L-BFGS without autograd: a logistic model is linear in its weights, so the exact line search
along a direction costs one matrix product, and each step reads the data twice (logits,
gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from halluscan.errors import HalluscanError


def fold_moments(x: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training mean and std of ``x`` [P, n, d] for each fold of ``train`` [n, F] -> [P, F, d].

    The std is the population one (ddof 0), as sklearn's ``StandardScaler`` computes it.

    A (near-)constant feature gets std 1, so it standardises to ~0 instead of dividing by 0.
    This is the one place features are standardised: probes, the sweep and transfer share it.
    """
    cnt = train.sum(0).to(x.dtype)[:, None]  # [F, 1]
    tr = train.T.to(x.dtype).contiguous()  # [F, n]: this operand order is the fast matmul layout
    mu = torch.matmul(tr, x) / cnt
    var = (torch.matmul(tr, x * x) / cnt - mu * mu).clamp(min=0)
    sd = var.sqrt()
    tiny = 1e-6 * (1 + mu.abs())
    return mu, torch.where(sd > tiny, sd, torch.ones_like(sd))


@dataclass
class LogRegFit:
    """Result of :func:`fit_logreg`: weights in standardised units and the standardisation."""

    coef: torch.Tensor  # [P, F, d] on standardised features
    intercept: torch.Tensor  # [P, F]
    mean: torch.Tensor  # [P, F, d]
    scale: torch.Tensor  # [P, F, d]
    logits: torch.Tensor  # [P, F, n]: every example's log-odds under every fold's probe
    n_iter: int
    converged: torch.Tensor  # [P, F] bool

    def raw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights and intercept on the raw features: ``logit = x @ w + b``."""
        w = self.coef / self.scale
        return w, self.intercept - (self.mean * w).sum(-1)


def fit_logreg(  # long: the L-BFGS state (weights, logits, memory, active set) is one loop's
    x: torch.Tensor,
    y: torch.Tensor | np.ndarray,
    c: float,
    train: torch.Tensor | None = None,
    *,
    max_iter: int = 500,
    tol: float = 1e-4,
    history: int = 20,
) -> LogRegFit:
    """Fit one probe per problem ``p`` and fold ``f``: ``x`` [P, n, d], ``y`` [n] in {0, 1}.

    ``train`` [n, F] marks each fold's training rows (default: one fold, every row). Each
    problem minimises ``C * sum_train logloss + 0.5 * ||w||^2`` on features standardised by
    its fold's training mean and std. That standardisation is folded into the weights
    (``logit = x @ (w / sd) - mu . (w / sd) + b``), so all folds share one copy of ``x``.

    Stops when every problem's largest gradient entry, on sklearn's scale (divided by
    ``C * n_train``), is below ``tol`` (sklearn's default 1e-4), or after ``max_iter`` steps.
    Converged problems stop moving; cells whose folds have all converged leave the batch.
    Works in ``x``'s dtype (float32 for the sweep, float64 for :class:`LinearProbe`).
    """
    if x.dim() != 3:
        raise HalluscanError(
            f"fit_logreg wants x as [problem, example, feature]; got shape {tuple(x.shape)}"
        )
    n_prob, n, d = x.shape
    dt, dev = x.dtype, x.device  # everything is made where x lives (CPU or GPU)
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).to(dev, dt)
    if yt.shape != (n,):
        raise HalluscanError(f"fit_logreg: {yt.numel()} labels for {n} examples")
    train = torch.ones(n, 1, dtype=dt, device=dev) if train is None else train.to(dev, dt)
    n_folds = train.shape[1]
    if bool((train.sum(0) < 2).any()):
        raise HalluscanError(
            "fit_logreg: a fold has fewer than 2 training examples; use fewer folds or more data"
        )
    mu, sd = fold_moments(x, train)
    m = train.T.contiguous()[None]  # [1, F, n]
    yy = yt[None, None]  # [1, 1, n]
    scale = c * m.sum(-1)  # [1, F]: sklearn's objective is ours divided by C * n_train

    out_w = torch.zeros(n_prob, n_folds, d, dtype=dt, device=dev)
    out_b = torch.zeros(n_prob, n_folds, dtype=dt, device=dev)
    out_z = torch.zeros(n_prob, n_folds, n, dtype=dt, device=dev)
    out_ok = torch.zeros(n_prob, n_folds, dtype=torch.bool, device=dev)

    active = torch.arange(n_prob, device=dev)
    xa, mua, sda = x, mu, sd
    w = torch.zeros(n_prob, n_folds, d, dtype=dt, device=dev)
    b = torch.zeros(n_prob, n_folds, dtype=dt, device=dev)
    z = torch.zeros(n_prob, n_folds, n, dtype=dt, device=dev)

    def project(vw: torch.Tensor, vb: torch.Tensor) -> torch.Tensor:
        """Logits of weights ``vw`` [P, F, d] (standardised) and bias ``vb`` [P, F] -> [P, F, n]."""
        v = vw / sda
        return torch.bmm(v, xa.mT) - (mua * v).sum(-1, keepdim=True) + vb[..., None]

    def gradient(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        r = m * (torch.sigmoid(z) - yy)  # [P, F, n]
        rs = r.sum(-1)
        gw = c * (torch.bmm(r, xa) - mua * rs[..., None]) / sda + w
        return torch.cat([gw, (c * rs)[..., None]], -1)  # [P, F, d + 1]

    def converged(g: torch.Tensor) -> torch.Tensor:
        return (g.abs().amax(-1) / scale) <= tol

    g = gradient(z, w)
    done = converged(g)
    mem: Memory = []
    gamma = torch.ones(n_prob, n_folds, 1, dtype=dt, device=dev)
    it = 0
    for it in range(1, max_iter + 1):
        step = torch.where(done[..., None], torch.zeros_like(g), -_two_loop(g, mem, gamma))
        dw, db = step[..., :d], step[..., d]
        dz = project(dw, db)
        alpha = _line_search(c, m, yy, z, dz, w, dw, first=not mem)
        z = z + alpha[..., None] * dz
        s_new = torch.cat([alpha[..., None] * dw, (alpha * db)[..., None]], -1)
        w, b = w + s_new[..., :d], b + s_new[..., d]
        g_new = gradient(z, w)
        y_new = g_new - g
        sy = (s_new * y_new).sum(-1, keepdim=True)
        ok = (
            sy
            > 1e-10
            * (s_new * s_new).sum(-1, keepdim=True).sqrt()
            * (y_new * y_new).sum(-1, keepdim=True).sqrt()
        )
        zero = torch.zeros_like(s_new)
        gamma = torch.where(ok, sy / (y_new * y_new).sum(-1, keepdim=True).clamp(min=1e-30), gamma)
        rho = torch.where(ok, 1.0 / sy.clamp(min=1e-30), torch.zeros_like(sy))
        mem.append((torch.where(ok, s_new, zero), torch.where(ok, y_new, zero), rho))
        if len(mem) > history:
            mem.pop(0)
        g = g_new
        done = done | converged(g)
        finished = done.all(-1)
        if bool(finished.all()) or it == max_iter:
            break
        if int(finished.sum()) * 4 >= len(active):  # a quarter of the batch is done: shrink it
            keep = ~finished
            idx = active[finished]
            out_w[idx], out_b[idx], out_z[idx], out_ok[idx] = (
                w[finished],
                b[finished],
                z[finished],
                True,
            )
            active = active[keep]
            xa, mua, sda = x[active], mu[active], sd[active]
            w, b, z, g, done, gamma = w[keep], b[keep], z[keep], g[keep], done[keep], gamma[keep]
            mem = [(s[keep], yv[keep], rho[keep]) for s, yv, rho in mem]
    out_w[active], out_b[active], out_z[active], out_ok[active] = w, b, z, done
    return LogRegFit(out_w, out_b, mu, sd, out_z, it, out_ok)


Memory = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # L-BFGS (s, y, rho) pairs


def _two_loop(g: torch.Tensor, mem: Memory, gamma: torch.Tensor) -> torch.Tensor:
    """L-BFGS two-loop recursion per problem: the inverse-Hessian estimate times ``g``."""
    q = g.clone()
    alphas = []
    for s, yv, rho in reversed(mem):
        a = rho * (s * q).sum(-1, keepdim=True)
        q -= a * yv
        alphas.append(a)
    q *= gamma  # initial inverse-Hessian scale: from each problem's last accepted pair
    for (s, yv, rho), a in zip(mem, reversed(alphas), strict=True):
        q += s * (a - rho * (yv * q).sum(-1, keepdim=True))
    return q


def _line_search(
    c: float,
    m: torch.Tensor,
    yy: torch.Tensor,
    z: torch.Tensor,
    dz: torch.Tensor,
    w: torch.Tensor,
    dw: torch.Tensor,
    first: bool,
) -> torch.Tensor:
    """Exact line search: three Newton steps on the step length ``alpha`` per problem.

    ``phi(a) = C sum logloss(z + a dz) + 0.5 ||w + a dw||^2`` is convex in ``a``; the first step
    of a fit starts short, later ones at 1.
    """
    wd, dd = (w * dw).sum(-1), (dw * dw).sum(-1)
    alpha = 1.0 / (1.0 + dd.sqrt()) if first else torch.ones_like(wd)
    for _ in range(3):
        p = torch.sigmoid(z + alpha[..., None] * dz)
        d1 = c * (m * (p - yy) * dz).sum(-1) + wd + alpha * dd
        d2 = c * (m * p * (1 - p) * dz * dz).sum(-1) + dd
        alpha = (alpha - d1 / d2.clamp(min=1e-30)).clamp(0, 1e3)
    return alpha
