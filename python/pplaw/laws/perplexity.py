"""The perplexity-aware data scaling law (Liu et al., arXiv 2512.21515), model size fixed:

    L(mu, sigma, D) = E + Dc / ( mu^(a0 + a1*sigma) * sigma^(b0 + b1*mu) * D^aD )

``mu``/``sigma`` are the mean and spread of the chunk perplexities of the CPT subset, ``D`` its size in tokens.
The paper's text is not available here, so two choices are options (:func:`compare_variants` fits all of them
and says which fits better): ``sigma="std"`` (plug in the standard deviation) or ``"var"`` (plug in the
variance ``sigma^2``; the input column is always the standard deviation), and ``space="ppl"`` or ``"log_ppl"``
(whether the ``mu``/``sigma`` columns are statistics of PPL or of log-PPL; a label that must match the columns
you pass, since converting between the two needs the chunk-level data).

Fitted as ``log L = LSE(e, dc - (a0 + a1 s) log mu - (b0 + b1 mu) log s - aD log D)`` (analytic gradient),
from starts that find the global basin on steep bowls too: a variable projection over ``E`` (given ``E``,
``log(L - E)`` is linear in the other parameters: one weighted least-squares solve per ``E``) plus a scale-aware
grid, with the bounds of ``a1``/``b1`` scaled to the data's ranges (:meth:`PerplexityLaw.scaled_bounds`).
Distinct local optima with a similar objective but a different optimum give a ``MULTIPLE BASINS`` warning.
Because ``D`` enters as a separate factor, the optimum ``(mu*, sigma*)`` does not depend on ``D``:
:meth:`PerplexityLaw.optimum` maximises ``g = (a0 + a1 s) log mu + (b0 + b1 mu) log s`` over the region the
corpus can realise, with a bootstrap CI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws.engine import LSELaw, Param
from pplaw.laws.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.result import Fit


@register
class PerplexityLaw(LSELaw):
    """``L = E + Dc / (mu^(a0 + a1*s) * s^(b0 + b1*mu) * D^aD)`` with ``s = sigma`` or ``sigma^2``."""

    name = "perplexity"
    formula = "L = E + Dc / (mu^(a0 + a1*s) * s^(b0 + b1*mu) * D^aD)"
    variables = ("mu", "sigma", "D")
    positive = ("mu", "sigma", "D")

    def __init__(self, sigma: str = "std", space: str = "ppl", *, grid: Mapping[str, Any] | None = None,
                 bounds: Mapping[str, Any] | None = None, fixed: Mapping[str, float] | None = None):
        if sigma not in ("std", "var"):
            raise InvalidInputError(f"sigma must be 'std' or 'var', got {sigma!r}")
        if space not in ("ppl", "log_ppl"):
            raise InvalidInputError(f"space must be 'ppl' or 'log_ppl', got {space!r}")
        self.sigma_kind, self.ppl_space = sigma, space
        super().__init__(grid=grid, bounds=bounds, fixed=fixed)

    def options(self) -> dict[str, Any]:
        return {"sigma": self.sigma_kind, "space": self.ppl_space}

    def describe(self) -> str:
        s = "s = sigma (std)" if self.sigma_kind == "std" else "s = sigma^2 (variance)"
        return f"PerplexityLaw: {self.formula}   [{s}; mu, sigma in {self.ppl_space} space]" + self.fixed_note()

    def declare(self) -> tuple[Param, ...]:
        return (
            Param("E", (-20.0, 5.0), (), log=True, doc="irreducible loss"),
            Param("Dc", (-100.0, 200.0), (), log=True, doc="scale of the reducible term"),
            Param("a0", (-20.0, 20.0), (-1.0, 0.0, 1.0), doc="mu exponent"),
            Param("a1", (-5.0, 5.0), (), doc="mu exponent's dependence on sigma"),
            Param("b0", (-20.0, 20.0), (-1.0, 0.0, 1.0), doc="sigma exponent"),
            Param("b1", (-5.0, 5.0), (), doc="sigma exponent's dependence on mu"),
            Param("aD", (0.0, 3.0), (0.1, 0.3, 0.6), doc="data exponent"),
        )

    def s_of(self, sigma: np.ndarray) -> np.ndarray:
        return sigma if self.sigma_kind == "std" else sigma * sigma

    def terms(self, X):
        mu, s, lD = X["mu"], self.s_of(X["sigma"]), np.log(X["D"])
        lm, ls = np.log(mu), np.log(s)
        z, o = np.zeros(mu.size), np.ones(mu.size)
        return [
            (np.column_stack([o, z, z, z, z, z, z]), None),  # e
            (np.column_stack([z, o, -lm, -s * lm, -ls, -mu * ls, -lD]), None),  # dc - g(mu, s) - aD log D
        ]

    # ------------------------------------------------------------------ data-aware bounds and starts
    def scaled_bounds(self, data: Data) -> dict[str, tuple[float, float]]:
        """Bounds that depend on the data's ranges: ``a1`` multiplies ``s`` and ``b1`` multiplies ``mu`` in an
        exponent whose other part (``a0``, ``b0``) is bounded by +-20, so their bounds are +-40 / max(s) and
        +-40 / max(mu) (never narrower than the fixed +-5). A steep bowl in log-PPL statistics (s ~ 1) then has
        room for |a1| ~ 30; PPL-space statistics (s ~ 10) keep +-5."""
        s, mu = self.s_of(data.X["sigma"]), data.X["mu"]
        return {"a1": _sym(max(5.0, 40.0 / float(np.max(s)))), "b1": _sym(max(5.0, 40.0 / float(np.max(mu))))}

    def resolve(self, data: Data) -> PerplexityLaw:
        """The law with data-scaled bounds (:meth:`scaled_bounds`) for parameters the user did not bound."""
        auto = {k: v for k, v in self.scaled_bounds(data).items() if k not in self._bounds and k not in self._fixed}
        if not auto:
            return self
        cfg = self.config()
        cfg["bounds"] = {**cfg.get("bounds", {}), **{k: list(v) for k, v in auto.items()}}
        return type(self)(**cfg)

    def grid_defaults(self, data: Data) -> dict[str, tuple[float, ...]]:
        """Data-scaled start values of the Cartesian grid (explicit ``grid=`` values win)."""
        mu, s, y = data.X["mu"], self.s_of(data.X["sigma"]), self.target_to_model(data.y, data.X)
        ymin = float(np.min(y)) if np.min(y) > 0 else 1.0
        return {"E": tuple(np.log(ymin * np.array([0.3, 0.6, 0.9]))),
                "a1": tuple(np.array([-1.0, 0.0, 1.0]) / np.median(s)),
                "b1": tuple(np.array([-1.0, 0.0, 1.0]) / np.median(mu))}

    def starts(self, data: Data, space: str) -> np.ndarray:
        """Start points: the profile starts (:meth:`profile_starts`) and a scale-aware Cartesian grid over every
        parameter but ``Dc`` (which is profiled: for each start the log-mean matching value). With explicit
        ``grid=`` values, only the grid."""
        grid = self.grid_starts(data)
        return grid if self._grid else np.vstack([self.profile_starts(data, space), grid])

    def _reducible_features(self, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(n, P)`` features of the reducible term: ``log(L - E) = features @ theta`` (E's column is 0)."""
        return self.terms(X)[1][0]

    def grid_starts(self, data: Data) -> np.ndarray:
        names = self.param_names
        auto = self.grid_defaults(data)
        grids = [self._grid.get(k, auto.get(k, p.grid)) if k != "Dc" else (0.0,) for k, p in zip(names, self.params)]
        if "Dc" in self._grid:
            grids[names.index("Dc")] = self._grid["Dc"]
        combos = np.array(list(itertools.product(*grids)), float)  # (S, P)
        if "Dc" not in self._grid:
            y = self.target_to_model(data.y, data.X)
            ymin = float(np.min(y)) if np.min(y) > 0 else 1.0
            j_e, j_dc = names.index("E"), names.index("Dc")
            gap = np.log(np.maximum(y[None] - np.exp(combos[:, j_e])[:, None], 1e-3 * ymin))  # (S, n)
            lin = combos @ self._reducible_features(data.X).T  # (S, n), Dc = 0
            combos[:, j_dc] = np.mean(gap - lin, axis=1)
        return combos

    def profile_starts(self, data: Data, space: str, n_e: int = 24) -> np.ndarray:
        """Variable projection over ``E``: given ``E``, ``log(L - E) = log Dc - g(mu, s) - aD log D`` is linear in
        every other parameter, so a weighted least-squares solve gives the best exponents for that ``E`` with no
        local minima (residuals weighted by ``(L - E)/L`` are ``log L`` residuals to first order; by ``L - E``,
        linear-space residuals). ``n_e`` values of ``E`` from 0 up to 0.99 of the smallest loss."""
        y = self.target_to_model(data.y, data.X)
        if not np.all(np.isfinite(y)) or np.min(y) <= 0:
            return np.empty((0, len(self.params)))
        names = self.param_names
        j_e = names.index("E")
        phi = np.delete(self._reducible_features(data.X), j_e, axis=1)  # (n, P-1)
        lo_e = self.params[j_e].bounds[0]
        fracs = np.concatenate([[0.0], np.linspace(0.05, 0.95, n_e - 2), [0.99]])
        out = []
        for q in fracs:
            e = q * float(np.min(y))
            gap = y - e
            sw = gap / y if space == "log" else gap  # residual scale: d log L = (L - E)/L d log(L - E)
            beta, *_ = np.linalg.lstsq(phi * sw[:, None], np.log(gap) * sw, rcond=None)
            if np.all(np.isfinite(beta)):
                out.append(np.insert(beta, j_e, np.log(e) if e > 0 else lo_e))
        return np.array(out).reshape(-1, len(names))

    # ------------------------------------------------------------------ optimum
    def g(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """``log`` of the denominator's (mu, sigma) factor; the loss is minimal where ``g`` is maximal.
        ``p`` values may be arrays ``(B,)``: broadcast as ``(B, 1)`` against points ``(M,)``."""
        s = self.s_of(sigma)
        a0, a1, b0, b1 = (np.asarray(p[k], float)[..., None] for k in ("a0", "a1", "b0", "b1"))
        return (a0 + a1 * s) * np.log(mu) + (b0 + b1 * mu) * np.log(s)

    def g_at(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray, D: float | None) -> np.ndarray:
        """What the optimum maximises at budget ``D``: ``g`` (the paper's law: the same for every ``D``)."""
        return self.g(p, mu, sigma)

    basin_what = "optimum (mu*, sigma*)"

    def basin_key_names(self) -> tuple[str, ...]:
        return ("mu*", "sigma*")

    def basin_key(self, theta: np.ndarray, data: Data) -> tuple[np.ndarray, np.ndarray]:
        """Local optima are the same answer when their optimum ``(mu*, sigma*)`` over the fitted points' hull
        agrees (to a few % of the hull's extent); parameters may differ along directions that do not move it."""
        try:
            reg = Region.make(None, data)
        except InvalidInputError:
            return super().basin_key(theta, data)
        pub = self.public(np.atleast_2d(theta))
        D = float(np.max(data.X["D"]))
        keys = _search(lambda m, s: self.g_at(pub, m, s, D), reg, 61)
        return keys, np.array([reg.bbox[1] - reg.bbox[0], reg.bbox[3] - reg.bbox[2]])

    def optimum(self, fit: Fit, *, region: Any = None, D: float | None = None, resolution: int = 201,
                bbox: tuple[float, float, float, float] | None = None) -> Optimum:
        """Best ``(mu, sigma)`` inside ``region``, with a bootstrap percentile CI when the fit has draws.

        ``region``: ``None`` (the convex hull of the fitted points), an ``(m, 2)`` array / DataFrame of
        realisable ``(mu, sigma)`` points (their convex hull; a DataFrame uses columns ``mu``/``sigma`` if present),
        a callable ``f(mu, sigma) -> bool array``, or an object with a ``contains(mu, sigma)`` or
        ``realisable(mu, sigma)`` method (a Landscape-like object). Callables are searched in ``bbox``
        ``(mu_lo, mu_hi, sigma_lo, sigma_hi)``, default: the fitted range widened by 2x on each side.
        ``D``: also report the predicted loss at the optimum for that many tokens (the optimum itself does not
        depend on ``D``).
        """
        check_not_flat(fit)
        reg = Region.make(region, fit.data, bbox)
        params = fit.params
        best = _search(lambda m, s: self.g_at(params, m, s, D), reg, resolution)[0]  # (2,)
        draws = fit.param_draws()
        ci, dr = {}, None
        if not draws.empty:
            dr = _search(lambda m, s: self.g_at({k: draws[k].to_numpy() for k in params}, m, s, D), reg, resolution)
            from pplaw.laws.result import percentile_ci

            lo, hi = percentile_ci(np.column_stack([dr, dr[:, 1] ** 2]), fit.level)
            ci = {"mu": (lo[0], hi[0]), "sigma": (lo[1], hi[1]), "variance": (lo[2], hi[2])}
        loss = loss_ci = None
        if D is not None:
            pred = fit.predict(mu=[best[0]], sigma=[best[1]], D=[float(D)],
                               interval="confidence" if dr is not None else None)
            if dr is not None:
                loss, loss_ci = float(pred["prediction"][0]), (float(pred["lo"][0]), float(pred["hi"][0]))
            else:
                loss = float(pred[0])
        return Optimum(float(best[0]), float(best[1]), {k: (float(a), float(b)) for k, (a, b) in ci.items()},
                       reg.on_boundary(best), reg.label, self.ppl_space, fit.level, dr, D, loss, loss_ci,
                       reg.outline)


def check_not_flat(fit: Fit) -> None:
    """Refuse to locate an optimum when every run has the same target (R^2 undefined): the data say nothing
    about where the loss is lowest, and any optimum (and a tight CI around it) would be an artefact."""
    y = np.asarray(fit.data.y, dtype=float)
    if y.size and float(np.ptp(y)) <= 1e-9 * max(1.0, float(np.max(np.abs(y)))):
        raise FitError(f"every fitted run has the same {fit.target} ({y[0]:.6g}; R^2 is undefined): the data do not "
                       f"locate an optimum. Check that the runs trained (learning rate, steps) and differ in their "
                       f"subsets")


def _sym(v: float) -> tuple[float, float]:
    return (-v, v)


@dataclass
class Optimum:
    """The loss-minimising ``(mu, sigma)`` inside the realisable region (``sigma`` as a standard deviation;
    ``variance = sigma^2`` is what DOS targets)."""

    mu: float
    sigma: float
    ci: dict[str, tuple[float, float]]
    on_boundary: bool
    region: str
    space: str
    level: float = 0.95
    draws: np.ndarray | None = field(default=None, repr=False)  # (B, 2) bootstrap (mu, sigma)
    D: float | None = None
    loss: float | None = None
    loss_ci: tuple[float, float] | None = None
    outline: np.ndarray | None = field(default=None, repr=False)  # (m, 2) polygon of a hull region

    @property
    def variance(self) -> float:
        return self.sigma**2

    def __str__(self) -> str:
        def fmt(k: str, v: float) -> str:
            c = self.ci.get(k)
            return f"{k}* = {v:.5g}" + (f" [{c[0]:.5g}, {c[1]:.5g}]" if c else "")

        s = (f"optimum in {self.space} space ({self.region}): {fmt('mu', self.mu)}, {fmt('sigma', self.sigma)}, "
             f"{fmt('variance', self.variance)}")
        if self.loss is not None:
            s += f"; predicted loss at D={self.D:.4g}: {self.loss:.5g}"
            s += f" [{self.loss_ci[0]:.5g}, {self.loss_ci[1]:.5g}]" if self.loss_ci else ""
        if self.on_boundary:
            s += ("\n  ! the optimum lies on the edge of the realisable region: the law would prefer (mu, sigma) "
                  "the corpus cannot realise, so this is a constrained optimum")
        return s

    def to_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "sigma": self.sigma, "variance": self.variance,
                "ci": {k: list(v) for k, v in self.ci.items()}, "level": self.level, "on_boundary": self.on_boundary,
                "region": self.region, "space": self.space, "D": self.D, "loss": self.loss,
                "loss_ci": None if self.loss_ci is None else list(self.loss_ci)}


