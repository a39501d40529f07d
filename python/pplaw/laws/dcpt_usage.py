"""The three usages of the D-CPT law (Que et al., arXiv 2406.01375, section 5) on fitted :class:`DCPT` laws,
each with a bootstrap CI (every quantity recomputed under every bootstrap draw of the fit):

1. :func:`tradeoff_ratio` -- the trade-off between general and domain ability: the largest *domain* ratio
   whose general loss stays within ``tolerance`` of a base (e.g. 3% above the base model's general loss), at one
   ``(N, D)``; fitted from a general-form law, possibly at that single ``(N, D)`` (fix ``beta``: one ``D`` does
   not identify it; without ``model_size`` there is no ``N`` term).
2. :func:`optimal_ratio_limited_domain` -- the optimal mixture with limited domain data: with ``D_domain``
   domain tokens available, a domain ratio ``r`` trains on ``D = D_domain / r`` tokens; the ``r`` minimising the
   domain loss.
3. :func:`compute_allocation` -- compute-optimal ``(N, D)`` at a fixed ratio ``r`` for budgets ``C = 6 N D``.

Ratios are always *domain* ratios here; a law whose ``r`` column holds the general ratio (``ratio="general"``)
is evaluated at ``1 - r`` for you.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.result import Fit


def _pct(v: np.ndarray, level: float) -> tuple[float, float]:
    q = 100 * (1 - level) / 2
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (float("nan"), float("nan"))
    return float(np.percentile(v, q)), float(np.percentile(v, 100 - q))


@dataclass
class UsageResult:
    """One D-CPT usage: ``values`` (name -> point value), ``ci`` (name -> percentile CI; empty without a
    bootstrap), ``table`` (per budget for usage 3), ``notes`` (assumptions and caveats, e.g. CIs not
    meaningful)."""

    usage: str
    values: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.95
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def __str__(self) -> str:
        parts = []
        for k, v in self.values.items():
            c = self.ci.get(k)
            parts.append(f"{k} = {v:.5g}" + (f" [{c[0]:.5g}, {c[1]:.5g}]" if c else ""))
        s = f"D-CPT {self.usage}: " + ", ".join(parts)
        if self.table is not None:
            s += "\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.5g}")
        return s + "".join(f"\n  ! {n}" for n in self.notes)

    def to_dict(self) -> dict[str, Any]:
        return {"usage": self.usage, "values": self.values, "ci": {k: list(v) for k, v in self.ci.items()},
                "level": self.level, "notes": self.notes,
                "table": None if self.table is None else self.table.to_dict("list")}


def _check(fit: Fit, form: str | None, what: str) -> None:
    from pplaw.laws.dcpt import DCPT

    if not isinstance(fit.law, DCPT):
        raise InvalidInputError(f"{what} needs a fitted DCPT law, got {type(fit.law).__name__}")
    if form is not None and fit.law.form != form:
        raise InvalidInputError(f"{what} needs a DCPT(form={form!r}) fit (the {form} loss), got form="
                                f"{fit.law.form!r}")


def _inputs(fit: Fit, x: np.ndarray, D: Any, N: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Law inputs at domain ratios ``x`` (broadcast with ``D``/``N``)."""
    law = fit.law
    arrays: dict[str, Any] = {"r": x if law.ratio == "domain" else 1.0 - x, "D": D, **extra}
    if "N" in law.variables:
        if N is None:
            raise InvalidInputError("this DCPT law has a model-size term: pass N=")
        arrays["N"] = N
    return arrays


def _notes(fit: Fit) -> list[str]:
    out = []
    if fit.n_boot == 0:
        out.append("no bootstrap draws: fit with bootstrap > 0 for CIs")
    elif not fit.ci_meaningful:
        out.append(f"the fit's CIs are NOT MEANINGFUL ({fit.extras.get('ci_note', '')}), nor are these")
    if fit.law.fixed:
        out.append("fixed (not fitted, no uncertainty in the CIs): "
                   + ", ".join(f"{k}={v:.4g}" for k, v in fit.law.fixed.items()))
    return out


