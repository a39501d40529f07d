"""Hold-out validation: refit without some runs and measure the (extrapolation) error on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws.solver import Problem, predict_target, single_thread, solve, solve_data

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.result import Fit


def error_metrics(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, MAPE / max APE / signed bias in % of the observed value."""
    err = predicted - observed
    with np.errstate(all="ignore"):
        pct = 100 * err / np.abs(observed)
    return {"rmse": float(np.sqrt(np.nanmean(err**2))), "mae": float(np.nanmean(np.abs(err))),
            "mape": float(np.nanmean(np.abs(pct))), "max_ape": float(np.nanmax(np.abs(pct))),
            "bias_pct": float(np.nanmean(pct))}


@dataclass
class Validation:
    """Held-out errors. ``table``: one row per held-out point (observed, predicted, error, pct_error, fold)."""

    holdout: str
    n_train: int
    n_test: int
    metrics: dict[str, float]
    table: pd.DataFrame = field(repr=False)
    n_failed: int = 0

    def __str__(self) -> str:
        m = self.metrics
        s = (f"validation ({self.holdout}): {self.n_test} held-out point(s), trained on {self.n_train}: "
             f"RMSE {m['rmse']:.4g} | MAE {m['mae']:.4g} | MAPE {m['mape']:.3g}% | max APE {m['max_ape']:.3g}% "
             f"| bias {m['bias_pct']:+.3g}%")
        return s + (f" ({self.n_failed} fold(s) failed to refit)" if self.n_failed else "")

    def to_dict(self) -> dict[str, Any]:
        return {"holdout": self.holdout, "n_train": self.n_train, "n_test": self.n_test, "metrics": self.metrics,
                "n_failed": self.n_failed}


def holdout_mask(fit: Fit, holdout: Any) -> tuple[np.ndarray, str]:
    """Resolve ``holdout`` into a boolean mask over the fitted rows and a label.

    Accepted: ``"largest X"`` / ``"smallest X"`` (rows at the largest/smallest value of variable or column X,
    e.g. ``"largest D"``: an extrapolation test), a boolean array with one entry per row, or a callable taking
    the fitted rows as a DataFrame (user column names) and returning such an array.
    """
    data = fit.data
    n = data.n
    if isinstance(holdout, str):
        parts = holdout.replace(":", " ").split()
        if len(parts) == 2 and parts[0] in ("largest", "smallest"):
            name = parts[1]
            inv = {c: v for v, c in data.columns.items()}
            var = name if name in data.X else inv.get(name)
            if var is None:
                raise InvalidInputError(f"holdout {holdout!r}: {name!r} is neither a variable "
                                        f"({list(data.X)}) nor a fitted column ({list(inv)})")
            x = data.X[var]
            mask = x == (x.max() if parts[0] == "largest" else x.min())
            return mask, holdout
        raise InvalidInputError(f"holdout string must be 'loo', 'largest <variable>' or 'smallest <variable>'; "
                                f"got {holdout!r}")
    if callable(holdout):
        mask = holdout(data.frame())
        label = getattr(holdout, "__name__", "callable")
    else:
        mask, label = holdout, "mask"
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n,):
        raise InvalidInputError(f"holdout mask must be a boolean array with one entry per fitted row ({n}); "
                                f"got dtype {mask.dtype}, shape {mask.shape}")
    return mask, label


def validate(fit: Fit, holdout: Any = "loo", *, polish: int | None = None) -> Validation:
    """Refit on the rows outside ``holdout`` and report the error on the held-out rows.

    ``"loo"`` is a leave-one-out sweep (leave-one-run-out when the fit has groups): each fold is refitted
    warm-started from the full fit (cheap; an optimiser start, not information about the held-out point's
    value). Any other hold-out refits from the law's full start grid (``polish``: as in ``fit``).
    """
    with single_thread():
        return _validate(fit, holdout, polish)


def _validate(fit: Fit, holdout: Any, polish: int | None) -> Validation:
    law, data, opts = fit.law, fit.data, fit.options
    rows = []
    if isinstance(holdout, str) and holdout.strip().lower() == "loo":
        units = np.arange(data.n).astype(str) if data.groups is None else data.groups
        labels = np.unique(units)
        failed = 0
        for k, lab in enumerate(labels):
            test = units == lab
            train = data.take(np.flatnonzero(~test))
            try:
                if train.n < law.n_free + 1:
                    raise FitError("too few points")
                law.check_design(train)
                sol = solve(Problem(law, train.X, law.target_to_model(train.y, train.X), opts), fit.theta[None],
                            polish=None)
                pred = fit._predict_X({v: x[test] for v, x in data.X.items()}, sol.theta[None])[0]
                if not sol.success:
                    raise FitError(sol.message)
            except FitError:
                failed += 1
                pred = np.full(int(test.sum()), np.nan)
            rows.append(pd.DataFrame({"fold": k, "row": np.flatnonzero(test), "observed": data.y[test],
                                      "predicted": pred}))
        table = pd.concat(rows, ignore_index=True)
        label = "leave-one-run-out" if data.groups is not None else "leave-one-out"
        n_train = data.n - int(np.max([np.sum(units == lab) for lab in labels]))
        n_test = data.n
    else:
        mask, label = holdout_mask(fit, holdout)
        if mask.all() or not mask.any():
            raise InvalidInputError(f"holdout {label!r} selects {int(mask.sum())} of {data.n} rows; it must leave "
                                    "points both to fit and to test")
        train = data.take(np.flatnonzero(~mask))
        refit_law, refit, _ = solve_data(
            law, train, opts if polish is None else type(opts)(**{**opts.to_dict(), "polish": polish}), strict=True)
        pred = predict_target(refit_law, {v: x[mask] for v, x in data.X.items()}, refit.theta)
        table = pd.DataFrame({"fold": 0, "row": np.flatnonzero(mask), "observed": data.y[mask], "predicted": pred})
        failed, n_train, n_test = 0, train.n, int(mask.sum())
    table["error"] = table["predicted"] - table["observed"]
    table["pct_error"] = 100 * table["error"] / table["observed"].abs()
    for v, x in data.X.items():
        table[data.columns.get(v, v)] = x[table["row"].to_numpy()]
    if table["predicted"].isna().all():
        raise FitError(f"validation ({label}): no fold could be refitted")
    return Validation(label, n_train, n_test, error_metrics(table["observed"].to_numpy(),
                                                            table["predicted"].to_numpy()), table, failed)
