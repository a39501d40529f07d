"""The solver shared by every law: the objective, the grid + L-BFGS-B solve, the bootstrap draws.

It works on a law, prepared :class:`~pplaw.laws.data.Data` and parameter vectors and knows no
:class:`~pplaw.laws.result.Fit` (that is built on top, in :mod:`pplaw.laws.fitting`). See
:mod:`pplaw.laws.engine` for the recipe.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from scipy import optimize

from pplaw.exceptions import FitError, InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.engine import Law

SPACES = ("log", "linear")
LOSSES = ("huber", "mse")
_CHUNK_ELEMS = 2_000_000  # grid evaluation works on blocks of at most this many (start, term, point) values
_BAD = 1e100  # objective returned where the law cannot be evaluated; L-BFGS-B then shortens its step


@dataclass(frozen=True)
class FitOptions:
    space: str
    loss: str
    delta: float
    polish: int | None
    maxiter: int

    @classmethod
    def make(cls, law: Law, *, space=None, loss=None, delta=None, polish=32, maxiter=15000) -> FitOptions:
        space = law.default_space if space is None else space
        loss = law.default_loss if loss is None else loss
        delta = law.default_delta if delta is None else float(delta)
        if space not in SPACES:
            raise InvalidInputError(f"space must be one of {SPACES}, got {space!r}")
        if loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {LOSSES}, got {loss!r}")
        if not (np.isfinite(delta) and delta > 0):
            raise InvalidInputError(f"delta (the Huber threshold) must be a positive number, got {delta!r}")
        if polish is not None and int(polish) < 1:
            raise InvalidInputError(f"polish must be a positive number of starts or None (all), got {polish!r}")
        if int(maxiter) < 1:
            raise InvalidInputError(f"maxiter must be >= 1, got {maxiter!r}")
        return cls(space, loss, delta, None if polish is None else int(polish), int(maxiter))

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "loss": self.loss, "delta": self.delta, "polish": self.polish,
                "maxiter": self.maxiter}


class Problem:
    """One least-loss problem: a law, its design over n points and the target in the fitting space."""

    def __init__(self, law: Law, X: Mapping[str, np.ndarray], z: np.ndarray, opts: FitOptions):
        self.law, self.X, self.opts = law, X, opts
        self.design = law.design(X)
        with np.errstate(divide="ignore"):
            self.zt = np.log(z) if opts.space == "log" else np.asarray(z, float)  # (n,)
        self.bounds = [p.bounds for p in law.params]
        self.lower = np.array([b[0] for b in self.bounds])
        self.upper = np.array([b[1] for b in self.bounds])

    def rho(self, r: np.ndarray) -> np.ndarray:
        """Per-point loss of residuals (any shape); summed by the callers."""
        if self.opts.loss == "mse":
            return r * r
        d = self.opts.delta
        a = np.abs(r)
        return np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d))

    def rho_prime(self, r: np.ndarray) -> np.ndarray:
        return 2.0 * r if self.opts.loss == "mse" else np.clip(r, -self.opts.delta, self.opts.delta)

    def objective_batch(self, theta: np.ndarray) -> np.ndarray:
        """Objective at many parameter sets ``(K, P)`` -> ``(K,)``, chunked; ``inf`` where not evaluable."""
        theta = np.atleast_2d(theta)
        n = max(self.zt.size, 1)
        step = max(1, _CHUNK_ELEMS // (n * 4))
        out = np.empty(theta.shape[0])
        with np.errstate(all="ignore"):
            for i in range(0, theta.shape[0], step):
                v = self.law.values(theta[i:i + step], self.design, self.opts.space)  # (k, n)
                f = self.rho(v - self.zt[None]).sum(axis=1)
                out[i:i + step] = np.where(np.isfinite(f), f, np.inf)
        return out

    def fun_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            v, jac = self.law.jacobian(theta, self.design, self.opts.space)
            r = v - self.zt
            f = float(self.rho(r).sum())
            g = np.einsum("np,n->p", jac, self.rho_prime(r))  # not BLAS: threaded gemv on tiny inputs is slow
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return _BAD, np.zeros_like(theta)
        return f, g

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.law.values(theta[None], self.design, self.opts.space)[0] - self.zt


@dataclass
class Solution:
    theta: np.ndarray
    fun: float
    success: bool
    message: str
    n_starts: int
    n_polished: int
    nit: int
    local: np.ndarray | None = None  # (K, P) every polished start's end point (distinct-basin check)
    local_fun: np.ndarray | None = None  # (K,) their objectives


def _minimize(problem: Problem, x0: np.ndarray) -> optimize.OptimizeResult:
    # ftol/gtol far below scipy's defaults: a Huber objective with delta=1e-3 sums to ~1e-3, and the
    # default tolerances stop L-BFGS-B visibly short of the optimum (Epoch's replication uses the same idea).
    return optimize.minimize(
        problem.fun_grad, x0, jac=True, method="L-BFGS-B", bounds=problem.bounds,
        options={"maxiter": problem.opts.maxiter, "ftol": 1e-15, "gtol": 1e-12, "maxls": 50},
    )


def solve(problem: Problem, starts: np.ndarray, polish: int | None) -> Solution:
    """Evaluate every start at once, L-BFGS-B from the ``polish`` best, keep the best converged result."""
    starts = np.clip(np.atleast_2d(np.asarray(starts, float)), problem.lower, problem.upper)
    f0 = problem.objective_batch(starts)
    finite = np.flatnonzero(np.isfinite(f0))
    if finite.size == 0:
        raise FitError(
            f"{type(problem.law).__name__} cannot be evaluated at any of its {len(starts)} start points (all "
            "predictions non-finite, or non-positive in log space): check the variables' units and signs"
        )
    order = finite[np.argsort(f0[finite], kind="stable")]
    chosen = order if polish is None else order[:polish]
    results = [_minimize(problem, starts[i]) for i in chosen]
    ok = [r for r in results if np.isfinite(r.fun) and r.fun < _BAD]
    if not ok:
        raise FitError(f"{type(problem.law).__name__}: L-BFGS-B failed from every start ({results[0].message})")
    best = min(ok, key=lambda r: r.fun)
    if not best.success:
        # "ABNORMAL" line-search ends near the optimum are common at these tolerances: a converged start that
        # reached (numerically) the same objective is as good; else restart once from the best point.
        tol = 1e-9 * max(abs(best.fun), 1e-300)
        same = [r for r in ok if r.success and r.fun <= best.fun + tol]
        if same:
            best = min(same, key=lambda r: r.fun)
        else:
            again = _minimize(problem, best.x)
            if again.fun <= best.fun + tol:
                best = again
    return Solution(np.asarray(best.x, float), float(best.fun), bool(best.success), str(best.message),
                    len(starts), len(chosen), int(best.get("nit", 0)),
                    np.array([r.x for r in ok], float), np.array([r.fun for r in ok], float))


# ====================================================================== resampling
def resample_indices(n: int, groups: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one bootstrap resample: rows with replacement, or whole groups with replacement."""
    if groups is None:
        return rng.integers(0, n, size=n)
    labels, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(labels.size)]
    pick = rng.integers(0, labels.size, size=labels.size)
    return np.concatenate([members[g] for g in pick])


