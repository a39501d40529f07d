"""pplaw's two-stage perplexity law (NOT the paper's law): each regime's own power law in D, its scale and
exponent smooth functions of the regime.

    log L(mu, sigma, D) = c0 + c1*mu + c2*s + c3*mu^2 + c4*s^2 + c5*mu*s  -  (d0 + d1*mu + d2*s) * log D

i.e. ``L = B(mu, s) * D^-aD(mu, s)`` with ``log B`` quadratic and ``aD`` linear in the regime's statistics.

Why: in the sweep each regime's loss falls with its own slope in log-log (text the model knows: ~0; learnable
text: ~0.6; noise: its own), and the paper's multiplicative ``mu^(a0 + a1 s) * s^(b0 + b1 mu)`` cannot make a
bowl with a plateau of known text at one end and noise at the other, so it misfits the regimes it is then
asked to extrapolate (in-sample MAPE ~20% on the quickstart). Fitting each regime's power law first and then
smoothing its two parameters over (mu, s) is the "two-stage" fit of issue 11; written as one log-linear model it
is fitted in one step (the starts are the exact least-squares solution in log space) and a regime with two
sizes still pins its own slope. There is no floor ``E``: over the 2-3x extrapolations the loop validates, a
pure power law is the local form of ``E + B/D^b``; it over-states the gain of much larger budgets, which the
held-out validation at a larger size measures. Like :class:`~pplaw.laws.PerplexityLawRegimeD`, its optimum
moves with ``D``: its ``optimum`` (and ``fit``'s negative-exponent warning) are
:class:`~pplaw.laws.PerplexityLawRegimeD`'s. Meant for ``space="log_ppl"`` (mu, s of order 1-10: the
quadratic terms stay well conditioned).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pplaw.exceptions import InvalidInputError
from pplaw.laws.engine import Param
from pplaw.laws.registry import register
from pplaw.laws.perplexity_ext import PerplexityLawRegimeD

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data

_SURFACE = ("c1", "c2", "c3", "c4", "c5")


@register
class PerplexityLawLogQuad(PerplexityLawRegimeD):
    """``log L = c0 + c1*mu + c2*s + c3*mu^2 + c4*s^2 + c5*mu*s - (d0 + d1*mu + d2*s) log D`` (pplaw extension)."""

    name = "perplexity_logquad"
    formula = "log L = c0 + c1*mu + c2*s + c3*mu^2 + c4*s^2 + c5*mu*s - (d0 + d1*mu + d2*s)*log D"

    def describe(self) -> str:
        return super(PerplexityLawRegimeD, self).describe().replace("PerplexityLaw:", "PerplexityLawLogQuad (pplaw's two-stage extension, "
                                                            "not the paper's law):")

    def declare(self) -> tuple[Param, ...]:
        surf = [Param(k, (-1e3, 1e3), (), doc=d) for k, d in zip(
            _SURFACE, ("log-scale slope in mu", "log-scale slope in s", "log-scale curvature in mu",
                       "log-scale curvature in s", "log-scale mu*s interaction"))]
        return (Param("c0", (-1e3, 1e3), (), doc="log-scale at mu = s = 0"), *surf,
                Param("d0", (-10.0, 10.0), (), doc="data exponent at mu = s = 0"),
                Param("d1", (-10.0, 10.0), (), doc="data exponent's dependence on mu"),
                Param("d2", (-10.0, 10.0), (), doc="data exponent's dependence on s"),
                Param("d3", (-10.0, 10.0), (), doc="data exponent's curvature in mu"),
                Param("d4", (-10.0, 10.0), (), doc="data exponent's curvature in s"),
                Param("d5", (-10.0, 10.0), (), doc="data exponent's mu*s interaction"))

    def _features(self, X: Mapping[str, np.ndarray]) -> np.ndarray:
        mu, s, lD = X["mu"], self.s_of(X["sigma"]), np.log(X["D"])
        o = np.ones(mu.size)
        q = np.column_stack([o, mu, s, mu * mu, s * s, mu * s])  # (n, 6): quadratic in (mu, s)
        return np.hstack([q, -q * lD[:, None]])  # (n, 12): log B(mu, s) - aD(mu, s) log D

    def terms(self, X):
        return [(self._features(X), None)]  # one term: L = exp(features @ theta)

    # The paper law's E-profiling and data-scaled grid do not apply: the model is linear in log L.
    def scaled_bounds(self, data: Data) -> dict[str, tuple[float, float]]:
        return {}

    def grid_defaults(self, data: Data) -> dict[str, tuple[float, ...]]:
        return {}

    def starts(self, data: Data, space: str) -> np.ndarray:
        """The least-squares solution of ``log L = features @ theta`` (exact for squared error in log space; the
        engine's robust loss then only polishes it), clipped to the bounds; explicit ``grid=`` values win."""
        if self._grid:
            return self.grid_starts(data)
        y = self.target_to_model(data.y, data.X)
        F = self._features(data.X)
        ok = y > 0
        if ok.sum() < F.shape[1]:
            return np.zeros((1, F.shape[1]))
        theta, *_ = np.linalg.lstsq(F[ok], np.log(y[ok]), rcond=None)
        lo, hi = np.array([p.bounds for p in self.params], float).T
        return np.clip(theta, lo, hi)[None, :]  # fixed parameters have equal bounds: clipped to their value

    def grid_starts(self, data: Data) -> np.ndarray:
        import itertools

        grids = [self._grid.get(p.name, (0.0,)) for p in self.params]
        return np.array(list(itertools.product(*grids)), float)

    def profile_starts(self, data: Data, space: str, n_e: int = 24) -> np.ndarray:
        return self.starts(data, space)

    # ------------------------------------------------------------------ optimum
    def a_d(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The data exponent of each regime, ``d0 + d1*mu + d2*s``."""
        mu, s = np.asarray(mu, float), self.s_of(np.asarray(sigma, float))
        return (p["d0"] + p["d1"] * mu + p["d2"] * s + p["d3"] * mu * mu + p["d4"] * s * s + p["d5"] * mu * s)

    def g(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Minus the (mu, s) part of ``log B``: the loss at a fixed D is minimal where ``g_at`` is maximal.
        ``p`` values may be arrays ``(B,)``: broadcast as ``(B, 1)`` against points ``(M,)``."""
        s = self.s_of(sigma)
        c1, c2, c3, c4, c5 = (np.asarray(p[k], float)[..., None] for k in _SURFACE)
        return -(c1 * mu + c2 * s + c3 * mu * mu + c4 * s * s + c5 * mu * s)

    def g_at(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray, D: float | None) -> np.ndarray:
        if D is None:
            raise InvalidInputError(f"{type(self).__name__}.optimum needs D (the budget in tokens): its data "
                                    "exponent depends on (mu, sigma), so the optimum moves with D")
        d1, d2, d3, d4, d5 = (np.asarray(p[k], float)[..., None] for k in ("d1", "d2", "d3", "d4", "d5"))
        s = self.s_of(sigma)
        return self.g(p, mu, sigma) + (d1 * mu + d2 * s + d3 * mu * mu + d4 * s * s + d5 * mu * s) * np.log(float(D))
