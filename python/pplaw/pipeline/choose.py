"""Which law to trust, and which subset to train on: held-out validation, then the band family at the budget.

1. **Held-out law choice** (:func:`choose_law`): every candidate law of ``fit.laws`` (the paper's law always
   first, pplaw's extensions beside it) is fitted on the sweep's ``fit`` points only and predicts the
   ``validation`` points (sizes >= 2x the largest fitting size, never fitted). The law with the lowest
   held-out MAPE is chosen: extrapolation in D, not in-sample fit, is what a user plans compute with. With
   no validation points the paper's law is used and the report says that nothing was validated.
2. **Band family** (:func:`choose_band`): the subsets the final selection may take are contiguous bands of
   the landscape sampled uniformly, the family the sweep's windows belong to (never a free (mu, sigma)
   match, which a bimodal mix of the corpus' two ends can realise). Every band that holds the budget is
   realised; the chosen law (refitted on all sweep points) predicts each one's loss at the final budget;
   bands outside the convex hull of the fitted (mu, sigma) are dropped when ``select.region`` is ``fitted``
   or ``both`` (the law has not been seen there). The best band is the law's pick.
3. **Never worse than the evidence**: the *best sweep regime* (the lowest-loss sweep run at the largest
   fitting size, its regime's band widened to the budget) is both a baseline and the fallback: when the
   law's predicted gain over it is within the law's own uncertainty, the loop selects it instead. That
   uncertainty has two parts, and the gain must clear both: the bootstrap CI of the gain (the fit's noise) and
   the held-out error on differences (how far the law mispredicted the gap between two validation runs of one
   size: its error of form where it extrapolates, which resampling the sweep runs cannot see).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pplaw.exceptions import BudgetError, FitError, InvalidInputError
from pplaw.pipeline.plan import pool_tokens, sample_band, stats_both

TRUST_MAPE = 10.0  # % held-out MAPE above which the report says the law is not fit to be trusted


def split_roles(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The law's table split into fitted points and held-out validation points."""
    role = df["role"] if "role" in df.columns else pd.Series("fit", index=df.index)
    role = role.fillna("fit")
    return df[role == "fit"].reset_index(drop=True), df[role == "validation"].reset_index(drop=True)


def candidate_laws(recipe: Any) -> dict[str, Any]:
    from pplaw.laws import get_law_spec

    f = recipe.fit
    return {spec: get_law_spec(spec, sigma=f.sigma, space=f.space) for spec in f.laws}


def choose_law(df: pd.DataFrame, recipe: Any, out: Path) -> dict[str, Any]:
    """Fit each candidate law on the fit points, score it on the validation points, pick the best."""
    from pplaw.laws import compare_holdout

    f = recipe.fit
    fit_df, val_df = split_roles(df)
    laws = candidate_laws(recipe)
    if "P" not in df.columns or not np.all(np.isfinite(df["P"].to_numpy(float))):
        # a law with a pool term needs each run's pool (its landscape band): without bands, leave it out
        laws = {k: v for k, v in laws.items() if "P" not in v.variables}
    paper = f.laws[0]
    if val_df.empty:
        return {"chosen": paper, "validated": False, "trusted": False, "n_fit": int(len(fit_df)), "n_val": 0,
                "reason": "no held-out validation points (" + (
                    "plan.validation_sizes: []" if recipe.plan.validation_sizes == [] else
                    "none was planned or none finished: see the plan and the sweep") + "): the law's extrapolation "
                          "in D is untested, so its predictions are not validated"}
    cmp = compare_holdout(laws, fit_df, val_df, target=f.target, mu="mu", sigma="sigma", D="D", strict=False,
                          progress=False)
    cmp.plot(out / "holdout.png")
    table = cmp.table
    best = cmp.best
    mape = float(table.loc[best, "holdout_mape"])
    preds = cmp.predictions.copy()
    if "point" in preds.columns:
        preds["id"] = [val_df["id"].iloc[int(i)] if "id" in val_df.columns else int(i) for i in preds["point"]]
        preds["D"] = [float(val_df["D"].iloc[int(i)]) for i in preds["point"]]  # the forecast interval's scale
    res = {
        "chosen": best, "validated": True, "trusted": bool(np.isfinite(mape) and mape <= TRUST_MAPE),
        "n_fit": int(len(fit_df)), "n_val": int(len(val_df)), "plot": "holdout.png",
        "table": _records(table.reset_index().rename(columns={table.index.name or "index": "law"})),
        "predictions": _records(preds),
        "reason": (f"{best} has the lowest held-out MAPE ({mape:.1f}%) on {len(val_df)} validation points at "
                   f"{_sizes(val_df)} tokens (fitted on {len(fit_df)} points up to {int(fit_df['D'].max()):,})"),
    }
    if best != paper and paper in table.index:
        res["reason"] += f"; the paper's law scores {float(table.loc[paper, 'holdout_mape']):.1f}% there"
    return res


