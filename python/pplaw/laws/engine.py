"""The shared fitting engine: law declaration, the robust grid + L-BFGS-B fit, and the bootstrap.

A law is declared once (:class:`Law`): named parameters with bounds and start values (:class:`Param`), and a
forward function vectorised over parameter sets (``theta`` of shape ``(K, P)`` -> predictions ``(K, n)``).
Laws whose log-prediction is a log-sum-exp of terms linear in the parameters derive from :class:`LSELaw` and get
the Hoffmann et al. parameterisation (``log L = LSE(e, a - alpha*log N, b - beta*log D)``) with an analytic
gradient for free. Any other law gets an exact gradient by the complex-step method (one vectorised forward call
with ``P`` complex perturbations), so its forward must be complex-analytic (``exp``, ``log``, ``**``; no
``abs``/``clip``/``maximum``).

The fitting recipe (Hoffmann et al. 2022; Besiroglu et al. 2024) is:

1. residuals in log space by default (``log prediction - log target``); ``space="linear"`` for laws whose target
   may be negative (loss changes) or is bounded (accuracy);
2. Huber loss with ``delta=1e-3`` **summed** over points (``loss="mse"`` gives least squares: with a single
   power-law term in log space that is exactly OLS in log-log);
3. the objective is evaluated over the whole start grid at once (chunked, vectorised), the ``polish`` best starts
   (or all, ``polish=None``) are refined with L-BFGS-B (tight tolerances, the grid is cheap, the polish is not);
   the best converged result wins, and a result that did not converge is an error (``strict=True``) or a loud
   warning in the summary, never a silent number;
4. bootstrap over run records (rows, or whole ``group`` s so the checkpoints of one run move together), each
   refit warm-started from the full-data optimum; resamples that break the design (one value of a variable, or
   fewer distinct design points than free parameters) or do not converge are counted, not hidden;
5. honesty checks on the result: every polished local optimum is kept, and distinct basins with objectives within
   5% of the best but a different answer (:mod:`pplaw.laws.basins`; the perplexity law compares its optimum) give a
   ``MULTIPLE BASINS`` warning; ``n - P <= 2`` (P: free parameters) gives ``SMALL SAMPLE`` (and says which
   validation is impossible), and such fits, or bootstraps whose resamples often cannot identify the law, have
   their CIs marked not meaningful (``Fit.ci_meaningful``).

Parameters can be held at given values (``fixed={"beta": 0.3}``): they are not fitted and not counted as free
(point minimum, degrees of freedom, design checks). ``Law.from_params`` evaluates a law at given (e.g. published)
parameters without data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from pplaw.exceptions import FitError, InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.given import LawAt
    from pplaw.laws.result import Fit

HUBER_DELTA = 1e-3
_CSTEP = 1e-30  # complex-step size: exact to machine precision, no subtractive cancellation

@dataclass(frozen=True)
class Param:
    """One named parameter.

    ``bounds`` and ``grid`` (the start values) are on the optimiser's scale: for ``log=True`` parameters the
    optimiser works on ``log(value)`` (so ``E`` is fitted as ``e = log E`` and stays positive), and ``bounds`` /
    ``grid`` are given on that log scale.
    """

    name: str
    bounds: tuple[float, float]
    grid: tuple[float, ...]
    log: bool = False
    doc: str = ""


def lse(t: np.ndarray, axis: int) -> np.ndarray:
    """log-sum-exp along ``axis``; safe for complex input (complex step) and for all ``-inf`` terms."""
    m = np.max(t.real, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(t - m), axis=axis))


class Law:
    """Base class of every law. Subclasses set the class attributes and implement :meth:`declare` and
    :meth:`forward` (or, for log-sum-exp forms, derive from :class:`LSELaw` and implement ``terms``)."""

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    variables: tuple[str, ...] = ()  # inputs, each mapped to a column at fit time
    positive: tuple[str, ...] = ()  # inputs whose logarithm is taken: must be > 0
    optional: tuple[str, ...] = ()  # inputs a prediction may omit (the law has a stated default for them)
    default_space: ClassVar[str] = "log"
    default_loss: ClassVar[str] = "huber"
    default_delta: ClassVar[float] = HUBER_DELTA
    # True for laws whose parameters are values of a smoother at the data (pplaw.laws.PerplexityLawSpline):
    # identified jointly by a penalty, so per-parameter rank and CI-width checks say nothing useful
    nonparametric: ClassVar[bool] = False

    def __init__(self, *, grid: Mapping[str, Any] | None = None, bounds: Mapping[str, Any] | None = None,
                 fixed: Mapping[str, float] | None = None):
        self._grid = {k: tuple(float(x) for x in np.atleast_1d(v)) for k, v in dict(grid or {}).items()}
        self._bounds = {k: (float(v[0]), float(v[1])) for k, v in dict(bounds or {}).items()}
        self._fixed = {k: float(v) for k, v in dict(fixed or {}).items()}
        declared = {p.name: p for p in self.declare()}
        names = set(declared)
        for kind, over in (("grid", self._grid), ("bounds", self._bounds), ("fixed", self._fixed)):
            unknown = sorted(set(over) - names)
            if unknown:
                raise InvalidInputError(
                    f"{kind} names unknown parameter(s) {unknown} of {type(self).__name__}; parameters: {sorted(names)}"
                )
        for k, (lo, hi) in self._bounds.items():
            if not lo < hi:
                raise InvalidInputError(f"bounds for {k!r} must satisfy low < high, got ({lo}, {hi})")
        for k, v in self._fixed.items():
            if not np.isfinite(v) or (declared[k].log and v <= 0):
                raise InvalidInputError(f"fixed value of {k!r} must be a finite number" +
                                        (" > 0 (a positive scale parameter)" if declared[k].log else "") + f", got {v!r}")
        if names and len(self._fixed) == len(names):
            raise InvalidInputError(f"every parameter of {type(self).__name__} is fixed: nothing to fit (use "
                                    f"{type(self).__name__}.from_params to evaluate a law at given parameters)")

    # ---------------------------------------------------------------- declaration
    def declare(self) -> tuple[Param, ...]:
        raise NotImplementedError(f"{type(self).__name__} must declare its parameters (abstract method)")

    @property
    def params(self) -> tuple[Param, ...]:
        out = []
        for p in self.declare():
            if p.name in self._fixed:  # a fixed parameter: equal bounds, one start value (L-BFGS-B keeps it)
                v = float(np.log(self._fixed[p.name]) if p.log else self._fixed[p.name])
                out.append(Param(p.name, (v, v), (v,), p.log, p.doc))
                continue
            bounds = self._bounds.get(p.name, p.bounds)
            grid = self._grid.get(p.name, p.grid)
            out.append(Param(p.name, bounds, grid, p.log, p.doc))
        return tuple(out)

    @property
    def fixed(self) -> dict[str, float]:
        """Parameters held at given values (user scale): not fitted, not counted as free."""
        return dict(self._fixed)

    @property
    def free(self) -> np.ndarray:
        """Boolean mask over :attr:`params`: the parameters that are fitted."""
        return np.array([p.name not in self._fixed for p in self.params], dtype=bool)

    @property
    def n_free(self) -> int:
        return int(self.free.sum())

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def options(self) -> dict[str, Any]:
        """Law-specific constructor options (JSON-serialisable); subclasses extend."""
        return {}

    def anchored(self, y: Any) -> Law:
        """This law with any option defined relative to the fitted losses fixed at its value for ``y`` (the
        losses it was validated on), so a refit on more runs keeps what was validated; most laws have none."""
        return self

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this law: ``REGISTRY[name](**config)``."""
        cfg = dict(self.options())
        if self._grid:
            cfg["grid"] = {k: list(v) for k, v in self._grid.items()}
        if self._bounds:
            cfg["bounds"] = {k: list(v) for k, v in self._bounds.items()}
        if self._fixed:
            cfg["fixed"] = dict(self._fixed)
        return cfg

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def describe(self) -> str:
        """One line for summaries: the formula and the options."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{type(self).__name__}: {self.formula}" + (f"   [{opts}]" if opts else "") + self.fixed_note()

    def fixed_note(self) -> str:
        """``"   fixed (not fitted): beta=0.3"`` for :meth:`describe` (empty without fixed parameters)."""
        fixed = ", ".join(f"{k}={v:.6g}" for k, v in self._fixed.items())
        return f"   fixed (not fitted): {fixed}" if fixed else ""

    @classmethod
    def from_params(cls, params: Mapping[str, float], *, source: str = "", **options: Any) -> LawAt:
        """The law at given parameters (user scale, by name; e.g. a paper's published table) to evaluate,
        tabulate and plot without data: ``Chinchilla.from_params({...}).predict(N=70e9, D=1.4e12)``. ``options``
        are the law's constructor options (units must be explicit: ``CMRLaw.from_params(p, t_unit=1e9)``)."""
        from pplaw.laws.given import LawAt

        return LawAt(cls(**options), params, source)

    def units(self) -> str:
        """Hook: the units the parameters are in (shown in summaries); default none stated."""
        return ""

    def check_units(self) -> None:
        """Hook: raise when the law's units are not fixed (e.g. ``t_unit="auto"`` before a fit)."""

    def resolve(self, data: Data) -> Law:
        """Hook: return the law with data-dependent options fixed (e.g. a token unit); default ``self``."""
        return self

    def data_grid(self, data: Data, z: np.ndarray) -> dict[str, tuple[float, ...]]:
        """Hook: start values that depend on the data (e.g. ``E`` below the smallest loss); ``z`` is the model
        target. Explicit ``grid=`` overrides win over these."""
        return {}

    def starts(self, data: Data, space: str) -> np.ndarray:
        """Start points ``(S, P)`` on the optimiser scale: the Cartesian product of the grids."""
        auto = self.data_grid(data, self.target_to_model(data.y, data.X))
        grids = [self._grid.get(p.name, auto.get(p.name, p.grid)) for p in self.params]
        return np.array(list(itertools.product(*grids)), dtype=float)

    def check_inputs(self, X: Mapping[str, np.ndarray], columns: Mapping[str, str]) -> None:
        """Hook: law-specific input checks beyond finiteness/positivity (e.g. a ratio within [0, 1])."""

    def design_variables(self) -> tuple[str, ...]:
        """Variables that must take at least two distinct values for the parameters to be identifiable."""
        return tuple(self.variables)

    def check_design(self, data: Data) -> None:
        for v in self.design_variables():
            x = data.X[v]
            if np.unique(x).size < 2:
                col = data.columns.get(v, v)
                raise FitError(
                    f"degenerate design for {type(self).__name__}: variable {v!r} (column {col!r}) takes a single "
                    f"value ({x[0]:.6g}) in all {x.size} rows, so its exponent cannot be identified; vary it across "
                    "runs or use a law without that variable"
                )

    # ---------------------------------------------------------------- model
    def design(self, X: Mapping[str, np.ndarray]) -> Any:
        """Precompute whatever the forward needs from the inputs (default: the inputs themselves)."""
        return X

    def forward(self, theta: np.ndarray, design: Any) -> np.ndarray:
        """Predictions of the model target: theta ``(K, P)`` -> ``(K, n)``. Must be complex-safe."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward (abstract method)")

    def log_forward(self, theta: np.ndarray, design: Any) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self.forward(theta, design))

    def values(self, theta: np.ndarray, design: Any, space: str) -> np.ndarray:
        """Predictions in the fitting space, ``(K, P)`` -> ``(K, n)``."""
        return self.log_forward(theta, design) if space == "log" else self.forward(theta, design)

    def jacobian(self, theta: np.ndarray, design: Any, space: str) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(n,)`` and Jacobian ``(n, P)`` in the fitting space at one theta ``(P,)``.

        Default: complex step, ``f(theta + i h e_j).imag / h``, all ``P`` directions in one vectorised call.
        """
        p = theta.size
        th = theta[None, :] + 1j * _CSTEP * np.eye(p)  # (P, P) complex
        v = self.values(th, design, space)  # (P, n) complex
        return v[0].real, (v.imag / _CSTEP).T

    # ---------------------------------------------------------------- targets
    def target_to_model(self, y: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """Map the user's target to the quantity the law models (identity; DownstreamLaw: ``-log Q``)."""
        return y

    def model_to_target(self, z: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        return z

    def check_target(self, y: np.ndarray, data: Data, space: str) -> None:
        if space == "log" and np.any(y <= 0):
            bad = np.flatnonzero(y <= 0)
            raise InvalidInputError(
                f"target column {data.target!r} must be > 0 to be fitted in log space; {bad.size} value(s) are "
                f"<= 0 (e.g. {y[bad[0]]:.6g} at row {bad[0]}); use space='linear' or fix the data"
            )

    # ---------------------------------------------------------------- parameters
    def public(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Optimiser-scale theta ``(..., P)`` -> user-facing values by name (``exp`` of log parameters)."""
        theta = np.asarray(theta, dtype=float)
        return {p.name: (np.exp(theta[..., j]) if p.log else theta[..., j]) for j, p in enumerate(self.params)}

    def internal(self, params: Mapping[str, float]) -> np.ndarray:
        missing = [p.name for p in self.params if p.name not in params]
        if missing:
            raise InvalidInputError(f"{type(self).__name__} needs values for parameter(s) {missing}")
        return np.array([np.log(params[p.name]) if p.log else float(params[p.name]) for p in self.params])

    def derived(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Quantities derived from the parameters (vectorised over bootstrap draws); reported with CIs."""
        return {}

    def optimum(self, fit: Fit, **kwargs: Any) -> Any:
        raise FitError(f"{type(self).__name__} defines no optimum")

    # ---------------------------------------------------------------- distinct basins (pplaw.laws.basins)
    basin_what: ClassVar[str] = "parameters"

    def basin_key_names(self) -> tuple[str, ...]:
        return self.param_names

    def basin_key(self, theta: np.ndarray, data: Data) -> tuple[np.ndarray, np.ndarray]:
        """What two local optima must agree on to be the same answer: ``(keys (K, m), scale (m,))``; keys further
        apart than a few % of ``scale`` are different answers. Default: the parameters (user scale), each on the
        scale of the best fit's value (``theta[0]``)."""
        pub = self.public(np.atleast_2d(theta))
        keys = np.column_stack([pub[k] for k in self.param_names])
        return keys, np.maximum(np.abs(keys[0]), 1e-6)

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        table: Any,
        *,
        target: str,
        group: str | None = None,
        bootstrap: int = 0,
        seed: int = 0,
        level: float = 0.95,
        space: str | None = None,
        loss: str | None = None,
        delta: float | None = None,
        polish: int | None = 32,
        maxiter: int = 15000,
        strict: bool = True,
        progress: bool | None = None,
        **columns: str,
    ) -> Fit:
        """Fit the law to a table (pandas DataFrame, pyarrow Table, ``datasets.Dataset`` or dict of columns).

        ``target`` names the column to predict; each law variable maps to a column by keyword (``D="tokens"``),
        defaulting to a column of the variable's own name. ``group`` names a column identifying the run of each
        row: the bootstrap then resamples whole runs, so checkpoints of one run move together. ``bootstrap`` is
        the number of resamples (0: no CIs). ``polish`` is how many of the best grid starts L-BFGS-B refines
        (``None``: all). With ``strict=False`` a fit that did not converge is returned with a warning instead of
        raising :class:`~pplaw.exceptions.FitError`.
        """
        from pplaw.laws.data import prepare
        from pplaw.laws.fitting import fit_data
        from pplaw.laws.solver import FitOptions

        data = prepare(self, table, target=target, columns=columns, group=group)
        opts = FitOptions.make(self, space=space, loss=loss, delta=delta, polish=polish, maxiter=maxiter)
        return fit_data(self, data, opts, bootstrap=bootstrap, seed=seed, level=level, strict=strict,
                        progress=progress)


class LSELaw(Law):
    """A law with ``log prediction = logsumexp_k (Phi_k(X) @ theta + c_k(X))``: every term linear in theta.

    Subclasses implement :meth:`terms`, returning one ``(Phi (n, P), c (n,) or None)`` pair per term; a ``c`` of
    ``-inf`` switches a term off for a row (e.g. ``r^eta`` at ``r = 0``). The gradient is analytic: the
    softmax-weighted sum of the term features.
    """

    def terms(self, X: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        raise NotImplementedError(f"{type(self).__name__} must implement terms (abstract method)")

    def design(self, X: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        terms = self.terms(X)
        phi = np.stack([t[0] for t in terms]).astype(float)  # (T, n, P)
        n = phi.shape[1]
        c = np.stack([np.zeros(n) if t[1] is None else np.asarray(t[1], float) for t in terms])  # (T, n)
        return phi, c

    def log_forward(self, theta: np.ndarray, design: Any) -> np.ndarray:
        phi, c = design
        t = np.einsum("tnp,kp->ktn", phi, theta) + c[None]  # (K, T, n)
        return lse(t, axis=1)

    def forward(self, theta: np.ndarray, design: Any) -> np.ndarray:
        return np.exp(self.log_forward(theta, design))

    def jacobian(self, theta: np.ndarray, design: Any, space: str) -> tuple[np.ndarray, np.ndarray]:
        phi, c = design
        t = np.einsum("tnp,p->tn", phi, theta) + c  # (T, n)
        logv = lse(t, axis=0)  # (n,)
        with np.errstate(invalid="ignore"):
            w = np.exp(t - logv[None])  # softmax over terms (T, n)
        w = np.where(np.isfinite(w), w, 0.0)
        jac = np.einsum("tn,tnp->np", w, np.where(np.isfinite(phi), phi, 0.0))  # (n, P)
        if space == "log":
            return logv, jac
        v = np.exp(logv)
        return v, v[:, None] * jac
