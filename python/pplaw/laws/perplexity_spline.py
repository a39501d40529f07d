"""pplaw's local two-stage law (NOT the paper's law): each regime's own power law in D, smoothed over the
landscape by a thin-plate spline.

    log (L - E) = f(mu, s) - aD(mu, s) * (log D - log D0)

``f`` (the log reducible loss at the sweep's central size ``D0``) and ``aD`` (the data exponent) are
thin-plate splines over ``(mu, s)``, one knot per sweep regime. Their values at the knots are the law's
parameters: ``f_k`` and ``aD_k`` for regime ``k``. They are fitted by penalised least squares in ``log (L - E)``;
the penalty is each spline's bending energy, its weight chosen by leave-one-regime-out cross-validation (each
regime's runs predicted from the others' spline). With two sizes per regime and no smoothing this is exactly
"fit each regime's power law, then interpolate its two numbers over the landscape"; smoothing trades that for
the neighbours' evidence.

Why: CPT loss as a function of the subset's perplexity statistics is not a global low-order form. In the sweep a
flat plateau of text the model knows, a narrow learnable valley and a rising end of noise sit side by side,
each with its own slope in D; the paper's law and its global extensions misfit the valley by 15-25% in sample,
and extrapolate worse. A local smoother follows whatever shape the sweep measured and says nothing it did not
measure: outside the fitted regimes it is an extrapolation (the loop searches only inside their hull).

``E`` is a floor no subset goes below (``floor`` times the smallest fitted loss; default 0, a pure power law in
each regime). A pure power law over-states the gain of much larger budgets when the loss decelerates towards
its floor; the loop scores candidate floors by held-out error at a larger size (``fit.laws`` entries such as
``perplexity_spline:floor=0.3``). ``e`` gives the floor in loss units instead (``anchored``): the floor a
held-out score validated is a loss, the model's and validation text's own (Chinchilla's ``E + A / N^alpha`` at a
fixed model), not a fraction of whichever runs are fitted; refitted with the larger held-out runs in, whose
losses are lower, ``floor x the smallest loss`` would fall (by half on the 10x recipe's seed 70) and the law
would over-state the gain of the last tokens by as much.

``pool`` (``k``, default 0: off) is an effective-data term for subsets drawn from a finite pool (pplaw's, after
the data-constrained law of Muennighoff et al., 2023). A run samples ``D`` tokens from its regime's pool of ``P``
tokens (the landscape band it was drawn from). Real corpora repeat what they know (entities and facts recur with
Zipf-like frequencies), so the value of the next token drawn falls as the pool's content is used up; if it
decays as ``exp(-k x / P)`` after ``x`` tokens, the run has seen ``D_eff = P / k * (1 - exp(-k D / P))``
tokens' worth, and ``log D_eff`` replaces ``log D``. For ``D << P`` nothing changes; as ``D`` nears ``P`` the
gain of more tokens shrinks, which a power law in ``D`` fitted where ``D / P`` was small over-states. The law
then has a fourth variable ``P`` (a column of pool tokens per run); candidate rates are scored by held-out
error like the floors (``perplexity_spline:pool=2``). Past ``D = P`` that decay would make a second pass over
the pool worth almost nothing, which repeated held-out runs contradict (a 2-pass run measured within 2-5% of the
plain power law, 37-171% below the pool terms' predictions: benchmarks/PREDICT_RESULTS.md); ``repeat`` (``R*``)
gives the passes beyond the first the data-constrained law's own form instead (Muennighoff et al., 2023, where
``R*`` ~ 15 for large models), ``perplexity_spline:repeat=4``. The spline's coordinates are ``(mu, s)`` in nats for ``space="log_ppl"`` and
``(log mu, log s)`` for ``space="ppl"``, so one distance serves both axes (``sigma_scale`` weights the spread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws.engine import Law, Param
from pplaw.laws.registry import register
from pplaw.laws.perplexity import PerplexityLaw

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.result import Fit

NODE_TOL = 0.1  # runs whose scaled (mu, s) lie within this distance (nats) are one regime (knot)
LAMBDAS = tuple(10.0 ** np.arange(-6.0, 3.01, 0.5))  # smoothing weights tried by cross-validation
MIN_FLOOR_SIZES = 4  # sizes a regime needs to over-determine E + B D^-a (three numbers): fit_floor
FLOOR_GRID = tuple(np.round(np.arange(0.0, 0.951, 0.025), 3))  # floors profiled (x the smallest loss): fit_floor


def _tps(r: np.ndarray) -> np.ndarray:
    """The thin-plate kernel ``r^2 log r`` (0 at r = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, r * r * np.log(np.where(r > 0, r, 1.0)), 0.0)