def _sizes(df: pd.DataFrame) -> str:
    return ", ".join(f"{int(v):,}" for v in sorted(df["D"].round(-2).unique()))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    import json

    return json.loads(df.to_json(orient="records"))


# ----------------------------------------------------------------------------------------------------------
# the band family at the final budget


def bands_at(share: float, n_bins: int) -> list[tuple[float, float]]:
    """Every contiguous band of whole landscape bins wide enough for ``share`` of the corpus."""
    w0 = min(n_bins, math.ceil(1.05 * share * n_bins - 1e-9))
    return [(b / n_bins, (b + w) / n_bins) for w in range(w0, n_bins + 1) for b in range(0, n_bins - w + 1)]


def realise_bands(table: pa.Table, bands: list[tuple[float, float]], budget: int, seed: int,
                  space: str) -> pd.DataFrame:
    """Each band sampled to ``budget`` tokens: its realised (mu, sigma) in both spaces (unfit ones dropped)."""
    from pplaw.sampling import sample_subset

    rows = []
    for q in bands:
        try:
            idx = sample_subset(table, token_budget=budget, quantile_window=q, seed=seed, return_indices=True)
        except BudgetError:
            continue
        st = stats_both(table, np.asarray(idx))
        rows.append({"q_lo": q[0], "q_hi": q[1], **st, "mu": st[f"mu_{space}"], "sigma": st[f"sigma_{space}"],
                     "D": float(budget)})
    return pd.DataFrame(rows)


def best_sweep_regime(df: pd.DataFrame, target: str) -> dict[str, Any]:
    """The lowest-``target`` sweep run among the fit points at the largest fitting size (every regime ran there)."""
    fit_df, _ = split_roles(df)
    if fit_df.empty:
        raise FitError("no finished sweep run among the fit points: no best sweep regime to take")
    top = fit_df[fit_df["size_no"] == fit_df.loc[fit_df["D"].idxmax(), "size_no"]]
    if top.empty:
        raise FitError("no finished sweep run at the largest fitting size: no best sweep regime to take")
    r = top.loc[top[target].idxmin()]
    return {"regime": str(r["regime"]), "run": str(r["id"]), "loss": float(r[target]), "D": int(r["D"])}


