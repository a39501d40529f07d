"""The result of a fit: parameters, bootstrap CIs, predictions with intervals, metrics, summary, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError, SerializationError
from pplaw._atomic import atomic_write_text, jsonable
from pplaw.laws.data import Data, prediction_inputs
from pplaw.laws.registry import REGISTRY
from pplaw.laws.solver import FitOptions, Problem, Solution, predict_target

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.engine import Law

FORMAT, VERSION = "pplaw.fit", 1
_WIDE_CI = 2.0  # a CI wider than +-100% of the value is called out in the summary
_WIDE_RATIO = 10.0  # ... and for positive (log-fitted) scale parameters, a CI spanning more than 10x


def floats(values: Any) -> np.ndarray:
    """A JSON list that :func:`pplaw._atomic.jsonable` wrote (None for non-finite) -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def percentile_ci(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring failed (NaN) draws."""
    q = 100 * (1 - level) / 2
    with np.errstate(all="ignore"):
        return np.nanpercentile(draws, q, axis=0), np.nanpercentile(draws, 100 - q, axis=0)


class Fit:
    """A fitted law. Build it with ``Law().fit(...)`` or :meth:`Fit.from_json`.

    ``params`` (values by name), ``ci`` (percentile CIs of every parameter and derived quantity, empty without
    bootstrap), ``derived``, ``metrics`` (``r2``, ``rmse``, ``mape`` in % and ``mae`` on the target's own scale;
    ``objective``: the summed Huber/MSE loss in the fitting space), ``warnings`` (bounds hit, wide CIs,
    unconverged or failed refits, unidentifiable designs).
    """

    def __init__(self, *, law: Law, data: Data, theta: np.ndarray, options: FitOptions, solution: Solution,
                 draws: np.ndarray | None = None, n_failed: int = 0, seed: int | None = 0, level: float = 0.95,
                 warnings: list[str] | None = None, extras: dict | None = None):
        self.law, self.data, self.options, self.solution = law, data, options, solution
        self.theta = np.asarray(theta, float)
        self.draws = None if draws is None else np.asarray(draws, float)  # (B, P) optimiser scale, NaN=failed
        self.n_failed, self.seed, self.level = int(n_failed), seed, float(level)
        self._fit_warnings = list(warnings or [])
        self.extras: dict[str, Any] = dict(extras or {})
        self.problem = Problem(law, data.X, law.target_to_model(data.y, data.X), options)
        self.fitted = self._predict_X(data.X)
        self.metrics = self._metrics()
        self._notes: dict[str, list[str]] = {}  # per-parameter flags shown in the summary table
        self.warnings = self._fit_warnings + self._diagnose()

    # ------------------------------------------------------------------ basics
    @property
    def target(self) -> str:
        return self.data.target

    @property
    def columns(self) -> dict[str, str]:
        return dict(self.data.columns)

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.law.public(self.theta).items()}

    @property
    def derived(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.law.derived(self.law.public(self.theta)).items()}

    @property
    def ci_meaningful(self) -> bool:
        """False when the bootstrap CIs cannot be trusted (``n - P <= 2`` or many resamples with no more distinct
        design points than free parameters); ``extras["ci_note"]`` says why."""
        return bool(self.extras.get("ci_meaningful", True))

    @property
    def n_boot(self) -> int:
        return 0 if self.draws is None else int(self.draws.shape[0])

    def param_draws(self) -> pd.DataFrame:
        """Successful bootstrap draws of every parameter and derived quantity, one row per resample."""
        if self.draws is None:
            return pd.DataFrame(columns=list(self.params) + list(self.derived))
        ok = self.draws[np.all(np.isfinite(self.draws), axis=1)]
        pub = self.law.public(ok)
        return pd.DataFrame({**pub, **self.law.derived(pub)})

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        draws = self.param_draws()
        if draws.empty:
            return {}
        lo, hi = percentile_ci(draws.to_numpy(float), self.level)
        return {k: (float(a), float(b)) for k, a, b in zip(draws.columns, lo, hi)}

    @property
    def residual_sd(self) -> float:
        """Residual standard deviation in the fitting space (log or linear), with n - P degrees of freedom."""
        r = self.problem.residuals(self.theta)
        return float(np.sqrt(np.sum(r * r) / max(self.data.n - self.law.n_free, 1)))

    # ------------------------------------------------------------------ prediction
    def inputs(self, data: Any = None, **arrays: Any) -> dict[str, np.ndarray]:
        """Law inputs from a table (columns as at fit time, or named like the variables) or from arrays."""
        return prediction_inputs(self.law, data, arrays, self.columns)

    def _predict_X(self, X: Mapping[str, np.ndarray], theta: np.ndarray | None = None) -> np.ndarray:
        return predict_target(self.law, X, self.theta if theta is None else theta)

    def ok_draws(self) -> np.ndarray:
        """The successful bootstrap draws ``(B, P)`` on the optimiser scale (empty without a bootstrap)."""
        if self.draws is None:
            return np.empty((0, self.theta.size))
        return self.draws[np.all(np.isfinite(self.draws), axis=1)]

    def predict_draws(self, data: Any = None, *, theta: np.ndarray | None = None, **arrays: Any) -> np.ndarray:
        """The target predicted under every successful bootstrap draw: ``(B, n)`` (``B = 0`` without a
        bootstrap). ``theta`` ``(K, P)`` (optimiser scale) predicts under those parameter sets instead. Inputs as
        in :meth:`predict`."""
        X = self.inputs(data, **arrays)
        th = self.ok_draws() if theta is None else np.atleast_2d(np.asarray(theta, float))
        n = next(iter(X.values())).size if X else 0
        if th.shape[0] == 0:
            return np.empty((0, n))
        return np.atleast_2d(self._predict_X(X, th))

    def predict(self, data: Any = None, *, interval: str | None = None, level: float | None = None,
                n_noise: int = 20, seed: int | None = None, **arrays: Any) -> np.ndarray | pd.DataFrame:
        """Predict the target. ``interval="confidence"`` (parameter uncertainty: bootstrap draws) or
        ``"prediction"`` (draws plus residual noise in the fitting space, Gaussian with the residual SD) returns
        a DataFrame with ``prediction``, ``lo``, ``hi``; otherwise an array."""
        X = self.inputs(data, **arrays)
        pred = self._predict_X(X)
        if interval is None:
            return pred
        if interval not in ("confidence", "prediction"):
            raise InvalidInputError(f"interval must be 'confidence', 'prediction' or None, got {interval!r}")
        ok = None if self.draws is None else self.draws[np.all(np.isfinite(self.draws), axis=1)]
        if ok is None or len(ok) < 2:
            raise FitError("no bootstrap draws: fit with bootstrap > 0 to get prediction/confidence intervals")
        design = self.law.design(X)
        with np.errstate(all="ignore"):
            fz = self.law.values(ok, design, self.options.space)  # (B, n) fitting space
        if interval == "prediction":
            rng = np.random.default_rng(self.seed if seed is None else seed)
            noise = rng.normal(0.0, self.residual_sd, size=(n_noise,) + fz.shape)
            fz = (fz[None] + noise).reshape(-1, fz.shape[1])
        z = np.exp(fz) if self.options.space == "log" else fz
        ys = self.law.model_to_target(z, X)
        lo, hi = percentile_ci(ys, self.level if level is None else level)
        return pd.DataFrame({"prediction": pred, "lo": lo, "hi": hi})

    # ------------------------------------------------------------------ metrics and diagnostics
    def _metrics(self) -> dict[str, float]:
        y, p = self.data.y, self.fitted
        err = p - y
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        with np.errstate(all="ignore"):
            mape = float(np.mean(np.abs(err) / np.abs(y)) * 100)
        return {
            "n": self.data.n, "n_params": self.law.n_free,
            "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
            "rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "mape": mape,
            "objective": float(self.solution.fun),
        }

    def _diagnose(self) -> list[str]:
        out = []
        for k in self.law.fixed:
            self._notes.setdefault(k, []).append("FIXED")
        for j, p in enumerate(self.law.params):
            lo, hi = p.bounds
            if p.name in self.law.fixed:
                continue
            span = (hi - lo) if np.isfinite(hi - lo) else max(abs(self.theta[j]), 1.0)
            for side, b in (("lower", lo), ("upper", hi)):
                if np.isfinite(b) and abs(self.theta[j] - b) <= 1e-6 * span:
                    shown = f"log {p.name} = {b:.6g}" if p.log else f"{p.name} = {b:.6g}"
                    self._notes.setdefault(p.name, []).append("AT BOUND")
                    out.append(f"parameter {p.name} is at its {side} bound ({shown}): the data push it there, "
                               "so its value is not a free estimate")
        if self.law.nonparametric:
            return out + self._diagnose_smoother()
        try:
            _, jac = self.law.jacobian(self.theta, self.problem.design, self.options.space)
            jac = jac[:, self.law.free]
            norms = np.linalg.norm(jac, axis=0)
            sv = np.linalg.svd(jac / np.where(norms > 0, norms, 1.0), compute_uv=False)
            if norms.min() == 0 or sv[-1] < 1e-8 * sv[0]:
                out.append("the design does not identify every parameter (the scaled Jacobian is rank-deficient);"
                           " vary the inputs more or fix parameters through bounds")
        except (np.linalg.LinAlgError, ValueError):
            pass
        if self.draws is not None and self.n_boot:
            if self.n_failed:
                out.append(f"{self.n_failed} of {self.n_boot} bootstrap refits failed (degenerate resample or "
                           "no convergence) and were left out of the CIs")
            ci, params = self.ci, {**self.params, **self.derived}
            logs = {p.name for p in self.law.params if p.log}
            for k, (lo, hi) in ci.items():
                v = params.get(k, np.nan)
                if not np.isfinite(v) or k in self.law.fixed:
                    continue
                if k in logs:  # positive scale parameters: judge the CI by its ratio, not its width
                    wide, what = hi > _WIDE_RATIO * lo, f"spans more than a factor {_WIDE_RATIO:g}"
                else:
                    wide, what = (hi - lo) > _WIDE_CI * max(abs(v), 1e-12), "is wider than +-100% of its value"
                if wide:
                    self._notes.setdefault(k, []).append("WIDE CI")
                    out.append(f"the {100 * self.level:.0f}% CI of {k} [{lo:.4g}, {hi:.4g}] {what} ({v:.4g}): the "
                               "data do not pin it down")
        return out

    def _diagnose_smoother(self) -> list[str]:
        """One summary line for a smoother's knot values (instead of one line per parameter)."""
        if self.draws is None or not self.n_boot:
            return []
        ci, params = self.ci, self.params
        wide = [k for k, (lo, hi) in ci.items() if k in params and (hi - lo) > _WIDE_CI * max(abs(params[k]), 1e-12)]
        for k in wide:
            self._notes.setdefault(k, []).append("WIDE CI")
        if not wide:
            return []
        return [f"the {100 * self.level:.0f}% CIs of {len(wide)} of {len(params)} knot values are wider than +-100% "
                f"of their value (e.g. {wide[0]}): the regimes there are pinned by their neighbours, not by runs"]

    def validate(self, holdout: Any = "loo", **kwargs: Any):
        """Hold-out validation: see :func:`pplaw.laws.validation.validate`."""
        from pplaw.laws.validation import validate

        return validate(self, holdout, **kwargs)

    def optimum(self, **kwargs: Any) -> Any:
        """The law's optimum (PerplexityLaw: the best (mu, sigma) in the realisable region; Chinchilla: the
        compute-optimal N, D), with a bootstrap CI."""
        return self.law.optimum(self, **kwargs)

    def plot(self, path: str | Path, **kwargs: Any) -> Path:
        """A PNG with predicted vs observed and the law's own view (contour, loss vs D...)."""
        from pplaw.laws.plotting import plot_fit

        return plot_fit(self, path, **kwargs)

    # ------------------------------------------------------------------ summary
    def summary(self) -> str:
        law, d, opts, sol = self.law, self.data, self.options, self.solution
        cols = ", ".join(f"{v}={c!r}" for v, c in d.columns.items())
        runs = f" ({d.n_units} runs by {d.group!r})" if d.groups is not None else ""
        lines = [law.describe()] + ([f"units: {law.units()}"] if law.units() else []) + [
                 f"target {d.target!r} ~ {cols}; {d.n} rows{runs}",
                 (f"fit: {sol.message}" if law.nonparametric else
                  f"fit: {opts.loss}" + (f"(delta={opts.delta:g})" if opts.loss == "huber" else "")
                  + f" summed over {opts.space}-space residuals; {sol.n_starts} starts, {sol.n_polished} polished "
                  f"with L-BFGS-B: " + ("converged" if sol.success else f"NOT CONVERGED ({sol.message})"))]
        if self.n_boot:
            unit = ("regimes" if law.nonparametric else "runs") if d.groups is not None or law.nonparametric \
                else "rows"
            lines.append(f"bootstrap: {self.n_boot} resamples of {unit} (seed {self.seed}, {self.n_failed} failed); "
                         f"{100 * self.level:.0f}% percentile CIs"
                         + ("" if self.ci_meaningful else f" -- NOT MEANINGFUL ({self.extras.get('ci_note', '')})"))
        else:
            lines.append("bootstrap: none (no CIs; fit with bootstrap=200 for them)")
        ci = self.ci
        lines.append("")
        head = "CI" if self.ci_meaningful or not ci else "CI (NOT MEANINGFUL)"
        lines.append(f"  {'name':<12} {'value':>12}   {head:<28} note")

        def row(k: str, v: float) -> str:
            c = f"[{ci[k][0]:.5g}, {ci[k][1]:.5g}]" if k in ci else "-"
            note = "; ".join(self._notes.get(k, []))
            return f"  {k:<12} {v:>12.6g}   {c:<28} {note}"

        lines += [row(k, v) for k, v in self.params.items()]
        if self.derived:
            lines.append("  derived:")
            lines += [row(k, v) for k, v in self.derived.items()]
        m = self.metrics
        lines.append("")
        lines.append(f"metrics: R^2 {m['r2']:.5f} | RMSE {m['rmse']:.5g} | MAE {m['mae']:.5g} | MAPE "
                     f"{m['mape']:.4g}% | objective {m['objective']:.4g} ({opts.loss}, summed)")
        for key, val in self.extras.items():
            if isinstance(val, str) and key != "ci_note":
                lines.append(f"{key}: {val}")
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  ! {w}" for w in self.warnings]
        return "\n".join(lines)

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"<Fit {type(self.law).__name__} n={self.data.n} {ps}>"

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d, s = self.data, self.solution
        return jsonable({
            "format": FORMAT, "version": VERSION, "law": self.law.name, "law_config": self.law.config(),
            "formula": self.law.formula, "target": d.target, "columns": d.columns, "group": d.group,
            "options": self.options.to_dict(), "theta": self.theta, "params": self.params, "derived": self.derived,
            "ci": {k: list(v) for k, v in self.ci.items()}, "level": self.level, "seed": self.seed,
            "bootstrap": {"n": self.n_boot, "failed": self.n_failed,
                          "draws": None if self.draws is None else self.draws},
            "solution": {"fun": s.fun, "success": s.success, "message": s.message, "n_starts": s.n_starts,
                         "n_polished": s.n_polished, "nit": s.nit},
            "metrics": self.metrics, "fit_warnings": self._fit_warnings, "warnings": self.warnings,
            "data": {"X": d.X, "y": d.y, "groups": None if d.groups is None else list(d.groups)},
            "extras": self.extras,
        })

    def to_json(self, path: str | Path | None = None) -> str:
        """The fit as JSON (strict: non-finite numbers are null); written atomically when ``path`` is given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | Path | Mapping[str, Any]) -> Fit:
        """Rebuild a fit from :meth:`to_json` output: a JSON string, a path to a file, or the parsed dict."""
        import pplaw.laws  # noqa: F401  (registers the laws)

        if isinstance(source, Mapping):
            obj = dict(source)
        else:
            text = str(source)
            if not text.lstrip().startswith("{"):
                p = Path(text)
                if not p.is_file():
                    raise SerializationError(f"fit file {text!r} does not exist")
                text = p.read_text(encoding="utf-8")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise SerializationError(f"not a valid fit JSON: {err}") from err
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise SerializationError(f"not a pplaw fit (expected format {FORMAT!r})")
        if obj.get("version") != VERSION:
            raise SerializationError(f"fit JSON version {obj.get('version')!r} is not supported (expected {VERSION})")
        try:
            if obj["law"] not in REGISTRY:
                raise SerializationError(f"fit JSON names unknown law {obj['law']!r}")
            law = REGISTRY[obj["law"]](**obj["law_config"])
            raw = obj["data"]
            groups = None if raw.get("groups") is None else np.array(raw["groups"], dtype=str)
            data = Data({k: floats(v) for k, v in raw["X"].items()}, floats(raw["y"]), obj["target"],
                        dict(obj["columns"]), groups, obj.get("group"))
            o = obj["options"]
            opts = FitOptions(o["space"], o["loss"], float(o["delta"]), o["polish"], int(o["maxiter"]))
            s = obj["solution"]
            sol = Solution(floats(obj["theta"]), float(s["fun"]), bool(s["success"]), s["message"],
                           int(s["n_starts"]), int(s["n_polished"]), int(s["nit"]))
            b = obj["bootstrap"]
            draws = None if b.get("draws") is None else np.array(
                [floats(r) for r in b["draws"]], dtype=float).reshape(-1, sol.theta.size)
            return cls(law=law, data=data, theta=sol.theta, options=opts, solution=sol, draws=draws,
                       n_failed=int(b.get("failed", 0)), seed=obj.get("seed"), level=float(obj["level"]),
                       warnings=list(obj.get("fit_warnings", [])), extras=obj.get("extras") or {})
        except (KeyError, TypeError, ValueError) as err:
            raise SerializationError(f"fit JSON is incomplete or corrupt: {type(err).__name__}: {err}") from err