def _largest_within(x: np.ndarray, loss: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Per row: the largest ``x`` with ``loss <= level``, interpolated at the crossing (0 / 1 when none / all)."""
    loss = np.atleast_2d(loss)
    level = np.broadcast_to(np.asarray(level, float).reshape(-1, 1), (loss.shape[0], 1))
    ok = loss <= level
    out = np.zeros(loss.shape[0])
    for i in range(loss.shape[0]):
        idx = np.flatnonzero(ok[i])
        if idx.size == 0:
            out[i] = 0.0
            continue
        j = idx[-1]
        if j == x.size - 1:
            out[i] = x[-1]
            continue
        l0, l1 = loss[i, j] - level[i, 0], loss[i, j + 1] - level[i, 0]  # l0 <= 0 < l1
        out[i] = x[j] + (x[j + 1] - x[j]) * (-l0) / (l1 - l0) if l1 != l0 else x[j]
    return out


def tradeoff_ratio(general_fit: Fit, *, D: float, N: float | None = None, tolerance: float = 0.03,
                   base: float | None = None, domain_fit: Fit | None = None, resolution: int = 4001,
                   **inputs: Any) -> UsageResult:
    """Usage 1: the largest domain ratio whose predicted general loss at ``(N, D)`` stays within
    ``(1 + tolerance) * base``. ``base``: the base model's general loss; default the law's general loss at
    domain ratio 0 (all general data) at the same ``(N, D)``, recomputed per bootstrap draw. With ``domain_fit``
    (a domain-form fit) also the domain loss at that ratio. Returns ``ratio`` (and ``domain_loss``) with CIs."""
    _check(general_fit, "general", "tradeoff_ratio")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise InvalidInputError(f"tolerance must be >= 0 (a relative increase, 0.03 = 3%), got {tolerance!r}")
    x = np.linspace(0.0, 1.0, int(resolution))
    arrays = _inputs(general_fit, x, D, N, inputs)
    at0 = _inputs(general_fit, np.array([0.0]), D, N, inputs)
    loss = general_fit.predict(**arrays)
    b0 = float(general_fit.predict(**at0)[0]) if base is None else float(base)
    level = (1 + tolerance) * b0
    r = float(_largest_within(x, loss[None], np.array([level]))[0])
    values = {"ratio": r, "base_general_loss": b0, "general_loss_limit": level}
    notes = _notes(general_fit)
    notes.append(f"base = {'the law at domain ratio 0 (same N, D)' if base is None else 'given'}: {b0:.5g}; limit "
                 f"(1 + {tolerance:g}) x base = {level:.5g}")
    if r >= 1.0:
        notes.append("every domain ratio keeps the general loss within tolerance: the trade-off does not bind")
    elif r <= 0.0:
        notes.append("no domain ratio keeps the general loss within tolerance (not even 0)")
    ci, draws = {}, {}
    dr = general_fit.predict_draws(**arrays)  # (B, M)
    if len(dr) >= 2:
        lv = ((1 + tolerance) * general_fit.predict_draws(**at0)[:, 0] if base is None
              else np.full(len(dr), level))
        draws["ratio"] = _largest_within(x, dr, lv)
        ci["ratio"] = _pct(draws["ratio"], general_fit.level)
    if domain_fit is not None:
        _check(domain_fit, "domain", "tradeoff_ratio(domain_fit=...)")
        values["domain_loss"] = float(domain_fit.predict(**_inputs(domain_fit, np.array([r]), D, N, inputs))[0])
        dd = domain_fit.predict_draws(**_inputs(domain_fit, np.array([r]), D, N, inputs))
        if len(dd) >= 2:
            draws["domain_loss"] = dd[:, 0]
            ci["domain_loss"] = _pct(dd[:, 0], domain_fit.level)
    return UsageResult("usage 1 (general/domain trade-off)", values, ci, general_fit.level, None, notes, draws)


def optimal_ratio_limited_domain(domain_fit: Fit, *, D_domain: float, N: float | None = None,
                                 r_min: float = 1e-3, resolution: int = 4001, **inputs: Any) -> UsageResult:
    """Usage 2: with ``D_domain`` domain tokens, the domain ratio ``r`` in ``[r_min, 1]`` minimising the domain
    loss when training on ``D = D_domain / r`` tokens. Returns ``ratio``, ``D`` and ``domain_loss`` with CIs."""
    _check(domain_fit, "domain", "optimal_ratio_limited_domain")
    if not (np.isfinite(D_domain) and D_domain > 0):
        raise InvalidInputError(f"D_domain (domain tokens available) must be > 0, got {D_domain!r}")
    if not 0 < r_min < 1:
        raise InvalidInputError(f"r_min must lie in (0, 1), got {r_min!r}")
    x = np.geomspace(r_min, 1.0, int(resolution))
    arrays = _inputs(domain_fit, x, D_domain / x, N, inputs)
    loss = domain_fit.predict(**arrays)
    k = int(np.nanargmin(loss))
    values = {"ratio": float(x[k]), "D": float(D_domain / x[k]), "domain_loss": float(loss[k])}
    notes = _notes(domain_fit)
    if k in (0, x.size - 1):
        notes.append(f"the optimum is at the edge of the ratio range ({x[k]:.4g}): a constrained optimum")
    D_fit = domain_fit.data.X["D"]
    if values["D"] > 1.5 * D_fit.max() or values["D"] < D_fit.min() / 1.5:
        notes.append(f"D = D_domain / r = {values['D']:.4g} lies outside the fitted D [{D_fit.min():.4g}, "
                     f"{D_fit.max():.4g}]: an extrapolation")
    ci, draws = {}, {}
    dr = domain_fit.predict_draws(**arrays)
    if len(dr) >= 2:
        kk = np.nanargmin(np.where(np.isfinite(dr), dr, np.inf), axis=1)
        draws = {"ratio": x[kk], "D": D_domain / x[kk], "domain_loss": dr[np.arange(len(dr)), kk]}
        ci = {k2: _pct(v, domain_fit.level) for k2, v in draws.items()}
    return UsageResult("usage 2 (optimal ratio with limited domain data)", values, ci, domain_fit.level, None,
                       notes, draws)


def compute_allocation(fit: Fit, *, C: Any, r: float) -> UsageResult:
    """Usage 3: at domain ratio ``r``, the compute-optimal ``N_opt``, ``D_opt`` (``C = 6 N D``) and the loss,
    per budget ``C`` (FLOPs), with CIs (``*_lo``/``*_hi`` columns of ``table``). Needs the model-size term.
    Closed form: ``L = E' + A/N^alpha + B'/D^beta`` with ``B' = B r^eta`` (the ratio terms are constants at
    fixed ``r``), so ``N_opt = G (C/6)^(beta/(alpha+beta))``, ``G = (alpha A / (beta B'))^(1/(alpha+beta))``."""
    _check(fit, None, "compute_allocation")
    law = fit.law
    if not law.model_size or law.cross_domain:
        raise InvalidInputError("compute_allocation needs DCPT(model_size=True) without the cross-domain term")
    if not 0 < r <= 1:
        raise InvalidInputError(f"r (the domain ratio) must lie in (0, 1], got {r!r}")
    c = np.atleast_1d(np.asarray(C, float))
    if not np.all(np.isfinite(c) & (c > 0)):
        raise InvalidInputError("C (compute budgets in FLOPs) must be finite and > 0")
    ru = float(law.ratio_used(np.array([r]))[0])

    def alloc(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = np.asarray(p["alpha"])[..., None], np.asarray(p["beta"])[..., None]
        bp = np.asarray(p["B"])[..., None] * (ru ** np.asarray(p["eta"])[..., None] if ru > 0 else 0.0)
        A = np.asarray(p["A"])[..., None]
        with np.errstate(all="ignore"):
            g = (a * A / (b * bp)) ** (1 / (a + b))
            n_opt = g * (c / 6.0) ** (b / (a + b))
            d_opt = (c / 6.0) / n_opt
            const = np.asarray(p["E"])[..., None] + np.asarray(p["C"])[..., None] / (ru + law.eps) ** np.asarray(
                p["gamma"])[..., None]
            loss = const + A / n_opt**a + bp / d_opt**b
        return n_opt, d_opt, loss

    n_opt, d_opt, loss = alloc({k: np.asarray(v) for k, v in fit.params.items()})
    if not np.all(np.isfinite(n_opt)):
        raise FitError("the compute-optimal allocation is undefined for these parameters (alpha, beta or "
                       "B*r^eta is 0)")
    tab = pd.DataFrame({"C": c, "N_opt": n_opt.ravel(), "D_opt": d_opt.ravel(), "loss": loss.ravel()})
    pd_ = fit.param_draws()
    if len(pd_) >= 2:
        nd, dd, ld = alloc({k: pd_[k].to_numpy() for k in fit.params})
        for name, arr in (("N_opt", nd), ("D_opt", dd), ("loss", ld)):
            q = 100 * (1 - fit.level) / 2
            with np.errstate(all="ignore"):
                tab[f"{name}_lo"] = np.nanpercentile(arr, q, axis=0)
                tab[f"{name}_hi"] = np.nanpercentile(arr, 100 - q, axis=0)
    values = {"r": float(r), "N_exponent": float(fit.params["beta"] / (fit.params["alpha"] + fit.params["beta"]))}
    return UsageResult("usage 3 (compute allocation at fixed r)", values, {}, fit.level, tab, _notes(fit))