def trust_gain(gain: float, gain_lo: float | None, diff_err: float | None, mape: float | None,
               predicted: float, level: float, target: str) -> tuple[str, str]:
    """``("law" | "best_sweep", why)``: is the law's predicted gain over the best sweep regime beyond its uncertainty?

    ``gain``: predicted loss of the best sweep band minus that of the law's band (> 0: the law's band is better);
    ``gain_lo``: the lower end of its bootstrap CI (None without bootstrap draws); ``diff_err``: the chosen law's
    worst held-out error on a difference (:func:`pplaw.laws.holdout.pair_difference_error`, None/NaN when no size
    has two validation runs); ``mape``: its held-out MAPE, used only when neither of the others exists.
    The gain must clear both the bootstrap CI (the fit's noise) and ``diff_err``: the bootstrap resamples the
    sweep runs, so it cannot see the law's error of form where it extrapolates; the held-out runs measure it.
    """
    if diff_err is not None and not np.isfinite(float(diff_err)):
        diff_err = None
    if gain_lo is not None and gain_lo <= 0:
        return "best_sweep", (f"the law's predicted gain over the best sweep regime ({gain:+.4f}) is within its "
                              f"bootstrap uncertainty ({level:.0%} CI of the gain reaches {gain_lo:+.4f})")
    if diff_err is not None and gain <= float(diff_err):
        return "best_sweep", (f"the law's predicted gain over the best sweep regime ({gain:+.4f}) is within its "
                              f"held-out error on differences (it mispredicted the gap between two validation runs "
                              f"by up to {float(diff_err):.4f})")
    checked = ([f"bootstrap CI of the gain from {gain_lo:+.4f}"] if gain_lo is not None else []) + \
              ([f"held-out error on differences {float(diff_err):.4f}"] if diff_err is not None else [])
    if gain_lo is None and diff_err is None and mape is not None and np.isfinite(float(mape)):
        tol = float(mape) / 100 * predicted
        if gain <= tol:
            return "best_sweep", (f"the law's predicted gain over the best sweep regime ({gain:+.4f}) is within its "
                                  f"held-out error ({float(mape):.1f}% of its prediction: {tol:.4f})")
        checked = [f"held-out error {float(mape):.1f}% of its prediction: {tol:.4f}"]
    return "law", (f"the law predicts {gain:+.4f} lower {target} than the best sweep regime, beyond its uncertainty "
                   f"({'; '.join(checked) or 'no uncertainty measured: no bootstrap, no held-out runs'})")


def _holdout_row(law_choice: dict[str, Any]) -> dict[str, Any]:
    """The chosen law's row of the held-out table ({} when nothing was validated)."""
    if not law_choice.get("validated"):
        return {}
    return next((r for r in law_choice.get("table") or [] if r.get("law") == law_choice.get("chosen")), {})


def law_inputs(fit: Any, **arrays: Any) -> dict[str, Any]:
    """``arrays`` restricted to the fitted law's variables (``P`` only for a law with a pool term; None dropped)."""
    return {k: v for k, v in arrays.items() if v is not None and k in fit.law.variables}


def _inputs(fit: Any, cand: pd.DataFrame) -> dict[str, np.ndarray]:
    """The law's inputs of each candidate band: (mu, sigma, D) and, for a law with a pool term, the band's P."""
    return law_inputs(fit, **{c: cand[c].to_numpy(float) for c in ("mu", "sigma", "D", "P") if c in cand.columns})


def _draw_preds(fit: Any, cand: pd.DataFrame) -> np.ndarray | None:
    """``(B, n)`` bootstrap predictions of every candidate (None without bootstrap draws)."""
    preds = fit.predict_draws(**_inputs(fit, cand))
    return preds if len(preds) >= 2 else None


