"""Choose a law by how well it predicts points it never saw: fit on one table, score on another.

In-sample fit rewards flexibility; a user plans compute with the law's *extrapolation* (a larger D than any
proxy run). :func:`compare_holdout` fits each candidate on ``fit_table`` only and predicts ``val_table``
(e.g. the sweep's runs at a size >= 2x the largest fitted one), and ranks the laws by held-out MAPE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws.data import numeric_column, to_frame
from pplaw.laws.engine import Law
from pplaw.laws.result import Fit
from pplaw.laws.validation import error_metrics


@dataclass
class HoldoutComparison:
    """``table``: one row per law (held-out MAPE / worst point / RMSE, the worst error of a predicted
    *difference* between two held-out points at one size, in-sample MAPE and R^2), best first;
    ``fits``: each law fitted on the fitting table; ``predictions``: one row per (law, held-out point)."""

    table: pd.DataFrame
    fits: dict[str, Fit]
    predictions: pd.DataFrame = field(repr=False)

    @property
    def best(self) -> str:
        return str(self.table.index[0])

    def __str__(self) -> str:
        return (f"held-out comparison (best first: {self.best}):\n"
                + self.table.to_string(float_format=lambda v: f"{v:.4g}"))

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best, "table": json.loads(self.table.reset_index().to_json(orient="records")),
                "predictions": json.loads(self.predictions.to_json(orient="records"))}

    def plot(self, path: str | Path) -> Path:
        """A PNG of predicted vs measured on the held-out points, one marker per law, with the y = x line; the
        title gives each law's held-out MAPE. Written atomically (matplotlib ``Figure``, Agg; no pyplot state)."""
        from matplotlib.figure import Figure

        from pplaw._atomic import save_figure

        fig = Figure(figsize=(5.5, 5.0))
        ax = fig.add_subplot(1, 1, 1)
        markers = "osD^v<>pPX*h"
        for i, (law, g) in enumerate(self.predictions.groupby("law", sort=False)):
            ax.scatter(g["measured"], g["predicted"], marker=markers[i % len(markers)], alpha=0.8,
                       label=f"{law}: MAPE {self.table.loc[law, 'holdout_mape']:.3g}%")
        v = self.predictions[["measured", "predicted"]].to_numpy(float)
        v = v[np.isfinite(v)]
        if v.size:
            lo, hi = float(v.min()), float(v.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        ax.set_xlabel("measured (held-out runs)")
        ax.set_ylabel("predicted by the law fitted without them")
        mapes = ", ".join(f"{k} {m:.3g}%" for k, m in self.table["holdout_mape"].items())
        ax.set_title(f"held-out MAPE: {mapes}", fontsize=9)
        ax.legend(fontsize=7)
        return save_figure(fig, path)


def compare_holdout(laws: Mapping[str, Any], fit_table: Any, val_table: Any, *, target: str, mu: str = "mu",
                    sigma: str = "sigma", D: str = "D", **fit_kwargs: Any) -> HoldoutComparison:
    """Fit every law of ``laws`` (name -> Law) on ``fit_table``, predict ``val_table``, rank by held-out MAPE."""
    if not laws:
        raise InvalidInputError("compare_holdout: `laws` is empty; pass a dict of name -> Law")
    fit_df = to_frame(fit_table, what="fit_table")
    val_df = to_frame(val_table, what="val_table")
    if val_df.empty:
        raise InvalidInputError("compare_holdout: `val_table` has no rows; there is nothing held out to score")
    columns = {"mu": mu, "sigma": sigma, "D": D}
    for name, law in laws.items():
        if not isinstance(law, Law):
            raise InvalidInputError(f"compare_holdout: laws[{name!r}] must be a Law instance, got "
                                    f"{type(law).__name__}")
    needed = [target] + sorted({columns.get(v, v) for law in laws.values() for v in law.variables})
    for name, df in (("fit_table", fit_df), ("val_table", val_df)):
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise InvalidInputError(f"compare_holdout: {name} lacks column(s) {missing} (has {list(df.columns)})")
    rows, fits, preds = [], {}, []
    y = numeric_column(val_df, target, role="val_table target")
    for name, law in laws.items():
        cols = {v: columns.get(v, v) for v in law.variables}
        try:
            f = law.fit(fit_df, target=target, **cols, **fit_kwargs)
        except FitError as err:
            raise FitError(f"compare_holdout: law {name!r} could not be fitted on fit_table: {err}") from err
        fits[name] = f
        p = np.asarray(f.predict(val_df), float)
        m = error_metrics(y, p)
        pct = 100 * (p - y) / np.abs(y)
        k = int(np.nanargmax(np.abs(pct))) if np.isfinite(pct).any() else 0
        rows.append({"law": name, "holdout_mape": m["mape"], "holdout_worst": m["max_ape"],
                     "holdout_worst_signed": float(pct[k]), "holdout_rmse": m["rmse"],
                     "holdout_diff_max": pair_difference_error(numeric_column(val_df, D, role="val_table D"), y, p),
                     "insample_mape": f.metrics["mape"], "r2": f.metrics["r2"], "n_fit": int(len(fit_df)),
                     "n_val": int(len(val_df))})
        preds.append(pd.DataFrame({"law": name, "point": np.arange(len(y)), "measured": y, "predicted": p,
                                   "error_pct": pct}))
    table = pd.DataFrame(rows).set_index("law").sort_values("holdout_mape", kind="stable", na_position="last")
    return HoldoutComparison(table, fits, pd.concat(preds, ignore_index=True))


SAME_SIZE = 1.05  # held-out points whose D differ by less than 5% count as one size (realised budgets vary a little)


def size_groups(d: np.ndarray, tol: float = SAME_SIZE) -> np.ndarray:
    """``(n,)`` group labels: points whose D lie within a factor ``tol`` of their group's smallest D share a label.

    A plan's validation runs aim at one size but realise slightly different token counts (37,2xx and 37,3xx):
    those are one size for comparing two subsets, and rounding would split them.
    """
    d = np.asarray(d, float)
    labels = np.full(d.shape, -1, dtype=int)
    order = np.argsort(d, kind="stable")
    start, g = None, -1
    for i in order:
        if not np.isfinite(d[i]):
            continue
        if start is None or d[i] > start * tol:
            start, g = d[i], g + 1
        labels[i] = g
    return labels


def pair_difference_error(d: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    """The worst error of the law's predicted *difference* between two held-out points of the same size.

    A selection compares two subsets at one budget (the law's best band against the best sweep regime), so what
    decides it is not each prediction's error but the error of their difference: for every pair (i, j) of
    held-out points of one size (:func:`size_groups`), ``|(p_i - p_j) - (y_i - y_j)|`` (a shared bias cancels,
    a mis-ranking does not). NaN when no size has two held-out points. ``d``, ``y``, ``p``: shape ``(n,)``.
    """
    d, y, p = (np.asarray(v, float) for v in (d, y, p))
    labels = size_groups(d)
    worst = float("nan")
    for g in np.unique(labels[labels >= 0]):
        i = np.flatnonzero((labels == g) & np.isfinite(y) & np.isfinite(p))
        if len(i) < 2:
            continue
        r = p[i] - y[i]  # (k,) residuals at this size; a pair's difference error is r_i - r_j
        e = float(np.max(r) - np.min(r))
        worst = e if not np.isfinite(worst) else max(worst, e)
    return worst