def single_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS/OpenMP to one thread while fitting. scipy's L-BFGS-B calls BLAS on tiny matrices; with a
    threaded BLAS on a busy machine each call then waits on spinning threads (measured: 20x slower)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn/scipy stacks
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _progress(total: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else (not progress)
    return tqdm(total=total, desc=desc, disable=disable, leave=False)


def n_distinct_points(X: Mapping[str, np.ndarray], idx: np.ndarray | None = None) -> int:
    """Distinct design points (rows of the input variables) among ``idx`` (default: all rows)."""
    cols = [np.asarray(x, float) if idx is None else np.asarray(x, float)[idx] for x in X.values()]
    if not cols:
        return 0
    return int(np.unique(np.column_stack(cols), axis=0).shape[0])


def small_sample_warning(law: Law, data: Data) -> str | None:
    """The warning for ``n - P <= 2`` (P: free parameters), saying which validation is impossible."""
    n, p = data.n, law.n_free
    if n - p > 2:
        return None
    if n - p <= 1:
        val = (f"leave-one-out is impossible (each fold keeps {n - 1} point(s) for {p} parameters: at most an exact "
               "interpolation) and so is any other hold-out")
    else:
        val = (f"leave-one-out folds keep {n - 1} points for {p} parameters (one residual degree of freedom) and "
               "no hold-out of 2 or more points is possible")
    return (f"SMALL SAMPLE: {n} points for {p} free parameters (n - P = {n - p}): the fit has almost no residual "
            f"degrees of freedom, so R^2 and CIs say little; {val}")


def bootstrap_draws(law: Law, data: Data, opts: FitOptions, theta_hat: np.ndarray, n_boot: int, seed: int,
                    progress: bool | None = None, stats: dict[str, int] | None = None) -> tuple[np.ndarray, int]:
    """``n_boot`` warm-started refits on resampled runs -> draws ``(B, P)`` (NaN rows where a refit failed).

    A resample with fewer distinct design points than free parameters is not refitted (it counts as failed);
    ``stats`` (if given) receives ``under`` (such resamples) and ``exact`` (as many points as parameters)."""
    rng = np.random.default_rng(seed)
    draws = np.full((n_boot, theta_hat.size), np.nan)
    failed = 0
    n_free = law.n_free
    counts = {"under": 0, "exact": 0}
    with _progress(n_boot, f"bootstrap {type(law).__name__}", progress) as bar:
        for b in range(n_boot):
            idx = resample_indices(data.n, data.groups, rng)
            sub = data.take(idx)
            try:
                k = n_distinct_points(data.X, idx)
                if k <= n_free:
                    counts["under" if k < n_free else "exact"] += 1
                if k < n_free:
                    raise FitError("fewer distinct design points than free parameters")
                law.check_design(sub)
                problem = Problem(law, sub.X, law.target_to_model(sub.y, sub.X), opts)
                sol = solve(problem, theta_hat[None], polish=None)
            except FitError:
                sol = None
            if sol is None or not sol.success:
                failed += 1
            else:
                draws[b] = sol.theta
            bar.update(1)
    if stats is not None:
        stats.update(counts)
    return draws, failed


def predict_target(law: Law, X: Mapping[str, np.ndarray], theta: np.ndarray) -> np.ndarray:
    """The law's prediction of the target at inputs ``X`` for parameters ``theta`` ``(P,)`` -> ``(n,)`` or
    ``(K, P)`` -> ``(K, n)``."""
    with np.errstate(all="ignore"):
        z = law.forward(np.atleast_2d(theta), law.design(X))  # (K, n)
    y = law.model_to_target(z, X)
    return y[0] if np.ndim(theta) == 1 else y


def solve_data(law: Law, data: Data, opts: FitOptions, *, strict: bool = True,
               starts: np.ndarray | None = None) -> tuple[Law, Solution, list[str]]:
    """The point fit of prepared data, without bootstrap or a ``Fit``: the law resolved for the data, the
    solution and the fit's warnings. Raises :class:`FitError` when it cannot be fitted (or, with ``strict``,
    did not converge)."""
    law = law.resolve(data)
    n_params = law.n_free
    if data.n < n_params + 1:
        fixed = f" ({len(law.fixed)} more fixed)" if law.fixed else ""
        raise FitError(
            f"{type(law).__name__} has {n_params} free parameters{fixed} and needs at least {n_params + 1} points to "
            f"be fitted (and many more for trustworthy CIs); got {data.n}"
        )
    law.check_design(data)
    z = law.target_to_model(data.y, data.X)
    law.check_target(z, data, opts.space)
    problem = Problem(law, data.X, z, opts)
    grid = law.starts(data, opts.space) if starts is None else starts
    with single_thread():
        sol = solve(problem, grid, opts.polish)
    warnings: list[str] = []
    if not sol.success:
        msg = (f"{type(law).__name__} did not converge: L-BFGS-B stopped with {sol.message!r} after {sol.nit} "
               f"iterations (best of {sol.n_polished} polished starts)")
        if strict:
            raise FitError(msg + "; pass strict=False to inspect the unconverged result, raise maxiter, or "
                           "check the data")
        warnings.append("NOT CONVERGED: " + msg)
    return law, sol, warnings
