"""Downstream accuracy laws: the direct forms of Krajewski et al. (arXiv 2512.08894) and the two-stage baseline.

Accuracy is first normalised for chance, ``Q = (acc - chance) / (1 - chance)``, and the laws model ``-log Q``:

- ``form="compute"``        ``-log Q = A * C^-alpha``            at a fixed tokens-per-parameter ratio; fitted by
  least squares in log-log space (OLS, as in the paper; ``loss="mse"``, solved in closed form for the start)
- ``form="params_tokens"``  ``-log Q = A * N^-alpha + B * D^-beta`` across tokens-per-parameter ratios
- ``form="ceiling"``        ``-log Q = A * C^-alpha + E``        (accuracy saturates below 1: ``Q -> exp(-E)``)
- ``form="pass_at_k"``      ``log(-log Q) = a + alpha*log C + beta*log k + delta*log C*log k``  (OLS; note the
  paper's sign convention: ``alpha`` is negative when accuracy improves with compute)

Choices made here: the two nonlinear forms use the project's default Huber loss (delta=1e-3) on log residuals;
``chance`` is a number or a column name (per-row chance levels); accuracies at or below chance, or equal to 1,
are rejected (``-log Q`` is undefined or 0 there) rather than clipped.

:class:`TwoStage` is the baseline the paper compares against: a loss law (default ``L = E + A*C^-alpha``), then a
sigmoid from loss to accuracy, ``acc = chance + (ceiling - chance) / (1 + exp(k*(L - L0)))``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import InvalidInputError, SerializationError
from pplaw._atomic import atomic_write_text
from pplaw.laws.engine import Law, LSELaw, Param
from pplaw.laws.registry import register
from pplaw.laws.fitting import fit_data
from pplaw.laws.solver import single_thread
from pplaw.laws.result import Fit, percentile_ci
from pplaw.laws.validation import Validation, error_metrics, holdout_mask

FORMS = {"compute": ("C",), "params_tokens": ("N", "D"), "ceiling": ("C",), "pass_at_k": ("C", "k")}


def _chance(law: Any, X: Mapping[str, np.ndarray]) -> Any:
    return X["chance"] if isinstance(law.chance, str) else law.chance


@register
class DownstreamLaw(LSELaw):
    """Direct law for chance-normalised accuracy; see the module docstring for the forms."""

    name = "downstream"

    def __init__(self, form: str = "compute", chance: float | str = 0.0, *, grid=None, bounds=None):
        if form not in FORMS:
            raise InvalidInputError(f"form must be one of {sorted(FORMS)}, got {form!r}")
        if not isinstance(chance, str) and not (np.isfinite(chance) and 0 <= chance < 1):
            raise InvalidInputError(f"chance must be in [0, 1) or a column name, got {chance!r}")
        self.form, self.chance = form, chance
        self.variables = FORMS[form] + (("chance",) if isinstance(chance, str) else ())
        self.positive = FORMS[form]
        self.default_loss = "mse" if form in ("compute", "pass_at_k") else "huber"
        super().__init__(grid=grid, bounds=bounds)

    @property
    def formula(self) -> str:  # type: ignore[override]
        return {"compute": "-log Q = A*C^-alpha", "params_tokens": "-log Q = A*N^-alpha + B*D^-beta",
                "ceiling": "-log Q = A*C^-alpha + E",
                "pass_at_k": "log(-log Q) = a + alpha*log C + beta*log k + delta*log C*log k"}[self.form] + (
            ", Q = (acc - chance)/(1 - chance)")

    def options(self) -> dict[str, Any]:
        return {"form": self.form, "chance": self.chance}

    def design_variables(self) -> tuple[str, ...]:
        return FORMS[self.form]

    def check_inputs(self, X, columns) -> None:
        if "chance" in X and np.any((X["chance"] < 0) | (X["chance"] >= 1)):
            raise InvalidInputError(f"chance column {columns['chance']!r} must lie in [0, 1)")

    def declare(self) -> tuple[Param, ...]:
        if self.form == "compute":
            return (Param("A", (-300.0, 300.0), (0.0, 5.0, 10.0), log=True), Param("alpha", (-10.0, 10.0), (0.1,)))
        if self.form == "ceiling":
            return (Param("E", (-20.0, 5.0), (-2.0,), log=True),
                    Param("A", (-50.0, 300.0), (0.0, 5.0, 10.0, 20.0), log=True),
                    Param("alpha", (0.0, 10.0), (0.05, 0.1, 0.3, 0.6)))
        if self.form == "params_tokens":
            return (Param("A", (-50.0, 300.0), (0.0, 5.0, 10.0, 20.0), log=True),
                    Param("alpha", (0.0, 10.0), (0.05, 0.2, 0.5)),
                    Param("B", (-50.0, 300.0), (0.0, 5.0, 10.0, 20.0), log=True),
                    Param("beta", (0.0, 10.0), (0.05, 0.2, 0.5)))
        return (Param("a", (-300.0, 300.0), (0.0,)), Param("alpha", (-10.0, 10.0), (0.0,)),
                Param("beta", (-10.0, 10.0), (0.0,)), Param("delta", (-5.0, 5.0), (0.0,)))

    def terms(self, X):
        n = next(iter(X.values())).size
        z, o = np.zeros(n), np.ones(n)
        if self.form == "compute":
            return [(np.column_stack([o, -np.log(X["C"])]), None)]
        if self.form == "ceiling":
            return [(np.column_stack([o, z, z]), None), (np.column_stack([z, o, -np.log(X["C"])]), None)]
        if self.form == "params_tokens":
            return [(np.column_stack([o, -np.log(X["N"]), z, z]), None),
                    (np.column_stack([z, z, o, -np.log(X["D"])]), None)]
        lc, lk = np.log(X["C"]), np.log(X["k"])
        return [(np.column_stack([o, lc, lk, lc * lk]), None)]

    def starts(self, data, space):
        grid = super().starts(data, space)
        if self.form in ("compute", "pass_at_k") and space == "log":
            # one power-law term in log space: least squares is linear -> the exact OLS solution as a start
            phi = self.terms(data.X)[0][0]
            ols = np.linalg.lstsq(phi, np.log(self.target_to_model(data.y, data.X)), rcond=None)[0]
            grid = np.vstack([ols, grid])
        if self.form == "ceiling":
            zmin = float(np.min(self.target_to_model(data.y, data.X)))
            e = self._grid.get("E", np.log(zmin * np.array([0.1, 0.5, 0.9])))
            grid = np.vstack([np.column_stack([np.full(len(grid), v), grid[:, 1:]]) for v in e])
        return grid

    def target_to_model(self, y, X):
        ch = _chance(self, X)
        with np.errstate(all="ignore"):
            return -np.log((y - ch) / (1 - ch))

    def model_to_target(self, z, X):
        ch = _chance(self, X)
        return ch + (1 - ch) * np.exp(-z)

    def check_target(self, z, data, space):
        ch = _chance(self, data.X)
        q = (data.y - ch) / (1 - ch)
        bad = np.flatnonzero(~((q > 0) & (q < 1)))
        if bad.size:
            i = bad[0]
            raise InvalidInputError(
                f"target column {data.target!r} must lie strictly between chance and 1 for -log Q to be defined "
                f"and positive; {bad.size} row(s) do not (e.g. accuracy {data.y[i]:.6g} at row {i}, chance "
                f"{np.broadcast_to(ch, data.y.shape)[i]:.6g}); drop them or check the chance level"
            )


@register
class ComputeLossLaw(LSELaw):
    """``L(C) = E + A*C^-alpha``: loss vs training compute (the first stage of :class:`TwoStage`)."""

    name, formula = "compute_loss", "L = E + A*C^-alpha"
    variables = positive = ("C",)

    def declare(self):
        return (Param("E", (-20.0, 5.0), (-1.0, 0.0, 0.5), log=True), Param("A", (-20.0, 200.0), (0.0, 5.0, 10.0, 20.0),
                                                                             log=True),
                Param("alpha", (0.0, 5.0), (0.05, 0.1, 0.2, 0.4)))

    def data_grid(self, data, z):
        return {"E": tuple(np.log(float(np.min(z)) * np.array([0.3, 0.6, 0.9])))}

    def terms(self, X):
        n = X["C"].size
        z, o = np.zeros(n), np.ones(n)
        return [(np.column_stack([o, z, z]), None), (np.column_stack([z, o, -np.log(X["C"])]), None)]


@register
class LossToAccuracy(Law):
    """``acc = chance + (ceiling - chance) / (1 + exp(k*(L - L0)))``: the second stage of :class:`TwoStage`.
    Fitted by least squares on accuracy (linear space)."""

    name, formula = "loss_to_accuracy", "acc = chance + (ceiling - chance)/(1 + exp(k*(L - L0)))"
    variables, positive = ("L",), ()
    default_space, default_loss = "linear", "mse"

    def __init__(self, chance: float = 0.0, *, grid=None, bounds=None):
        if not (np.isfinite(chance) and 0 <= chance < 1):
            raise InvalidInputError(f"chance must be in [0, 1), got {chance!r}")
        self.chance = float(chance)
        super().__init__(grid=grid, bounds=bounds)

    def options(self):
        return {"chance": self.chance}

    def declare(self):
        c = self.chance
        return (Param("ceiling", (c + 1e-6, 1.0), tuple(c + (1 - c) * np.array([0.5, 0.8, 1.0]))),
                Param("k", (1e-3, 100.0), (1.0, 3.0, 10.0)), Param("L0", (-50.0, 50.0), (0.0,)))

    def data_grid(self, data, z):
        return {"L0": tuple(np.quantile(data.X["L"], [0.1, 0.5, 0.9]))}

    def forward(self, theta, design):
        L = design["L"][None]
        ceil, k, l0 = theta[:, 0, None], theta[:, 1, None], theta[:, 2, None]
        return self.chance + (ceil - self.chance) / (1 + np.exp(k * (L - l0)))


@dataclass
class TwoStageFit:
    """A loss law fitted on the runs, then a sigmoid from (observed) loss to accuracy."""

    loss_fit: Fit
    accuracy_fit: Fit

    def predict(self, data: Any = None, *, interval: str | None = None, **arrays: Any):
        """Accuracy through both stages; ``interval="confidence"`` pairs draw b of each stage (both bootstraps
        resample the same runs with the same seed)."""
        loss = self.loss_fit.predict(data, **arrays)
        acc = self.accuracy_fit.predict(L=loss)
        if interval is None:
            return acc
        if interval != "confidence":
            raise InvalidInputError("TwoStageFit supports interval='confidence' or None")
        lf, af = self.loss_fit, self.accuracy_fit
        if lf.draws is None or af.draws is None:
            from pplaw.exceptions import FitError

            raise FitError("no bootstrap draws: fit TwoStage with bootstrap > 0 for intervals")
        ok = np.all(np.isfinite(lf.draws), axis=1) & np.all(np.isfinite(af.draws), axis=1)
        X = lf.inputs(data, **arrays)
        ls = lf._predict_X(X, lf.draws[ok])  # (B, n)
        accs = np.stack([af._predict_X({"L": row}, th[None])[0] for row, th in zip(ls, af.draws[ok])])
        lo, hi = percentile_ci(accs, lf.level)
        return pd.DataFrame({"prediction": acc, "lo": lo, "hi": hi})

    @property
    def metrics(self) -> dict[str, float]:
        y = self.accuracy_fit.data.y
        return error_metrics(y, self.predict(pd.DataFrame(self.loss_fit.data.frame())))

    def validate(self, holdout: Any = "largest C") -> Validation:
        """Refit both stages without the held-out rows; error of the chained accuracy prediction on them."""
        mask, label = holdout_mask(self.loss_fit, holdout)
        if mask.all() or not mask.any():
            raise InvalidInputError(f"holdout {label!r} must leave rows both to fit and to test")
        keep, test = np.flatnonzero(~mask), np.flatnonzero(mask)
        with single_thread():
            lf = fit_data(self.loss_fit.law, self.loss_fit.data.take(keep), self.loss_fit.options)
            af = fit_data(self.accuracy_fit.law, self.accuracy_fit.data.take(keep), self.accuracy_fit.options)
        Xt = {v: x[test] for v, x in self.loss_fit.data.X.items()}
        pred = af._predict_X({"L": lf._predict_X(Xt)})
        obs = self.accuracy_fit.data.y[test]
        table = pd.DataFrame({"fold": 0, "row": test, "observed": obs, "predicted": pred, "error": pred - obs,
                              "pct_error": 100 * (pred - obs) / np.abs(obs)})
        return Validation(label, keep.size, test.size, error_metrics(obs, pred), table)

    def summary(self) -> str:
        m = self.metrics
        return (f"two-stage: loss law, then loss -> accuracy\n[stage 1]\n{self.loss_fit.summary()}\n\n[stage 2]\n"
                f"{self.accuracy_fit.summary()}\n\nchained accuracy: RMSE {m['rmse']:.4g} | MAPE {m['mape']:.3g}%")

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps({"format": "pplaw.two_stage", "loss_fit": self.loss_fit.to_dict(),
                           "accuracy_fit": self.accuracy_fit.to_dict()}, indent=2, allow_nan=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> TwoStageFit:
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text(encoding="utf-8")
        try:
            obj = json.loads(text)
            if obj.get("format") != "pplaw.two_stage":
                raise SerializationError("not a pplaw two-stage fit (format 'pplaw.two_stage')")
            return cls(Fit.from_json(obj["loss_fit"]), Fit.from_json(obj["accuracy_fit"]))
        except (json.JSONDecodeError, KeyError, AttributeError) as err:
            raise SerializationError(f"not a valid two-stage fit JSON: {err}") from err


class TwoStage:
    """Loss law then sigmoid: ``TwoStage(chance=0.25).fit(table, target="acc", loss="loss", C="flops")``."""

    def __init__(self, loss_law: Law | None = None, chance: float = 0.0):
        self.loss_law = ComputeLossLaw() if loss_law is None else loss_law
        self.chance = float(chance)

    def fit(self, table: Any, *, target: str, loss: str, group: str | None = None, bootstrap: int = 0,
            seed: int = 0, level: float = 0.95, progress: bool | None = None, **columns: str) -> TwoStageFit:
        common = dict(group=group, bootstrap=bootstrap, seed=seed, level=level, progress=progress)
        lf = self.loss_law.fit(table, target=loss, **common, **columns)
        af = LossToAccuracy(self.chance).fit(table, target=target, L=loss, **common)
        return TwoStageFit(lf, af)


def compare_direct_two_stage(table: Any, *, target: str, loss: str, C: str = "C", chance: float = 0.0,
                             holdout: Any = "largest C") -> pd.DataFrame:
    """Held-out accuracy error of the direct compute law vs the two-stage procedure on the same split."""
    direct = DownstreamLaw("compute", chance).fit(table, target=target, C=C)
    two = TwoStage(chance=chance).fit(table, target=target, loss=loss, C=C)
    rows = {"direct": direct.validate(holdout).metrics, "two_stage": two.validate(holdout).metrics}
    return pd.DataFrame(rows).T


__all__ = ["DownstreamLaw", "ComputeLossLaw", "LossToAccuracy", "TwoStage", "TwoStageFit",
           "compare_direct_two_stage"]