def choose_band(fit: Any, df: pd.DataFrame, table: pa.Table, plan: dict[str, Any], recipe: Any, budget: int,
                law_choice: dict[str, Any], out: Path) -> dict[str, Any]:
    """The band the law predicts best at ``budget``, the best-sweep band, and which of the two is selected."""
    from pplaw.laws import Region

    sel, space = recipe.select, recipe.fit.space
    n_bins, total = int(plan["n_bins"]), int(plan["total_tokens"])
    seed = int(sel.seeds[0])
    cand = realise_bands(table, bands_at(budget / total, n_bins), budget, seed, space)
    if cand.empty:
        raise FitError(f"no contiguous band of the landscape holds the final budget of {budget:,} tokens")
    cand["P"] = [pool_tokens(b, total) for b in zip(cand["q_lo"], cand["q_hi"])]  # each band's pool
    cand["predicted"] = fit.predict(**_inputs(fit, cand))
    cand["in_hull"] = True
    if sel.region in ("fitted", "both"):
        try:
            hull = Region.hull(df[["mu", "sigma"]].to_numpy(float), "fitted points")
            cand["in_hull"] = hull.contains(cand["mu"].to_numpy(float), cand["sigma"].to_numpy(float))
        except InvalidInputError:
            pass
    # the best sweep regime's band at the budget (its regime's bins widened around their centre)
    bs = best_sweep_regime(df, recipe.fit.target)
    reg = next(r for r in plan["regimes"] if r["name"] == bs["regime"])
    idx, q = sample_band(table, [tuple(x) for x in reg["quantiles"]], budget, n_bins, seed, total)
    st = stats_both(table, np.asarray(idx))
    bs_row = pd.DataFrame([{"q_lo": q[0], "q_hi": q[1], **st, "mu": st[f"mu_{space}"],
                            "sigma": st[f"sigma_{space}"], "D": float(budget), "P": pool_tokens(q, total)}])
    bs.update(band=[float(q[0]), float(q[1])], mu=float(bs_row["mu"][0]), sigma=float(bs_row["sigma"][0]),
              predicted=float(fit.predict(**_inputs(fit, bs_row))[0]))
    inside = cand[cand["in_hull"]]
    draws = _draw_preds(fit, inside) if not inside.empty else None
    if inside.empty:
        law_pick, ci, loss_ci = None, {}, None
    else:
        k = int(np.argmin(inside["predicted"].to_numpy()))
        law_pick = inside.iloc[k]
        ci = loss_ci = None
        if draws is not None:
            picks = inside.iloc[np.argmin(draws, axis=1)]  # each draw's best band: the optimum's CI
            lv = (1 - fit.level) / 2 * 100
            ci = {c: (float(np.percentile(picks[c], lv)), float(np.percentile(picks[c], 100 - lv)))
                  for c in ("mu", "sigma")}
            ci["variance"] = (ci["sigma"][0] ** 2, ci["sigma"][1] ** 2)
            loss_ci = (float(np.percentile(draws[:, k], lv)), float(np.percentile(draws[:, k], 100 - lv)))
        ci = ci or {}
    # fallback: is the law's predicted gain over the best sweep regime larger than its own uncertainty?
    decision, why = "law", ""
    if law_pick is None:
        decision, why = "best_sweep", ("no band realisable at the budget lies inside the hull of the fitted points "
                                       "(the law has not been seen there)")
    elif sel.fallback:
        gain = bs["predicted"] - float(law_pick["predicted"])
        lo = None
        if draws is not None:
            diff = _draw_preds(fit, bs_row)[:, 0] - draws[:, int(np.argmin(inside["predicted"].to_numpy()))]
            lo = float(np.percentile(diff, (1 - fit.level) / 2 * 100))
        row = _holdout_row(law_choice)
        decision, why = trust_gain(gain, lo, row.get("holdout_diff_max"), row.get("holdout_mape"),
                                   float(law_pick["predicted"]), fit.level, recipe.fit.target)
    cand.to_csv(out / "bands.csv", index=False)
    if decision == "law":
        pick = law_pick
        opt = {"mu": float(pick["mu"]), "sigma": float(pick["sigma"]), "variance": float(pick["sigma"]) ** 2,
               "ci": {k: list(v) for k, v in ci.items()}, "loss": float(pick["predicted"]),
               "loss_ci": None if loss_ci is None else list(loss_ci),
               "band": [float(pick["q_lo"]), float(pick["q_hi"])]}
    else:
        opt = {"mu": bs["mu"], "sigma": bs["sigma"], "variance": bs["sigma"] ** 2, "ci": {}, "loss": bs["predicted"],
               "loss_ci": None, "band": bs["band"]}
    if law_pick is not None:  # the law's own pick, kept whichever band is selected (its CI is the law's precision)
        opt["law_band"] = {"band": [float(law_pick["q_lo"]), float(law_pick["q_hi"])], "mu": float(law_pick["mu"]),
                           "sigma": float(law_pick["sigma"]), "loss": float(law_pick["predicted"]),
                           "ci": {k: list(v) for k, v in ci.items()},
                           "loss_ci": None if loss_ci is None else list(loss_ci)}
    opt.update(level=fit.level, space=space, D=float(budget), selected=decision, why=why,
               on_boundary=bool(law_pick is not None and decision == "law" and
                                (law_pick["q_lo"] == 0.0 or law_pick["q_hi"] == 1.0)),
               region=f"contiguous landscape bands holding {budget:,} tokens"
                      + (" inside the hull of the fitted points" if sel.region in ("fitted", "both") else ""),
               n_bands=int(len(cand)), n_bands_searched=int(len(inside)))
    return {"optimum": opt, "best_sweep": bs, "bands": "bands.csv"}
