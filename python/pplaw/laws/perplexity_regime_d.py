"""pplaw's extension of the perplexity-aware law (NOT the paper's law): a data exponent per regime.

    L(mu, sigma, D) = E + Dc / ( mu^(a0 + a1*s) * s^(b0 + b1*mu) * D^(d0 + d1*mu + d2*s) )

Why: in continual pre-training, subsets of different perplexity regimes gain from more tokens at very
different rates (text the model already knows barely improves with D; learnable text improves fast), while the
paper's law scales every regime's reducible loss by one ``D^-aD``. Letting the exponent be a low-order
function of the regime, ``aD(mu, s) = d0 + d1*mu + d2*s``, keeps the law LSE-linear (the extra columns are
``-mu*log D`` and ``-s*log D``) so the same engine fits it, but the optimum ``(mu*, sigma*)`` now moves with
``D``: :meth:`PerplexityLawRegimeD.optimum` needs the budget ``D``. With ``d1 = d2 = 0`` it is the paper's law.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pplaw.exceptions import InvalidInputError
from pplaw.laws.engine import Param
from pplaw.laws.registry import register
from pplaw.laws.perplexity import PerplexityLaw, _sym

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.result import Fit


@register
class PerplexityLawRegimeD(PerplexityLaw):
    """``L = E + Dc / (mu^(a0 + a1*s) * s^(b0 + b1*mu) * D^(d0 + d1*mu + d2*s))`` (pplaw extension)."""

    name = "perplexity_regime_d"
    formula = "L = E + Dc / (mu^(a0 + a1*s) * s^(b0 + b1*mu) * D^(d0 + d1*mu + d2*s))"

    def describe(self) -> str:
        return super().describe().replace("PerplexityLaw:", "PerplexityLawRegimeD (pplaw extension, not the "
                                                            "paper's law):")

    def declare(self) -> tuple[Param, ...]:
        base = [p for p in super().declare() if p.name != "aD"]
        return (*base,
                Param("d0", (-1.0, 3.0), (0.1, 0.3, 0.6), doc="data exponent at mu = s = 0"),
                Param("d1", (-3.0, 3.0), (), doc="data exponent's dependence on mu"),
                Param("d2", (-3.0, 3.0), (), doc="data exponent's dependence on s"))

    def terms(self, X):
        mu, s, lD = X["mu"], self.s_of(X["sigma"]), np.log(X["D"])
        lm, ls = np.log(mu), np.log(s)
        z, o = np.zeros(mu.size), np.ones(mu.size)
        return [
            (np.column_stack([o, z, z, z, z, z, z, z, z]), None),  # e
            (np.column_stack([z, o, -lm, -s * lm, -ls, -mu * ls, -lD, -mu * lD, -s * lD]), None),
        ]

    def grid_defaults(self, data: Data) -> dict[str, tuple[float, ...]]:
        """The paper law's scale-aware grid, with ``d1``/``d2`` on scales of ``1/median`` of mu and s."""
        mu, s = data.X["mu"], self.s_of(data.X["sigma"])
        return {**super().grid_defaults(data), "d1": tuple(np.array([-0.2, 0.0, 0.2]) / np.median(mu)),
                "d2": tuple(np.array([-0.2, 0.0, 0.2]) / np.median(s))}

    def scaled_bounds(self, data: Data) -> dict[str, tuple[float, float]]:
        """As the paper law's, and ``d1``/``d2`` within +-4 / max(mu) and +-4 / max(s) (at least +-3): the
        exponent ``d0`` they modify lies in [-1, 3]."""
        mu, s = data.X["mu"], self.s_of(data.X["sigma"])
        return {**super().scaled_bounds(data), "d1": _sym(max(3.0, 4.0 / float(np.max(mu)))),
                "d2": _sym(max(3.0, 4.0 / float(np.max(s))))}

    def fit(self, table: Any, **kwargs: Any) -> Fit:
        """As :meth:`Law.fit`; the fit's warnings also say when the fitted ``aD(mu, s)`` is negative at any fitted
        point (loss growing with ``D`` there: the linear exponent is extrapolating outside what the data support)."""
        fit = super().fit(table, **kwargs)
        a_d = self.a_d(fit.params, fit.data.X["mu"], fit.data.X["sigma"])
        if np.any(a_d < 0):
            k = int(np.argmin(a_d))
            msg = (f"the fitted data exponent aD(mu, s) is negative at {int(np.sum(a_d < 0))} of "
                   f"{a_d.size} fitted points (min {a_d[k]:.4g} at mu={fit.data.X['mu'][k]:.4g}, "
                   f"sigma={fit.data.X['sigma'][k]:.4g}): the law predicts loss rising with D there")
            fit._fit_warnings.append(msg)
            fit.warnings.append(msg)
        return fit

    def a_d(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The data exponent of each regime, ``d0 + d1*mu + d2*s``."""
        return p["d0"] + p["d1"] * np.asarray(mu, float) + p["d2"] * self.s_of(np.asarray(sigma, float))

    def g_at(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray, D: float | None) -> np.ndarray:
        if D is None:
            raise InvalidInputError(f"{type(self).__name__}.optimum needs D (the budget in tokens): its data "
                                    "exponent depends on (mu, sigma), so the optimum moves with D")
        d1, d2 = (np.asarray(p[k], float)[..., None] for k in ("d1", "d2"))
        return self.g(p, mu, sigma) + (d1 * mu + d2 * self.s_of(sigma)) * np.log(float(D))

    def optimum(self, fit: Fit, *, region: Any = None, D: float | None = None, **kwargs: Any):
        if D is None:
            raise InvalidInputError(f"{type(self).__name__}.optimum needs D (the budget in tokens): its data "
                                    "exponent depends on (mu, sigma), so the optimum moves with D")
        return super().optimum(fit, region=region, D=D, **kwargs)
