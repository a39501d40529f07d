"""The maximum-entropy tilt of ``rust/src/tilt.rs``, fitted on a landscape's fine grid instead of the chunks.

Inclusion probabilities ``p(x) = sigmoid(l0 + l1 z + l2 z^2)``, ``z = (x - center) / scale``, such that the
expected tokens, mean and second moment of an order sample match the budget and the targets. The core fits
them on every chunk; streaming fits them on the grid cells (tokens per cell of 0.001 nat), which is exact up
to the grid's resolution: the cells move each chunk's ``x`` by at most half a cell. The dual is convex, so
damped Newton steps converge whenever the target lies strictly inside what the corpus can realise.
"""

from __future__ import annotations

import numpy as np

from pplaw.exceptions import UnreachableTargetError


def _sigmoid(t: np.ndarray) -> np.ndarray:
    out = np.empty_like(t)
    pos = t >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-t[pos]))
    e = np.exp(t[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def fit_tilt(x: np.ndarray, w: np.ndarray, budget: float, center: float, scale: float, targets: tuple,
             active: tuple, *, what: str) -> np.ndarray:
    """``lam`` (3,) with ``sum w p phi = budget * targets`` on the active components ``phi = (1, z, z^2)``.

    Raises :class:`UnreachableTargetError` (``what`` names the request) when Newton does not converge: the
    target is at or beyond the edge of the realisable region."""
    z = (x - center) / scale
    phi = np.stack([np.ones_like(z), z, z * z])  # (3, cells)
    act = np.array(active, dtype=bool)
    tgt = budget * np.asarray(targets, dtype=np.float64)
    lam = np.zeros(3)
    frac = budget / w.sum()
    lam[0] = np.log(frac / (1 - frac)) if 0 < frac < 1 else 0.0

    def dual(l: np.ndarray) -> float:
        with np.errstate(invalid="ignore", over="ignore"):  # a diverging step: inf/nan, rejected below
            eta = l @ phi
            val = float(np.sum(w * np.logaddexp(0.0, eta)) - l[act] @ tgt[act])
        return val if np.isfinite(val) else np.inf

    g_norm = np.inf
    for _ in range(200):
        p = _sigmoid(lam @ phi)
        grad = (phi * (w * p)).sum(axis=1) - tgt
        g_norm = float(np.max(np.abs(grad[act]) / np.maximum(np.abs(tgt[act]), budget)))
        if g_norm < 1e-10:
            return lam
        hw = w * p * (1 - p)
        h = (phi[act][:, None, :] * phi[act][None, :, :] * hw).sum(axis=2)
        try:
            step = np.linalg.solve(h + 1e-12 * np.eye(h.shape[0]) * max(np.trace(h), 1e-300), grad[act])
        except np.linalg.LinAlgError:
            break
        f0, t = dual(lam), 1.0
        while t > 1e-12:
            cand = lam.copy()
            cand[act] -= t * step
            if dual(cand) <= f0 - 1e-4 * t * float(grad[act] @ step):
                lam = cand
                break
            t /= 2
        else:
            break
    if g_norm < 1e-6:
        return lam
    raise UnreachableTargetError(
        f"{what}: the tilt to the target did not converge on the landscape's grid (relative residual "
        f"{g_norm:.2e}): the target is at or beyond the edge of what the corpus can realise at this budget")
