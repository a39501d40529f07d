"""The D-CPT law (Que et al., arXiv 2406.01375): loss of domain-specific continual pre-training vs mixture ratio.

    L(N, D, r) = E + A/N^alpha + B*r^eta/D^beta + C/(r + eps)^gamma                      (D-CPT)
    L(N, D, r, K) = ... + F/K^mu,   K = w1/k1 + w2*k2                                     (cross-domain)

Fitted separately for the domain loss against the domain-corpus ratio (``form="domain"``) and for the general
loss against the general-corpus ratio (``form="general"``). Choices made here, where the paper's details are not
in docs/architecture.md:

- ``ratio`` says what the ``r`` column holds; by default the *domain* ratio (what a data plan records), and
  ``form="general"`` then uses ``1 - r``; pass ``ratio="general"`` if the column already is the general ratio.
- ``eps`` is a fixed constant (default 0.01), not a fitted parameter; ``r`` must lie in [0, 1]. At ``r = 0``
  the ``B*r^eta`` term is 0 (``eta >= 0``).
- ``model_size=False`` drops ``A/N^alpha`` (one model size: that term is not identifiable from ``E``).
- Cross-domain: ``k1``, ``k2`` are per-domain features (columns); ``w1 = w``, ``w2 = 1 - w`` with ``w`` in
  [0, 1], because ``(w1, w2, F)`` are otherwise determined only up to a common scale.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from pplaw.exceptions import InvalidInputError
from pplaw.laws.engine import Law, LSELaw, Param, lse
from pplaw.laws.registry import register


@register
class DCPT(LSELaw):
    """D-CPT law; see the module docstring for the options and the choices made."""

    name = "dcpt"

    def __init__(self, form: str = "domain", *, model_size: bool = True, cross_domain: bool = False,
                 eps: float = 0.01, ratio: str = "domain", grid: Mapping[str, Any] | None = None,
                 bounds: Mapping[str, Any] | None = None, fixed: Mapping[str, float] | None = None):
        if form not in ("domain", "general"):
            raise InvalidInputError(f"form must be 'domain' or 'general', got {form!r}")
        if ratio not in ("domain", "general"):
            raise InvalidInputError(f"ratio must be 'domain' or 'general' (what the r column holds), got {ratio!r}")
        if not (np.isfinite(eps) and eps > 0):
            raise InvalidInputError(f"eps must be > 0, got {eps!r}")
        self.form, self.model_size, self.cross_domain = form, bool(model_size), bool(cross_domain)
        self.eps, self.ratio = float(eps), ratio
        self.variables = (("N",) if self.model_size else ()) + ("D", "r") + (("k1", "k2") if cross_domain else ())
        self.positive = tuple(v for v in self.variables if v != "r")
        super().__init__(grid=grid, bounds=bounds, fixed=fixed)

    @property
    def formula(self) -> str:  # type: ignore[override]
        f = "L = E" + (" + A/N^alpha" if self.model_size else "") + " + B*r^eta/D^beta + C/(r+eps)^gamma"
        return f + (" + F/K^mu, K = w/k1 + (1-w)*k2" if self.cross_domain else "")

    def options(self) -> dict[str, Any]:
        return {"form": self.form, "model_size": self.model_size, "cross_domain": self.cross_domain,
                "eps": self.eps, "ratio": self.ratio}

    def declare(self) -> tuple[Param, ...]:
        ps = [Param("E", (-20.0, 5.0), (-1.0, 0.0, 1.0), log=True)]
        if self.model_size:
            ps += [Param("A", (-10.0, 100.0), (0.0, 5.0, 15.0), log=True), Param("alpha", (0.0, 5.0), (0.1, 0.5, 1.0))]
        ps += [Param("B", (-10.0, 100.0), (0.0, 5.0, 15.0), log=True), Param("eta", (0.0, 5.0), (0.0, 0.5, 1.0)),
               Param("beta", (0.0, 5.0), (0.1, 0.5, 1.0)), Param("C", (-20.0, 20.0), (-4.0, -2.0, 0.0), log=True),
               Param("gamma", (0.0, 5.0), (0.1, 0.5, 1.0))]
        if self.cross_domain:
            ps += [Param("F", (-20.0, 20.0), (-2.0, 0.0), log=True), Param("mu", (0.0, 5.0), (0.5, 1.5)),
                   Param("w", (0.0, 1.0), (0.25, 0.75), doc="w1 = w, w2 = 1 - w")]
        return tuple(ps)

    def data_grid(self, data, z) -> dict[str, tuple[float, ...]]:
        return {"E": tuple(np.log(float(np.min(z)) * np.array([0.3, 0.6, 0.9])))} if np.min(z) > 0 else {}

    def check_inputs(self, X, columns) -> None:
        r = X["r"]
        if np.any((r < 0) | (r > 1)):
            raise InvalidInputError(f"column {columns['r']!r} (variable 'r', a mixture ratio) must lie in [0, 1]; "
                                    f"found values in [{r.min():.4g}, {r.max():.4g}]")

    def ratio_used(self, r: np.ndarray) -> np.ndarray:
        return 1.0 - r if self.form != self.ratio else r

    def terms(self, X):
        r = self.ratio_used(X["r"])
        n, names = r.size, self.param_names
        col = {k: j for j, k in enumerate(names)}

        def feats(**kw) -> np.ndarray:
            out = np.zeros((n, len(names)))
            for k, v in kw.items():
                out[:, col[k]] = v
            return out

        lD = np.log(X["D"])
        with np.errstate(divide="ignore"):
            lr = np.log(r)
        zero = r <= 0  # B*r^eta vanishes at r = 0: switch the term off for those rows
        out = [(feats(E=1.0), None)]
        if self.model_size:
            out.append((feats(A=1.0, alpha=-np.log(X["N"])), None))
        out.append((feats(B=1.0, eta=np.where(zero, 0.0, lr), beta=-lD), np.where(zero, -np.inf, 0.0)))
        out.append((feats(C=1.0, gamma=-np.log(r + self.eps)), None))
        return out

    def design_variables(self) -> tuple[str, ...]:
        """``D`` (``N``) must vary only while ``beta`` (``alpha``) is fitted: with it fixed, one ``D`` (one ``N``)
        is a valid design (D-CPT usage 1 fits one (N, D) at several ratios)."""
        need = {"N": "alpha", "D": "beta"}
        return tuple(v for v in self.variables if v not in need or need[v] not in self._fixed)

    def design(self, X):
        phi, c = super().design(X)
        if not self.cross_domain:
            return phi, c
        return phi, c, X["k1"], X["k2"]

    def log_forward(self, theta, design):
        if not self.cross_domain:
            return super().log_forward(theta, design)
        phi, c, k1, k2 = design
        t = np.einsum("tnp,kp->ktn", phi, theta) + c[None]  # (K, T, n)
        f, mu, w = theta[:, -3, None], theta[:, -2, None], theta[:, -1, None]  # (K, 1)
        cross = f - mu * np.log(w / k1[None] + (1 - w) * k2[None])  # (K, n)
        return lse(np.concatenate([t, cross[:, None]], axis=1), axis=1)

    def jacobian(self, theta, design, space):
        if self.cross_domain:  # the K term is not linear in w: exact complex-step gradient
            return Law.jacobian(self, theta, design, space)
        return super().jacobian(theta, design, space)