class Region:
    """A realisable set of (mu, sigma) with a membership test and a search box."""

    def __init__(self, contains: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 bbox: tuple[float, float, float, float], label: str, outline: np.ndarray | None = None):
        self.contains, self.bbox, self.label, self.outline = contains, bbox, label, outline

    @classmethod
    def make(cls, region: Any, data: Data, bbox: tuple[float, float, float, float] | None = None) -> Region:
        if region is None:
            return cls.hull(np.column_stack([data.X["mu"], data.X["sigma"]]), "convex hull of the fitted points")
        if isinstance(region, Region):
            return region
        test = None
        for attr in ("contains", "realisable"):
            if callable(getattr(region, attr, None)):
                test = getattr(region, attr)
                break
        if test is None and callable(region) and not isinstance(region, (pd.DataFrame, np.ndarray)):
            test = region
        if test is not None:
            if bbox is None:
                bbox = getattr(region, "bbox", None)
            if bbox is None:
                mu, sg = data.X["mu"], data.X["sigma"]
                bbox = (mu.min() / 2, mu.max() * 2, sg.min() / 2, sg.max() * 2)

            def contains(m, s, _t=test):
                out = np.asarray(_t(m, s), dtype=bool)
                if out.shape != np.shape(m):
                    raise InvalidInputError(f"region callable returned shape {out.shape} for {np.shape(m)} points")
                return out

            return cls(contains, tuple(float(b) for b in bbox), f"region {getattr(test, '__name__', 'callable')}")
        if isinstance(region, pd.DataFrame):
            cols = ["mu", "sigma"] if {"mu", "sigma"} <= set(region.columns) else list(region.columns[:2])
            pts = region[cols].to_numpy(float)
        else:
            pts = np.asarray(region, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise InvalidInputError(f"region points must have shape (m, 2) as (mu, sigma); got {pts.shape}")
        return cls.hull(pts, f"convex hull of {len(pts)} realisable points")

    @classmethod
    def hull(cls, pts: np.ndarray, label: str) -> Region:
        from scipy.spatial import ConvexHull, QhullError

        if not np.all(np.isfinite(pts)) or len(pts) < 3:
            raise InvalidInputError("a region needs at least 3 finite (mu, sigma) points")
        try:
            h = ConvexHull(pts)
        except QhullError as err:
            raise InvalidInputError(f"the (mu, sigma) points span no area (collinear?), so they define no region to "
                                    f"search; pass region= explicitly ({str(err).splitlines()[0]})") from err
        eq = h.equations  # (F, 3): a*mu + b*sigma + c <= 0 inside
        scale = np.abs(pts).max()

        def contains(m, s):
            v = eq[:, 0, None] * np.ravel(m)[None] + eq[:, 1, None] * np.ravel(s)[None] + eq[:, 2, None]
            return np.all(v <= 1e-9 * scale, axis=0).reshape(np.shape(m))

        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return cls(contains, (lo[0], hi[0], lo[1], hi[1]), label, pts[h.vertices])

    def on_boundary(self, point: np.ndarray, frac: float = 0.005) -> bool:
        dm, ds = frac * (self.bbox[1] - self.bbox[0]), frac * (self.bbox[3] - self.bbox[2])
        offs = np.array([(i * dm, j * ds) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j])
        return not bool(np.all(self.contains(point[0] + offs[:, 0], point[1] + offs[:, 1])))


def _search(score: Callable[[np.ndarray, np.ndarray], np.ndarray], reg: Region, resolution: int) -> np.ndarray:
    """Maximise ``score`` over the region: a ``resolution^2`` grid, then 3 zooms of 21x21 around the best.
    ``score(mu (M,), sigma (M,)) -> (B, M)``; returns the argmax ``(B, 2)``."""
    m0, m1, s0, s1 = reg.bbox
    if not (m1 > m0 > 0 and s1 > s0 > 0):
        raise InvalidInputError(f"search box {reg.bbox} must have 0 < low < high for mu and sigma")
    mm, ss = np.meshgrid(np.linspace(m0, m1, resolution), np.linspace(s0, s1, resolution), indexing="ij")
    inside = reg.contains(mm.ravel(), ss.ravel())
    if not inside.any():
        raise FitError("the realisable region contains no point of the search grid; check the region and bbox")
    pm, ps = mm.ravel()[inside], ss.ravel()[inside]
    with np.errstate(all="ignore"):
        val = np.atleast_2d(score(pm, ps))  # (B, M)
    val = np.where(np.isfinite(val), val, -np.inf)
    k = np.argmax(val, axis=1)
    best = np.column_stack([pm[k], ps[k]])  # (B, 2)
    step = np.array([(m1 - m0), (s1 - s0)]) / (resolution - 1)
    u = np.linspace(-1.5, 1.5, 21)
    du = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)  # (441, 2)
    for _ in range(3):
        cand = best[:, None, :] + du[None] * step  # (B, 441, 2)
        cm, cs = cand[..., 0], cand[..., 1]
        ok = reg.contains(cm.ravel(), cs.ravel()).reshape(cm.shape) & (cm > 0) & (cs > 0)
        with np.errstate(all="ignore"):
            v = np.broadcast_to(score(cm, cs), cm.shape)  # params (B, 1) x points (B, 441)
        v = np.where(ok & np.isfinite(v), v, -np.inf)
        j = np.argmax(v, axis=1)
        take = np.isfinite(v[np.arange(len(j)), j])
        best = np.where(take[:, None], cand[np.arange(len(j)), j], best)
        step = step * (3.0 / 20)
    return best


