"""The CMR scaling law (Gu et al., arXiv 2407.17467): critical mixture ratios for continual pre-training.

Component laws (all on the shared engine, fitted in linear space because loss *changes* can be negative, and by
least squares by default: with residuals of ~1e-3 a Huber delta of 1e-3 would act as an L1 fit there; pass
``loss="huber"`` to the component laws for a robust fit):

- :class:`RatioLaw`          ``L(R) = alpha*R^s + beta``          loss vs domain mixture ratio R at a budget
- :class:`DomainLossChange`  ``dLdom(T) = a1*T^s1 + b1``          domain loss change vs training tokens
- :class:`GeneralLossChange` ``dLgen(T) = a2*T^s2 + a3*T^s3 + b2`` general loss change (rise then recovery);
  fitted with ``s3 = s2 + ds``, ``ds > 0``, so the two terms cannot swap between bootstrap refits
- :class:`CMRLaw`            ``R_CMR(T) = a4*T^s4 + b3``          the critical ratio vs the token budget

and :class:`CMR`, which chains them. Choices made here (the paper's details are not in docs/architecture.md):

- tokens are measured in units of ``t_unit`` (``"auto"``: the power of ten nearest the geometric mean of the
  fitted T, recorded in the law's options) so that coefficients are O(1);
- the tolerance ``eps`` (default 0.05) is relative to the base model's general loss by default
  (feasible: ``L_gen(T, R) <= (1 + eps) * L_gen0``); ``tolerance="absolute"`` uses ``L_gen0 + eps``;
- the critical mixture ratio at budget T is the largest R in (0, 1] whose ratio-law general loss is within
  tolerance (1.0 when every ratio is feasible, 0.0 when none is);
- ``T0(lambda)`` is where the Lagrangian ``F(T) = dLdom(T) + lambda*(dLgen(T) - eps_abs)`` stops decreasing
  (its first minimum over log T): past it, the general-loss cost (weighted by lambda) of more tokens exceeds the
  domain gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError, MissingColumnError
from pplaw.laws.data import Data, numeric_column, to_frame
from pplaw.laws.engine import Law, Param
from pplaw.laws.registry import register
from pplaw.laws.fitting import fit_data
from pplaw.laws.solver import FitOptions, Problem, single_thread, solve
from pplaw.laws.result import Fit, percentile_ci


class _PowerPlusConst(Law):
    """``coef * (x / unit)^expo + const`` in linear space (one variable)."""

    var, coef, expo, const = "T", "a", "s", "b"
    default_space, default_loss = "linear", "mse"
    unit_var = True  # whether x is measured in ``t_unit`` units

    def __init__(self, t_unit: float | str = "auto", *, grid=None, bounds=None, fixed=None):
        if not (t_unit == "auto" or (isinstance(t_unit, (int, float)) and t_unit > 0)):
            raise InvalidInputError(f"t_unit must be 'auto' or a positive number of tokens, got {t_unit!r}")
        self.t_unit = t_unit
        self.variables = (self.var,)
        self.positive = (self.var,)
        super().__init__(grid=grid, bounds=bounds, fixed=fixed)

    def options(self) -> dict[str, Any]:
        return {"t_unit": self.t_unit} if self.unit_var else {}

    def declare(self):
        return (Param(self.coef, (-1e4, 1e4), (-1.0, -0.3, 0.3, 1.0)),
                Param(self.expo, (-3.0, 3.0), (-1.0, -0.5, -0.2, 0.2, 0.5, 1.0)),
                Param(self.const, (-1e3, 1e3), (0.0,)))

    def resolve(self, data: Data) -> Law:
        if not self.unit_var or self.t_unit != "auto":
            return self
        unit = 10.0 ** np.round(np.mean(np.log10(data.X[self.var])))
        law = type(self)(**{**self.config(), "t_unit": float(unit)})
        law.auto_unit = True
        return law

    auto_unit = False  # True when t_unit="auto" chose the unit from the fitted data

    def units(self) -> str:
        if not self.unit_var:
            return ""
        if self.t_unit == "auto":
            return f"{self.var} in units chosen at fit time (t_unit='auto')"
        u = float(self.t_unit)
        how = (" chosen by t_unit='auto' (the power of ten nearest the geometric mean of the fitted "
               f"{self.var}); pass t_unit=1 for raw tokens or the unit of the parameters you compare with"
               if self.auto_unit else "")
        return (f"{self.var} in units of {u:g} tokens: the law takes {self.var}/{u:g}, so {self.coef} is per "
                f"({self.var}/{u:g})^{self.expo}{how}")

    def check_units(self) -> None:
        if self.unit_var and self.t_unit == "auto":
            raise InvalidInputError(f"{type(self).__name__}: give t_unit explicitly (tokens per unit of "
                                    f"{self.var} that the parameters assume, e.g. t_unit=1e9 or 1); 'auto' is "
                                    "chosen from data, and there are none here")

    def scaled(self, x: np.ndarray) -> np.ndarray:
        if not self.unit_var:
            return x
        if self.t_unit == "auto":
            raise FitError(f"{type(self).__name__}: t_unit is unresolved; fit the law first")
        return x / float(self.t_unit)

    def starts(self, data, space):
        """Variable projection: for each exponent on a grid, the coefficient and constant that minimise the
        squared error (linear least squares) -> starts already on the best valley floor (few L-BFGS-B steps)."""
        if self._grid:
            return super().starts(data, space)
        x, z = self.scaled(data.X[self.var]), self.target_to_model(data.y, data.X)
        out = []
        for e in np.concatenate([np.linspace(-2.0, -0.05, 14), np.linspace(0.05, 2.0, 14)]):
            basis = np.column_stack([x**e, np.ones_like(x)])
            (a, b), *_ = np.linalg.lstsq(basis, z, rcond=None)
            out.append((a, e, b))
        return np.array(out)

    def forward(self, theta, design):
        x = self.scaled(design[self.var])
        return theta[:, 0, None] * x[None] ** theta[:, 1, None] + theta[:, 2, None]


@register
class RatioLaw(_PowerPlusConst):
    """``L(R) = alpha*R^s + beta``: loss vs the domain mixture ratio ``R`` in (0, 1]."""

    name, formula = "cmr_ratio", "L(R) = alpha*R^s + beta"
    var, coef, expo, const = "R", "alpha", "s", "beta"
    unit_var = False

    def __init__(self, *, grid=None, bounds=None, fixed=None):
        super().__init__(1.0, grid=grid, bounds=bounds, fixed=fixed)

    def declare(self):
        return (Param("alpha", (-1e4, 1e4), (-1.0, 1.0)), Param("s", (-5.0, 5.0), (-1.0, -0.3, 0.3, 1.0, 2.0)),
                Param("beta", (-1e3, 1e3), (0.0,)))


@register
class DomainLossChange(_PowerPlusConst):
    """``dLdom(T) = a1*T^s1 + b1``: change of the domain loss after T tokens of CPT."""

    name, formula = "cmr_domain_change", "dLdom(T) = a1*T^s1 + b1"
    var, coef, expo, const = "T", "a1", "s1", "b1"


@register
class CMRLaw(_PowerPlusConst):
    """``R_CMR(T) = a4*T^s4 + b3``: the critical mixture ratio vs the token budget."""

    name, formula = "cmr_rcmr", "R_CMR(T) = a4*T^s4 + b3"
    var, coef, expo, const = "T", "a4", "s4", "b3"


@register
class GeneralLossChange(_PowerPlusConst):
    """``dLgen(T) = a2*T^s2 + a3*T^s3 + b2`` with ``s3 = s2 + ds``, ``ds > 0`` (derived: ``s3``)."""

    name, formula = "cmr_general_change", "dLgen(T) = a2*T^s2 + a3*T^s3 + b2"

    def declare(self):
        c = (-1.0, 1.0)
        return (Param("a2", (-1e4, 1e4), c), Param("s2", (-3.0, 3.0), (-1.0, -0.3, 0.3)),
                Param("a3", (-1e4, 1e4), c), Param("ds", (1e-3, 6.0), (0.3, 1.0)), Param("b2", (-1e3, 1e3), (0.0,)))

    def starts(self, data, space):
        """Variable projection over an (s2, ds) grid: linear least squares for (a2, a3, b2)."""
        if self._grid:
            return Law.starts(self, data, space)
        x, z = self.scaled(data.X["T"]), self.target_to_model(data.y, data.X)
        out = []
        for s2 in np.linspace(-2.0, 1.5, 15):
            for ds in (0.1, 0.3, 0.6, 1.0, 1.5, 2.5):
                basis = np.column_stack([x**s2, x ** (s2 + ds), np.ones_like(x)])
                (a2, a3, b2), *_ = np.linalg.lstsq(basis, z, rcond=None)
                out.append((a2, s2, a3, ds, b2))
        return np.array(out)

    def forward(self, theta, design):
        x = self.scaled(design["T"])[None]
        a2, s2, a3, ds, b2 = (theta[:, j, None] for j in range(5))
        return a2 * x**s2 + a3 * x ** (s2 + ds) + b2

    def derived(self, p):
        return {"s3": np.asarray(p["s2"]) + np.asarray(p["ds"])}


def _col_or_value(df: pd.DataFrame, spec: float | str, role: str) -> float:
    if isinstance(spec, str):
        v = np.unique(numeric_column(df, spec, role=role))
        if v.size != 1:
            raise InvalidInputError(f"{role} column {spec!r} must hold one value (the base model's loss); "
                                    f"found {v.size} distinct values")
        return float(v[0])
    if not np.isfinite(spec):
        raise InvalidInputError(f"{role} must be a finite number or a column name, got {spec!r}")
    return float(spec)


@dataclass
class CMRFit:
    """Result of :meth:`CMR.fit`. ``table``: the critical ratio per budget with its CI."""

    cmr: CMR
    base_general: float
    general_fits: dict[float, Fit]
    ratio_fits: dict[float, Fit]
    table: pd.DataFrame
    domain_fits: dict[float, Fit] = field(default_factory=dict)
    rcmr: Fit | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tolerance_level(self) -> float:
        return self.cmr.tolerance_level(self.base_general)

    def critical_ratio(self, T: float) -> float:
        """The critical mixture ratio at ``T`` tokens (from the per-ratio loss-change laws, refitted ratio law)."""
        return self.cmr._cmr_at(self.general_fits, self.base_general, float(T))[0]

    def feasible(self, T: float) -> list[float]:
        """Fitted ratios whose predicted general loss at ``T`` tokens stays within the tolerance."""
        return [r for r, f in self.general_fits.items()
                if self.base_general + float(f.predict(T=[T])[0]) <= self.tolerance_level]

    def t0(self, lam: float, R: float) -> float:
        """``T0(lambda)`` for ratio ``R``: the first minimum over log T of ``dLdom + lambda*(dLgen - eps_abs)``;
        NaN if it keeps decreasing over [T_min/10, T_max*10]."""
        if R not in self.domain_fits:
            raise FitError(f"no domain-loss fit for ratio {R}; fit CMR with domain=<column> (ratios: "
                           f"{sorted(self.domain_fits)})")
        t = self.general_fits[R].data.X["T"]
        grid = np.geomspace(t.min() / 10, t.max() * 10, 4001)
        eps_abs = self.tolerance_level - self.base_general
        F = self.domain_fits[R].predict(T=grid) + lam * (self.general_fits[R].predict(T=grid) - eps_abs)
        inner = np.flatnonzero((F[1:-1] <= F[:-2]) & (F[1:-1] < F[2:])) + 1
        return float(grid[inner[0]]) if inner.size else float("nan")

    def summary(self) -> str:
        c = self.cmr
        tol = f"{c.eps:g} x base" if c.tolerance == "relative" else f"+{c.eps:g}"
        any_fit = next(iter(self.general_fits.values()), None)
        units = any_fit.law.units() if any_fit is not None else ""
        lines = [f"CMR: general loss tolerance {tol} (base {self.base_general:.5g} -> level "
                 f"{self.tolerance_level:.5g}); ratios {sorted(self.general_fits)}"]
        lines += [f"units: {units}; budgets T in the table are raw tokens"] if units else []
        lines += [
                 "critical mixture ratio by token budget:", self.table.to_string(index=False,
                                                                               float_format=lambda v: f"{v:.5g}")]
        if self.rcmr is not None:
            lines += ["", self.rcmr.summary()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "pplaw.cmr", "eps": self.cmr.eps, "tolerance": self.cmr.tolerance,
                "base_general": self.base_general, "table": self.table.to_dict("list"),
                "general_fits": {str(k): f.to_dict() for k, f in self.general_fits.items()},
                "domain_fits": {str(k): f.to_dict() for k, f in self.domain_fits.items()},
                "rcmr": None if self.rcmr is None else self.rcmr.to_dict(), "notes": self.notes}

    def to_json(self, path=None) -> str:
        """The CMR result as strict JSON (each component fit in :meth:`Fit.to_dict` form); atomic when ``path``."""
        import json

        from pplaw._atomic import atomic_write_text, jsonable

        text = json.dumps(jsonable(self.to_dict()), indent=2, allow_nan=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def plot(self, path):
        from pplaw.laws.plotting import plot_cmr

        return plot_cmr(self, path)


class CMR:
    """Chain the CMR laws: per-ratio general (and domain) loss-change curves -> the ratio law at each budget ->
    the critical mixture ratio per budget (bootstrap CI) -> ``R_CMR(T)``. See the module docstring."""

    def __init__(self, eps: float = 0.05, tolerance: str = "relative", t_unit: float | str = "auto",
                 polish: int = 4):
        if tolerance not in ("relative", "absolute"):
            raise InvalidInputError(f"tolerance must be 'relative' or 'absolute', got {tolerance!r}")
        if not (np.isfinite(eps) and eps >= 0):
            raise InvalidInputError(f"eps must be >= 0, got {eps!r}")
        self.eps, self.tolerance, self.t_unit = float(eps), tolerance, t_unit
        self.polish = int(polish)  # the profiled start grids put the best starts on the valley floor already

    def tolerance_level(self, base: float) -> float:
        return base * (1 + self.eps) if self.tolerance == "relative" else base + self.eps

    def _critical(self, ratios: np.ndarray, lg: np.ndarray, base: float,
                  warm: np.ndarray | None) -> tuple[float, Fit | None, np.ndarray]:
        """Fit the ratio law to general losses ``lg`` at ratios ``ratios`` (> 0) and return the largest ratio in
        (0, 1] within tolerance, with the fit (full grid) or just theta (warm-started refit)."""
        if ratios.size < 4:
            raise FitError(f"the ratio law L(R) has 3 parameters and needs >= 4 distinct ratios R > 0; got "
                           f"{ratios.tolist()}")
        law = RatioLaw()
        opts = FitOptions.make(law, polish=self.polish)
        fit = None
        if warm is None:
            fit = fit_data(law, Data({"R": ratios}, lg, "general_loss", {"R": "R"}), opts, strict=False)
            theta = fit.theta
        else:
            sol = solve(Problem(law, {"R": ratios}, lg, opts), warm[None], polish=None)
            if not sol.success:
                raise FitError(f"ratio law refit did not converge ({sol.message})")
            theta = sol.theta
        grid = np.linspace(1e-4, 1.0, 2000)
        ok = law.forward(theta[None], {"R": grid})[0] <= self.tolerance_level(base)
        return (float(grid[ok].max()) if ok.any() else 0.0), fit, theta

    def _cmr_at(self, gfits: Mapping[float, Fit], base: float, T: float) -> tuple[float, Fit | None, np.ndarray]:
        ratios = np.array(sorted(r for r in gfits if r > 0))
        lg = np.array([base + float(gfits[r].predict(T=[T])[0]) for r in ratios])
        return self._critical(ratios, lg, base, None)

    def fit(self, table: Any, *, general: str, T: str = "T", R: str = "R", base_general: float | str,
            domain: str | None = None, base_domain: float | str | None = None, budgets: Any = None,
            group: str | None = None, bootstrap: int = 0, seed: int = 0, level: float = 0.95,
            progress: bool | None = None) -> CMRFit:
        """``general``/``domain``: loss columns; ``T``: tokens seen at each checkpoint; ``R``: domain ratio of the
        run; ``base_general``/``base_domain``: the base model's losses (numbers or columns), from which the loss
        changes are measured. ``budgets``: token budgets at which to report the critical ratio (default: 8
        log-spaced over the observed T). The bootstrap resamples runs (``group``) or checkpoints within each
        ratio, so every resample keeps every ratio; refits are warm-started."""
        df = to_frame(table)
        Tv, Rv = numeric_column(df, T, role="tokens (T)"), numeric_column(df, R, role="ratio (R)")
        if np.any((Rv < 0) | (Rv > 1)):
            raise InvalidInputError(f"ratio column {R!r} must lie in [0, 1]")
        if np.any(Tv <= 0):
            raise InvalidInputError(f"tokens column {T!r} must be > 0 (the laws take T^s)")
        base = _col_or_value(df, base_general, "base_general")
        gl = numeric_column(df, general, role="general loss") - base
        dl = None
        if domain is not None:
            if base_domain is None:
                raise InvalidInputError("domain= needs base_domain= (the base model's domain loss)")
            dl = numeric_column(df, domain, role="domain loss") - _col_or_value(df, base_domain, "base_domain")
        groups = None
        if group is not None:
            if group not in df.columns:
                raise MissingColumnError(f"group column {group!r} is not in the table; columns found: "
                                         f"{', '.join(map(str, df.columns))}")
            groups = df[group].astype(str).to_numpy()
        budgets = (np.geomspace(Tv.min(), Tv.max(), 8) if budgets is None
                   else np.atleast_1d(np.asarray(budgets, float)))
        if not np.all(np.isfinite(budgets) & (budgets > 0)):
            raise InvalidInputError("budgets must be finite token counts > 0")
        rows_of = {float(r): np.flatnonzero(Rv == r) for r in np.unique(Rv)}
        with single_thread():
            gfits = {r: self._fit1(GeneralLossChange(t_unit=self.t_unit), Data({"T": Tv[i]}, gl[i], general,
                                                                                 {"T": T}), f"general, R={r}")
                     for r, i in rows_of.items()}
            dfits = {} if dl is None else {
                r: self._fit1(DomainLossChange(t_unit=self.t_unit), Data({"T": Tv[i]}, dl[i], domain, {"T": T}),
                              f"domain, R={r}") for r, i in rows_of.items()}
            crit = [self._cmr_at(gfits, base, float(tb)) for tb in budgets]
            draws = None
            if bootstrap:
                draws = self._bootstrap(rows_of, groups, Tv, gl, gfits, base, budgets, [c[2] for c in crit],
                                        int(bootstrap), seed, progress)
        tab = pd.DataFrame({"T": budgets, "cmr": [c[0] for c in crit]})
        notes = []
        n_ratios = int(sum(r > 0 for r in gfits))
        if n_ratios - 3 <= 2:
            notes.append(f"SMALL SAMPLE: the ratio law L(R) = alpha*R^s + beta has 3 parameters and is fitted to "
                         f"{n_ratios} ratios at each budget (n - P = {n_ratios - 3}): the critical ratios rest on "
                         "an almost exactly determined curve, their CIs (which resample checkpoints within each "
                         "ratio, never the ratios) do not include that, and no ratio can be held out to validate "
                         "it" + ("" if n_ratios - 3 > 1 else " (leave-one-ratio-out leaves 3 points: an exact fit)"))
        if draws is not None:
            lo, hi = percentile_ci(draws, level)
            tab["lo"], tab["hi"] = lo, hi
            failed = int(np.isnan(draws).any(axis=1).sum())
            if failed:
                notes.append(f"{failed} of {len(draws)} bootstrap resamples failed and were left out of the CIs")
        inside = (tab["cmr"] > 0) & (tab["cmr"] < 1)
        rcmr = None
        if inside.sum() >= 4:
            d = Data({"T": tab.loc[inside, "T"].to_numpy()}, tab.loc[inside, "cmr"].to_numpy(), "cmr", {"T": "T"})
            rcmr = fit_data(CMRLaw(t_unit=self.t_unit), d, FitOptions.make(CMRLaw()), strict=False)
        else:
            notes.append("R_CMR(T) not fitted: it needs >= 4 budgets whose critical ratio lies strictly inside "
                         "(0, 1) (saturated budgets carry no information on the curve)")
        for t, c in zip(budgets, crit):
            if c[1] is not None and not c[1].solution.success:
                notes.append(f"the ratio law at T={t:.4g} did not converge ({c[1].solution.message}); treat its "
                             "critical ratio with suspicion")
        if rcmr is not None and not rcmr.solution.success:
            notes.append(f"R_CMR(T) did not converge ({rcmr.solution.message})")
        return CMRFit(self, base, gfits, {float(t): c[1] for t, c in zip(budgets, crit)}, tab, dfits, rcmr, notes)

    def _fit1(self, law: Law, data: Data, what: str) -> Fit:
        try:
            return fit_data(law, data, FitOptions.make(law, polish=self.polish))
        except FitError as err:
            raise FitError(f"CMR ({what}): {err}") from err

    def _bootstrap(self, rows_of, groups, Tv, gl, gfits, base, budgets, ratio_thetas, n, seed, progress):
        """Warm-started refits of every general-loss curve on resampled runs/checkpoints, then the critical
        ratio per budget -> draws ``(n, len(budgets))``, NaN where a resample failed."""
        from pplaw.laws.solver import _progress

        rng = np.random.default_rng(seed)
        draws = np.full((n, len(budgets)), np.nan)
        ratios = np.array(sorted(r for r in gfits if r > 0))
        with _progress(n, "bootstrap CMR", progress) as bar:
            for b in range(n):
                try:
                    lg = np.empty((ratios.size, len(budgets)))
                    for j, r in enumerate(ratios):
                        idx = rows_of[r]
                        runs = None if groups is None else np.unique(groups[idx])
                        if runs is not None and runs.size > 1:  # whole runs of this ratio
                            idx = np.concatenate([idx[groups[idx] == g] for g in rng.choice(runs, size=runs.size)])
                        else:  # checkpoints within the ratio's curve
                            idx = rng.choice(idx, size=idx.size)
                        law = gfits[r].law  # the resolved law: same token unit as the warm start
                        if np.unique(Tv[idx]).size < 2:
                            raise FitError("degenerate resample")
                        sol = solve(Problem(law, {"T": Tv[idx]}, gl[idx], gfits[r].options), gfits[r].theta[None],
                                    polish=None)
                        if not sol.success:
                            raise FitError(sol.message)
                        lg[j] = base + law.forward(sol.theta[None], {"T": budgets})[0]
                    draws[b] = [self._critical(ratios, lg[:, k], base, ratio_thetas[k])[0]
                                for k in range(len(budgets))]
                except FitError:
                    pass  # a failed resample stays NaN and is left out of the CI
                bar.update(1)
        return draws