class _Spline:
    """The thin-plate interpolant through values at ``K`` knots, as a linear map: values ``(K,)`` -> any point.

    ``weights(X)`` ``(n, K)`` evaluates the interpolant at ``X`` ``(n, 2)``; ``energy`` ``(K, K)`` is the
    bending energy of the interpolant through given knot values (the smoothing penalty)."""

    def __init__(self, knots: np.ndarray):
        self.knots = np.asarray(knots, float)  # (K, 2)
        K = len(self.knots)
        poly = np.column_stack([np.ones(K), self.knots])  # (K, 3): the affine part the kernel does not bend
        phi = _tps(np.linalg.norm(self.knots[:, None] - self.knots[None], axis=2))  # (K, K)
        A = np.block([[phi, poly], [poly.T, np.zeros((3, 3))]])
        # lstsq-based inverse: collinear knots (a 1-D sweep) leave the affine part rank-deficient
        self.inv = np.linalg.pinv(A)[:, :K]  # (K + 3, K): knot values -> kernel weights and affine part
        om = self.inv[:K]
        e = om.T @ phi @ om
        self.energy = (e + e.T) / 2

    def weights(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, float))
        r = np.linalg.norm(X[:, None] - self.knots[None], axis=2)  # (n, K)
        return np.hstack([_tps(r), np.ones((len(X), 1)), X]) @ self.inv  # (n, K)