@dataclass
class VariantComparison:
    """The perplexity law fitted under each (sigma, space) choice. ``table`` is sorted best first."""

    table: pd.DataFrame
    fits: dict[str, Fit]

    @property
    def best(self) -> str:
        return str(self.table.index[0])

    def __str__(self) -> str:
        return (f"perplexity-law variants (best first: {self.best}):\n"
                + self.table.to_string(float_format=lambda v: f"{v:.5g}"))


def compare_variants(table: Any, *, target: str, D: str = "D", mu: str | None = None, sigma: str | None = None,
                     mu_log: str | None = None, sigma_log: str | None = None, holdout: Any = None,
                     **fit_kwargs: Any) -> VariantComparison:
    """Fit sigma-as-std vs sigma-as-variance, in PPL space (``mu``/``sigma`` columns) and/or log-PPL space
    (``mu_log``/``sigma_log`` columns), and rank them. All variants have 7 parameters and the same target, so
    they are ranked by the held-out MAPE when ``holdout`` is given (e.g. ``"largest D"`` or ``"loo"``), else
    by the in-sample RMSE; the Huber objective is reported too."""
    spaces = {}
    if mu is not None or sigma is not None:
        spaces["ppl"] = (mu or "mu", sigma or "sigma")
    if mu_log is not None or sigma_log is not None:
        spaces["log_ppl"] = (mu_log or "mu_log", sigma_log or "sigma_log")
    if not spaces:
        spaces["ppl"] = ("mu", "sigma")
    rows, fits = [], {}
    for (space, (mc, sc)), kind in itertools.product(spaces.items(), ("std", "var")):
        key = f"{space}/{kind}"
        f = PerplexityLaw(sigma=kind, space=space).fit(table, target=target, mu=mc, sigma=sc, D=D, **fit_kwargs)
        fits[key] = f
        row = {"variant": key, "space": space, "sigma": kind, **{k: f.metrics[k] for k in
                                                                 ("objective", "r2", "rmse", "mape")},
               "converged": f.solution.success, "n_warnings": len(f.warnings)}
        if holdout is not None:
            v = f.validate(holdout)
            row.update({"holdout_rmse": v.metrics["rmse"], "holdout_mape": v.metrics["mape"]})
        rows.append(row)
    out = pd.DataFrame(rows).set_index("variant")
    out = out.sort_values("holdout_mape" if holdout is not None else "rmse")
    return VariantComparison(out, fits)
