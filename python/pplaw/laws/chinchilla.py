"""Chinchilla: ``L(N, D) = E + A/N^alpha + B/D^beta`` (Hoffmann et al. 2022, approach 3).

Fitted as ``log L = LSE(e, a - alpha*log N, b - beta*log D)`` with ``e, a, b = log E, log A, log B``, Huber
(delta=1e-3, summed) on log residuals, L-BFGS-B from Besiroglu et al.'s (Epoch AI) start grid: on their 240
digitised points this reproduces E=1.8172, A=477.8, B=2143, alpha=0.3473, beta=0.3672.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws.engine import LSELaw, Param
from pplaw.laws.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.result import Fit

# Besiroglu et al. 2024 (Epoch AI), "Chinchilla scaling: a replication attempt": 6*6*5*5*5 = 4500 starts.
EPOCH_GRID = {
    "E": np.arange(-1.0, 1.5, 0.5), "A": np.arange(0.0, 30.0, 5.0), "alpha": np.arange(0.0, 2.5, 0.5),
    "B": np.arange(0.0, 30.0, 5.0), "beta": np.arange(0.0, 2.5, 0.5),
}
# A 3^5 = 243 grid spanning the same box, for quick fits and the benchmark.
COARSE_GRID = {
    "E": (-1.0, 0.0, 1.0), "A": (0.0, 10.0, 20.0), "alpha": (0.0, 0.5, 1.0),
    "B": (0.0, 10.0, 20.0), "beta": (0.0, 0.5, 1.0),
}


@register
class Chinchilla(LSELaw):
    """``L(N, D) = E + A/N^alpha + B/D^beta``: loss from model size ``N`` and training tokens ``D``.

    ``grid`` is ``"epoch"`` (4500 starts; evaluated at once, only the best ``polish`` are refined), ``"coarse"``
    (243), or a mapping of parameter -> start values (log scale for ``E``, ``A``, ``B``).
    Derived: the compute-optimal allocation exponents ``a = beta/(alpha+beta)`` (``N_opt ~ C^a``) and
    ``b = alpha/(alpha+beta)`` (``D_opt ~ C^b``), and ``G = (alpha*A/(beta*B))^(1/(alpha+beta))``, with
    ``C = 6*N*D``.
    """

    name = "chinchilla"
    formula = "L = E + A/N^alpha + B/D^beta"
    variables = ("N", "D")
    positive = ("N", "D")

    def __init__(self, grid: str | Mapping[str, Any] = "epoch", *, bounds: Mapping[str, Any] | None = None,
                 fixed: Mapping[str, float] | None = None):
        if isinstance(grid, str):
            if grid not in ("epoch", "coarse"):
                raise InvalidInputError(f"grid must be 'epoch', 'coarse' or a mapping, got {grid!r}")
            self._grid_name = grid
            grid_map = None
        else:
            self._grid_name, grid_map = "custom", grid
        super().__init__(grid=grid_map, bounds=bounds, fixed=fixed)

    def options(self) -> dict[str, Any]:
        return {} if self._grid_name in ("epoch", "custom") else {"grid": self._grid_name}

    def declare(self) -> tuple[Param, ...]:
        g = COARSE_GRID if self._grid_name == "coarse" else EPOCH_GRID
        return (
            Param("E", (-20.0, 5.0), tuple(g["E"]), log=True, doc="irreducible loss"),
            Param("A", (-10.0, 100.0), tuple(g["A"]), log=True, doc="model-size coefficient"),
            Param("alpha", (0.0, 5.0), tuple(g["alpha"]), doc="model-size exponent"),
            Param("B", (-10.0, 100.0), tuple(g["B"]), log=True, doc="data coefficient"),
            Param("beta", (0.0, 5.0), tuple(g["beta"]), doc="data exponent"),
        )

    def terms(self, X):
        ln, ld = np.log(X["N"]), np.log(X["D"])
        z, o = np.zeros(ln.size), np.ones(ln.size)
        return [
            (np.column_stack([o, z, z, z, z]), None),  # e
            (np.column_stack([z, o, -ln, z, z]), None),  # a - alpha log N
            (np.column_stack([z, z, z, o, -ld]), None),  # b - beta log D
        ]

    def derived(self, p: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with np.errstate(all="ignore"):
            s = p["alpha"] + p["beta"]
            return {"a": p["beta"] / s, "b": p["alpha"] / s,
                    "G": (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s)}

    def optimum(self, fit: Fit, *, C: Any) -> pd.DataFrame:
        """Compute-optimal ``N_opt``, ``D_opt`` and the predicted loss for budgets ``C`` (FLOPs, ``C = 6*N*D``),
        with bootstrap percentile CIs (``*_lo``, ``*_hi``) when the fit has draws."""
        c = np.atleast_1d(np.asarray(C, dtype=float))
        if not np.all(np.isfinite(c) & (c > 0)):
            raise InvalidInputError("C (compute budgets in FLOPs) must be finite and > 0")

        def alloc(p: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            d = self.derived(p)
            n_opt = np.asarray(d["G"])[..., None] * (c / 6.0) ** np.asarray(d["a"])[..., None]
            d_opt = (c / 6.0) / n_opt
            loss = (np.asarray(p["E"])[..., None] + np.asarray(p["A"])[..., None] / n_opt
                    ** np.asarray(p["alpha"])[..., None] + np.asarray(p["B"])[..., None] / d_opt
                    ** np.asarray(p["beta"])[..., None])
            return n_opt, d_opt, loss

        n_opt, d_opt, loss = alloc({k: np.asarray(v) for k, v in fit.params.items()})
        out = pd.DataFrame({"C": c, "N_opt": n_opt.ravel(), "D_opt": d_opt.ravel(), "loss": loss.ravel()})
        draws = fit.param_draws()
        if not draws.empty:
            from pplaw.laws.result import percentile_ci

            nd, dd, ld = alloc({k: draws[k].to_numpy() for k in fit.params})  # (B, len(C))
            for name, arr in (("N_opt", nd), ("D_opt", dd), ("loss", ld)):
                lo, hi = percentile_ci(arr, fit.level)
                out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
        if not np.all(np.isfinite(out["N_opt"])):
            raise FitError("the compute-optimal allocation is undefined for these parameters (alpha or beta = 0)")
        return out