def knots_of(points: np.ndarray, tol: float = NODE_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Cluster scaled ``(mu, s)`` points into regimes: ``(knots (K, 2), label of each point (n,))``."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(points) == 1:
        return points.copy(), np.zeros(1, int)
    lab = fcluster(linkage(points, "complete"), tol, "distance") - 1
    knots = np.array([points[lab == k].mean(axis=0) for k in range(lab.max() + 1)])
    return knots, lab


@register
class PerplexityLawSpline(PerplexityLaw):
    """``log(L - E) = f(mu, s) - aD(mu, s) (log D - log D0)``, thin-plate ``f``, ``aD`` (pplaw extension)."""

    name = "perplexity_spline"
    formula = "log(L - E) = f(mu, s) - aD(mu, s) * (log D - log D0);  f, aD thin-plate splines over the regimes"
    nonparametric = True  # parameters are knot values: identified by the smoothing penalty, not one by one
    default_loss = "mse"

    def __init__(self, sigma: str = "std", space: str = "log_ppl", *, floor: float = 0.0, sigma_scale: float = 1.0,
                 pool: float = 0.0, repeat: float = 0.0, fit_floor: bool = False, smoothing: float | None = None, knots: Any = None, d0: float | None = None,
                 e: float | None = None, grid: Mapping[str, Any] | None = None,
                 bounds: Mapping[str, Any] | None = None, fixed: Mapping[str, float] | None = None):
        if not (np.isfinite(floor) and 0.0 <= float(floor) < 1.0):
            raise InvalidInputError(f"floor must be in [0, 1) (a fraction of the smallest fitted loss), got {floor!r}")
        if not (isinstance(pool, (int, float)) and np.isfinite(pool) and 0.0 <= float(pool) <= 50.0):
            raise InvalidInputError(f"pool must be a decay rate in [0, 50] (0: no effective-data term), got {pool!r}")
        if not (isinstance(repeat, (int, float)) and np.isfinite(repeat) and 0.0 <= float(repeat) <= 1000.0):
            raise InvalidInputError(f"repeat must be a decay constant R* in [0, 1000] (0: no repetition term), "
                                    f"got {repeat!r}")
        if not isinstance(fit_floor, bool):
            raise InvalidInputError(f"fit_floor must be true or false, got {fit_floor!r}")
        self.pool, self.repeat, self.fit_floor = float(pool), float(repeat), fit_floor
        if self.pool > 0 or self.repeat > 0:  # the pool each run was drawn from, in tokens: a fourth input
            self.variables = ("mu", "sigma", "D", "P")
            self.positive = ("mu", "sigma", "D", "P")
            self.optional = ("P",)  # a prediction without P takes the subset as its whole pool (P = D)
        if not (np.isfinite(sigma_scale) and float(sigma_scale) > 0):
            raise InvalidInputError(f"sigma_scale must be a positive number, got {sigma_scale!r}")
        if smoothing is not None and not (np.isfinite(smoothing) and float(smoothing) >= 0):
            raise InvalidInputError(f"smoothing must be >= 0 or None (chosen by cross-validation), got {smoothing!r}")
        self.floor, self.sigma_scale = float(floor), float(sigma_scale)
        self.smoothing = None if smoothing is None else float(smoothing)
        self.knots = None if knots is None else np.asarray(knots, float).reshape(-1, 2)
        if e is not None and not (isinstance(e, (int, float)) and np.isfinite(e) and float(e) >= 0):
            raise InvalidInputError(f"e must be a floor in loss units (a finite number >= 0) or None (floor x the "
                                    f"smallest fitted loss), got {e!r}")
        self.d0, self.e = (None if d0 is None else float(d0)), (None if e is None else float(e))
        self._spline = None if self.knots is None else _Spline(self.knots)
        super().__init__(sigma=sigma, space=space, grid=grid, bounds=bounds, fixed=fixed)

    def options(self) -> dict[str, Any]:
        out = {**super().options(), "floor": self.floor, "sigma_scale": self.sigma_scale}
        if self.pool > 0:
            out["pool"] = self.pool
        if self.repeat > 0:
            out["repeat"] = self.repeat
        if self.fit_floor:
            out["fit_floor"] = True
        if self.e is not None:
            out["e"] = self.e
        if self.knots is not None:
            out.update(knots=self.knots.tolist(), d0=self.d0, e=self.e, smoothing=self.smoothing)
        return out

    def anchored(self, y: Any) -> PerplexityLawSpline:
        """This law with its floor fixed in loss units at ``floor x min(y)``, ``y`` the losses it was validated
        on (the held-out score's fitting runs), so that a refit on more runs keeps the floor that was scored."""
        if self.e is not None or self.floor <= 0:
            return self
        y = np.asarray(y, float)
        if y.size == 0 or not np.all(np.isfinite(y)):
            raise InvalidInputError("anchored needs the finite losses the floor was validated on")
        return type(self)(**{**self.config(), "e": self.floor * float(np.min(y))})

    def describe(self) -> str:
        k = "" if self.knots is None else f", {len(self.knots)} regimes"
        form = self.formula if self.pool <= 0 else self.formula.replace(
            "(log D - log D0)", "(log D_eff - log D0), D_eff = P/k (1 - exp(-k D/P))")
        if self.repeat > 0:
            form += f"; past D = P (repeated passes) D_eff = U (1 + R* (1 - exp(-(D/P - 1)/R*))), R* = {self.repeat:g}"
        floor = f"floor {self.floor:g} x min loss" if self.e is None else f"floor E = {self.e:.4g}" + (
            f" ({self.floor:g} x the smallest loss it was anchored on)" if self.floor > 0 else "")
        if self.fit_floor:
            floor += (f" (profiled where a regime holds >= {MIN_FLOOR_SIZES} sizes)" if self.knots is None else
                      f" (profiled, or the given floor where no regime holds >= {MIN_FLOOR_SIZES} sizes: see the "
                      "fit's extras)")
        return (f"PerplexityLawSpline (pplaw's local two-stage extension, not the paper's law): {form}   "
                f"[{floor}, sigma scale {self.sigma_scale:g}"
                f"{f', D_eff with pool decay {self.pool:g}' if self.pool > 0 else ''}{k}; mu, sigma in "
                f"{self.ppl_space} space]")

    def declare(self) -> tuple[Param, ...]:
        if self.knots is None:
            return ()
        f = [Param(f"f{k}", (-1e3, 1e3), (), doc=f"log reducible loss at D0, regime {k} (mu={m:.3g}, s={s:.3g})")
             for k, (m, s) in enumerate(self._unscaled())]
        a = [Param(f"aD{k}", (-1e3, 1e3), (), doc=f"data exponent, regime {k}") for k in range(len(self.knots))]
        return (*f, *a)

    def _unscaled(self) -> np.ndarray:
        """The knots as (mu, s) in the law's space."""
        k = self.knots * np.array([1.0, 1.0 / self.sigma_scale])
        return np.exp(k) if self.ppl_space == "ppl" else k

    def _scaled(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The spline's coordinates: (mu, s) in log-PPL space (nats); their logarithms in PPL space, where a
        mean runs over orders of magnitude (so one distance still serves the whole landscape)."""
        m, s = np.asarray(mu, float).ravel(), self.s_of(np.asarray(sigma, float)).ravel()
        if self.ppl_space == "ppl":
            m, s = np.log(m), np.log(s)
        return np.column_stack([m, s * self.sigma_scale])

    # ------------------------------------------------------------------ model
    def log_d(self, D: Any, P: Any = None) -> np.ndarray:
        """``log D`` (``pool`` 0) or ``log D_eff``: ``D_eff = P / k (1 - exp(-k D / P))`` for a subset of ``D``
        tokens drawn from a pool of ``P`` (``P`` None: the subset is its whole pool, ``P = D``). With ``repeat``
        (R* > 0) the pool term covers the first pass only (``min(D, P)``: its effective data ``U``), and ``D > P``
        tokens repeat the pool ``r = D/P - 1`` more times: ``D_eff = U (1 + R* (1 - exp(-r / R*)))``, the
        data-constrained law's form (a repeated pass worth ``exp(-r/R*)`` of a fresh one; ``D <= P``: unchanged)."""
        D = np.asarray(D, float)
        if self.pool <= 0 and self.repeat <= 0:
            return np.log(D)
        P = D if P is None else np.broadcast_to(np.asarray(P, float), D.shape)
        if np.any(~np.isfinite(P) | (P <= 0)):
            raise InvalidInputError("P (the pool each subset was drawn from, in tokens) must be finite and > 0")
        once = np.minimum(D, P) if self.repeat > 0 else D  # the first pass (all of D without a repetition term)
        k = self.pool
        out = np.log(once) if k <= 0 else np.log(P / k) + np.log(-np.expm1(-k * once / P))
        if self.repeat > 0:  # passes beyond the first: each worth exp(-r / R*) of the first (Muennighoff et al.)
            r = np.maximum(D / P - 1.0, 0.0)
            out = out + np.log1p(self.repeat * -np.expm1(-r / self.repeat))
        return out

    def _need_fit(self) -> None:
        if self._spline is None:
            raise FitError(f"{type(self).__name__} has no regimes yet: fit it first (its knots come from the data)")

    def design(self, X: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(G (n, 2K), e)``: ``log(L - E) = G @ theta``, ``G = [W, -t W]`` with ``W`` the spline weights of each
        point and ``t = log D - log D0``."""
        self._need_fit()
        W = self._spline.weights(self._scaled(X["mu"], X["sigma"]))  # (n, K)
        t = self.log_d(X["D"], X.get("P")) - self.d0  # (n,)
        return np.hstack([W, -t[:, None] * W]), float(self.e)

    def forward(self, theta: np.ndarray, design: Any) -> np.ndarray:
        G, e = design
        return e + np.exp(np.atleast_2d(theta) @ G.T)  # (B, n)

    def log_forward(self, theta: np.ndarray, design: Any) -> np.ndarray:
        return np.log(self.forward(theta, design))

    def jacobian(self, theta: np.ndarray, design: Any, space: str) -> tuple[np.ndarray, np.ndarray]:
        G, e = design
        r = np.exp(G @ theta)  # (n,) the reducible loss
        if space == "log":
            return np.log(e + r), (r / (e + r))[:, None] * G
        return e + r, r[:, None] * G

    # ------------------------------------------------------------------ fitting
    def resolve(self, data: Data) -> PerplexityLawSpline:
        """The law with knots (one per regime of the data), ``D0`` (mean log size) and ``E`` fixed."""
        pts = self._scaled(data.X["mu"], data.X["sigma"])
        knots, _ = knots_of(pts)
        e = self.floor * float(np.min(data.y)) if self.e is None else self.e
        if e >= float(np.min(data.y)):
            raise FitError(f"the floor E = {e:.6g} is not below the smallest loss of the data "
                           f"({float(np.min(data.y)):.6g}): a run went below it, so no power law over that floor fits")
        cfg = {**self.config(), "knots": knots.tolist(), "d0": float(np.mean(self.log_d(data.X["D"], data.X.get("P")))),
               "e": e,
               "smoothing": self.smoothing}
        return type(self)(**cfg)

    def labels(self, data: Data) -> np.ndarray:
        """The regime (knot) of each fitted point."""
        pts = self._scaled(data.X["mu"], data.X["sigma"])
        return np.argmin(np.linalg.norm(pts[:, None] - self.knots[None], axis=2), axis=1)

    def penalised(self, G: np.ndarray, z: np.ndarray, lam: float, tau2: float, w: np.ndarray | None = None) -> np.ndarray:
        """Penalised least squares: ``argmin sum w (z - G theta)^2 + lam (f'Bf + tau^2 a'Ba)``.

        ``tau^2`` (the variance of ``t`` over the fitted points) puts the exponent's penalty in the same units
        as the values'; a tiny ridge keeps a regime with no points (in a CV fold) determined by its neighbours."""
        K = len(self.knots)
        w = np.ones(len(z)) if w is None else w
        tau2 = max(float(tau2), 1e-6)
        pen = np.zeros((2 * K, 2 * K))
        pen[:K, :K], pen[K:, K:] = lam * self._spline.energy, lam * tau2 * self._spline.energy
        A = (G * w[:, None]).T @ G + pen + 1e-9 * np.eye(2 * K)
        return np.linalg.solve(A, (G * w[:, None]).T @ z)

    def cross_validate(self, G: np.ndarray, z: np.ndarray, y: np.ndarray, lab: np.ndarray, tau2: float) -> tuple[float, dict]:
        """The smoothing weight with the lowest leave-one-regime-out MAPE of the target, and the CV curve."""
        curve = {}
        groups = np.unique(lab)
        for lam in LAMBDAS:
            err = []
            for g in groups:
                keep = lab != g
                th = self.penalised(G[keep], z[keep], lam, tau2)
                err.extend(np.abs((self.e + np.exp(G[~keep] @ th)) / y[~keep] - 1))
            curve[lam] = float(np.mean(err)) * 100
        best = min(curve, key=lambda k: (curve[k], -k))
        return best, curve

    def fit(self, table: Any, *, target: str, group: str | None = None, bootstrap: int = 0, seed: int = 0,
            level: float = 0.95, strict: bool = True, progress: bool | None = None, space: str | None = None,
            loss: str | None = None, delta: float | None = None, polish: int | None = None, maxiter: int = 1,
            **columns: str) -> Fit:
        """Fit by penalised least squares in ``log(L - E)`` (closed form; no optimiser, no starts). The bootstrap
        resamples whole regimes (the knots stay; a regime left out is filled in by its neighbours)."""
        from pplaw.laws.data import prepare
        from pplaw.laws.result import Fit
        from pplaw.laws.solver import FitOptions, Solution

        if int(bootstrap) < 0:
            raise InvalidInputError(f"bootstrap must be >= 0 resamples, got {bootstrap!r}")
        if not 0 < level < 1:
            raise InvalidInputError(f"level must be in (0, 1), got {level!r}")
        if (space or "log") != "log" or (loss or "mse") != "mse":
            raise InvalidInputError(f"{type(self).__name__} is fitted by least squares in log space: space='log' "
                                    f"and loss='mse' only (got space={space!r}, loss={loss!r})")
        if self._grid or self._bounds or self._fixed:
            raise InvalidInputError(f"{type(self).__name__} takes no grid/bounds/fixed: its parameters are "
                                    "the spline's values at the sweep's regimes")
        data = prepare(self, table, target=target, columns=columns, group=group)
        if np.any(data.y <= 0):
            raise InvalidInputError(f"target column {data.target!r} must be > 0 (the law fits log L)")
        if self.fit_floor:
            return self._fit_profiled(table, data, target=target, group=group, bootstrap=bootstrap, seed=seed,
                                      level=level, columns=columns)
        law = self.resolve(data)
        lab = law.labels(data)
        K = len(law.knots)
        if K < 3:
            raise FitError(f"{type(self).__name__} needs at least 3 distinct regimes (mu, sigma) to smooth over; "
                           f"the data hold {K}")
        if np.unique(data.X["D"]).size < 2:
            raise FitError(f"{type(self).__name__} needs at least two sizes D to fit a data exponent; the data hold "
                           f"one ({data.X['D'][0]:.6g})")
        G, _ = law.design(data.X)
        z = np.log(data.y - law.e)
        tau2 = float(np.var(law.log_d(data.X["D"], data.X.get("P"))))
        warnings: list[str] = []
        curve: dict = {}
        if law.smoothing is None:
            lam, curve = law.cross_validate(G, z, data.y, lab, tau2)
            how = "chosen by leave-one-regime-out cross-validation"
        else:
            lam, how = law.smoothing, "given"
        theta = law.penalised(G, z, lam, tau2)
        law = type(law)(**{**law.config(), "smoothing": lam})
        draws = None
        if bootstrap:
            rng = np.random.default_rng(seed)
            groups = np.unique(lab)
            draws = np.empty((int(bootstrap), 2 * K))
            for b in range(int(bootstrap)):
                pick = rng.choice(groups, size=groups.size, replace=True)
                w = np.array([np.sum(pick == g) for g in lab], float)  # each run weighted by its regime's draws
                draws[b] = law.penalised(G, z, lam, tau2, w)
        multi = np.bincount(lab, minlength=K)  # runs per regime
        sizes = np.array([np.unique(data.X["D"][lab == k]).size for k in range(K)])
        if np.all(sizes < 2):
            warnings.append("no regime was run at two sizes: every data exponent comes from the smoothing alone")
        resid = z - G @ theta
        sol = Solution(theta, float(np.sum(resid ** 2)), True,
                       f"least squares in log(L - E) with a bending-energy penalty {lam:.3g} ({how}; closed form)", 1, 0, 0)
        opts = FitOptions.make(law, space="log", loss="mse", polish=None, maxiter=1)
        extras = {"smoothing": lam, "smoothing_how": how, "cv_mape": curve.get(lam),
                  "cv_curve": {f"{k:.3g}": v for k, v in curve.items()}, "n_regimes": K,
                  "regimes": [{"mu": float(m), "sigma_s": float(s), "runs": int(n)}
                              for (m, s), n in zip(law._unscaled(), multi)]}
        fit = Fit(law=law, data=data, theta=theta, options=opts, solution=sol, draws=draws, n_failed=0, seed=seed,
                  level=level, warnings=warnings, extras=extras)
        a = theta[K:]
        if np.any(a < 0):
            msg = (f"the data exponent is negative at {int(np.sum(a < 0))} of {K} regimes (min {a.min():.3g}): the "
                   "law predicts loss rising with D there")
            fit._fit_warnings.append(msg)
            fit.warnings.append(msg)
        return fit

    def _fit_profiled(self, table: Any, data: Data, *, target: str, group: str | None, bootstrap: int, seed: int,
                      level: float, columns: Mapping[str, str]) -> Fit:
        """``fit_floor``: ``E`` profiled over ``FLOOR_GRID`` x the smallest loss, the one whose fit has the lowest
        in-sample RMS of ``log(pred / measured)`` (each with its own cross-validated smoothing).

        Why in-sample: a regime run at two sizes is fitted exactly by its own power law over any floor, and one
        at three by ``E + B D^-a`` (three numbers) exactly too, so only regimes measured at ``MIN_FLOOR_SIZES`` (4)
        or more sizes over-determine the curve and constrain ``E``, by the curvature of their ``log L`` in
        ``log D`` -- Chinchilla's joint fit of ``E``, restricted to where the data identify it (the 10x recipe's
        held-out leaders at 2x and 4x, whose bands the sweep ran at 1x and 2x of its sizes). With no such regime
        the floor is not identified: the given floor (``e``, else ``floor`` x the smallest loss) is kept and the fit
        says so. The bootstrap then holds ``E`` fixed. Measured: benchmarks/PREDICT_RESULTS.md."""
        base = {k: v for k, v in self.config().items() if k not in ("fit_floor", "knots", "d0", "smoothing")}
        probe = type(self)(**{**base, "e": None, "floor": 0.0})
        pts = probe._scaled(data.X["mu"], data.X["sigma"])
        _, lab = knots_of(pts)
        sizes = [np.unique(np.round(data.X["D"][lab == k], -2)).size for k in np.unique(lab)]
        n_multi = int(np.sum(np.array(sizes) >= MIN_FLOOR_SIZES))
        kw = dict(target=target, group=group, level=level, progress=False, **columns)
        ymin = float(np.min(data.y))
        extras: dict[str, Any] = {"regimes_identifying_floor": n_multi}
        if n_multi == 0:
            fixed = type(self)(**base)
            fit = fixed.fit(table, bootstrap=bootstrap, seed=seed, **kw)
            extras.update(floor_how=f"given (no regime holds >= {MIN_FLOOR_SIZES} sizes, so the data do not "
                                    "identify a floor)")
        else:
            curve = {}
            for frac in FLOOR_GRID:
                try:
                    f = type(self)(**{**base, "e": frac * ymin}).fit(table, bootstrap=0, seed=seed, **kw)
                except FitError:
                    continue
                pred = np.asarray(f.predict(**data.X), float).ravel()  # (n,) at the fitted points
                curve[float(frac * ymin)] = float(np.sqrt(np.mean(np.log(pred / data.y) ** 2)))
            if not curve:
                raise FitError(f"{type(self).__name__}: no floor in the profile could be fitted")
            e = min(curve, key=lambda k: (curve[k], k))
            fit = type(self)(**{**base, "e": e}).fit(table, bootstrap=bootstrap, seed=seed, **kw)
            extras.update(floor_how=f"profiled: the lowest in-sample RMS log error over {len(curve)} floors "
                                    f"(0-{FLOOR_GRID[-1]:g} x the smallest loss), identified by {n_multi} regime(s) "
                                    f"at >= {MIN_FLOOR_SIZES} sizes", floor_profile={f"{k:.4g}": v for k, v in curve.items()})
        fit.law = type(fit.law)(**{**fit.law.config(), "fit_floor": True})
        fit.extras.update(extras)
        return fit

    # ------------------------------------------------------------------ optimum
    def g_at(self, p: Mapping[str, Any], mu: np.ndarray, sigma: np.ndarray, D: float | None) -> np.ndarray:
        """Minus the log predicted loss at budget ``D`` (maximal where the loss is minimal); ``p`` values may be
        arrays ``(B,)``: the result is ``(B, M)`` against points ``(M,)``. With ``pool`` the subset at a point is
        taken to be its whole pool (``P = D``: the narrowest band holding the budget); the loop's band search
        passes each band's own pool instead."""
        if D is None:
            raise InvalidInputError(f"{type(self).__name__}.optimum needs D (the budget in tokens): its data "
                                    "exponent depends on (mu, sigma), so the optimum moves with D")
        self._need_fit()
        th = np.stack([np.asarray(p[n], float) for n in self.param_names], axis=-1)  # (P,) or (B, P)
        mu = np.asarray(mu, float)
        K = len(self.knots)
        W = self._spline.weights(self._scaled(mu.ravel(), np.asarray(sigma, float).ravel())).reshape(mu.shape + (K,))
        t = float(self.log_d(float(D))) - self.d0
        coef = th[..., :K] - t * th[..., K:]  # (P,) or (B, K): log reducible loss at D is W @ coef
        if th.ndim == 2 and mu.ndim == 2:  # per-draw points (B, M) (the optimum's zoom)
            u = np.einsum("bk,bmk->bm", coef, W)
        elif th.ndim == 2:  # shared points (M,)
            u = coef @ W.T
        else:
            u = W @ coef
        return -np.log(self.e + np.exp(u))

    def optimum(self, fit: Fit, *, region: Any = None, D: float | None = None, **kwargs: Any):
        if D is None:
            raise InvalidInputError(f"{type(self).__name__}.optimum needs D (the budget in tokens): its data "
                                    "exponent depends on (mu, sigma), so the optimum moves with D")
        return super().optimum(fit, region=region, D=D, **kwargs)

    # the paper law's grid/profile machinery does not apply (closed-form fit)
    def scaled_bounds(self, data: Data) -> dict[str, tuple[float, float]]:
        return {}

    def basin_key(self, theta: np.ndarray, data: Data) -> tuple[np.ndarray, np.ndarray]:
        return Law.basin_key(self, theta, data)
