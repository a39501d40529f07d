"""The fit stage: which law to trust (held-out validation), the law refitted on every sweep run, its optimum.

1. **Held-out law choice** (:func:`choose_law`): every candidate law of ``fit.laws`` (the paper's law always
   first, pplaw's extensions beside it) is fitted on the sweep's ``fit`` points only and predicts the
   ``validation`` points (sizes >= 2x the largest fitting size, never fitted). The law with the lowest
   held-out MAPE is chosen: extrapolation in D, not in-sample fit, is what a user plans compute with. With
   no validation points the paper's law is used and the report says that nothing was validated.
2. **Refit** (:func:`fit_and_optimise`): the chosen law fitted to every finished sweep run,
   ``target ~ (mu, sigma, D)`` in the recipe's space, bootstrap over runs for CIs; optionally every
   (space, sigma) variant, ranked; when the sweep varies the replay ratio R, the D-CPT mixture laws for the
   domain and the general loss too.
3. **Optimum** ``(mu*, sigma*)``: the law's best point inside the region the corpus can realise at the final
   budget (:func:`pplaw.pipeline.plan.realisable_region`), optionally intersected with the hull of the fitted
   points, with the bootstrap CI. With ``select.family: band`` the selected optimum is the select stage's band
   decision (:func:`pplaw.pipeline.select.choose_band`), which the caller passes in as ``choose_band``: its
   outcome is part of this stage's cached outputs, and this module does not import the select stage's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.pipeline.plan import RealisableRegion, pool_tokens
from pplaw.pipeline.recipe import RunRecipe
from pplaw.runs import write_json_atomic

if TYPE_CHECKING:
    from pplaw.pipeline.select import BandChoice

TRUST_MAPE = 10.0  # % held-out MAPE above which the report says the law is not fit to be trusted


def split_roles(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The law's table split into fitted points and held-out validation points."""
    role = df["role"] if "role" in df.columns else pd.Series("fit", index=df.index)
    role = role.fillna("fit")
    return df[role == "fit"].reset_index(drop=True), df[role == "validation"].reset_index(drop=True)


def candidate_specs(recipe: Any) -> list[str]:
    """``fit.laws``; with ``select.max_repeat`` > 1 and the default list, also the spline with a repetition term
    (``REPEAT_GRID``): runs then repeat their band, which the pool term values wrongly past D = P."""
    from pplaw.pipeline.sections import REPEAT_GRID, FitSection

    specs = list(recipe.fit.laws)
    if float(getattr(recipe.select, "max_repeat", 1.0)) > 1 and specs == FitSection().laws:
        specs += REPEAT_GRID
    return specs


def candidate_laws(recipe: Any) -> dict[str, Any]:
    """The :func:`candidate_specs`, built."""
    from pplaw.laws import get_law_spec

    f = recipe.fit
    return {spec: get_law_spec(spec, sigma=f.sigma, space=f.space) for spec in candidate_specs(recipe)}


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



def law_inputs(fit: Any, **arrays: Any) -> dict[str, Any]:
    """``arrays`` restricted to the fitted law's variables (``P`` only for a law with a pool term; None dropped)."""
    return {k: v for k, v in arrays.items() if v is not None and k in fit.law.variables}



def fit_frame(rows: list[dict[str, Any]], space: str, total_tokens: int | None = None) -> pd.DataFrame:
    """The finished sweep runs as the law's table: ``mu``/``sigma`` in ``space``, ``D`` = subset tokens and,
    with ``total_tokens``, ``P`` = the tokens of the landscape band each run was drawn from (its pool; the
    bins are token-weighted, so a band of width ``w`` holds ``w * total_tokens``; a run drawn from a sub-pool
    of its band, ``pool`` tokens, has that pool: :func:`pplaw.pipeline.plan.lead_points`)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("domain_loss") is not None]
    if not ok:
        raise FitError("no sweep run finished, so there is nothing to fit: see sweep/runs.json and the failed.json "
                       "of each run in the run directory")
    df = pd.DataFrame(ok)
    df["mu"], df["sigma"] = df[f"mu_{space}"], df[f"sigma_{space}"]
    df["r_domain"] = 1.0 - df["R"]
    if total_tokens and "band" in df.columns:
        own = df["pool"] if "pool" in df.columns else pd.Series([None] * len(df), index=df.index)
        df["P"] = [float(p) if p is not None and np.isfinite(float(p)) else pool_tokens(b, total_tokens)
                   for b, p in zip(df["band"], own)]
    return df


def final_pool(method: str, D: float, fit_outputs: dict[str, Any], total_tokens: int) -> float:
    """The pool a final subset was drawn from: its band (DOS from the band family, best sweep regime), the
    whole corpus (random, full, moment-matched DOS) or the subset itself (lowest/highest PPL take a prefix)."""
    if method == "dos" and (fit_outputs.get("optimum") or {}).get("band") is not None:
        return pool_tokens(fit_outputs["optimum"]["band"], total_tokens)
    if method == "best_sweep" and (fit_outputs.get("best_sweep") or {}).get("band") is not None:
        return pool_tokens(fit_outputs["best_sweep"]["band"], total_tokens)
    if method in ("lowest_ppl", "highest_ppl"):
        return float(D)
    return float(total_tokens)


class _Both:
    """The realisable region intersected with the convex hull of the fitted points."""

    def __init__(self, region: RealisableRegion, pts: np.ndarray):
        from pplaw.laws import Region

        self.region, self.hull = region, Region.hull(pts, "fitted points")
        r, h = region.bbox, self.hull.bbox
        self.bbox = (max(r[0], h[0]), min(r[1], h[1]), max(r[2], h[2]), min(r[3], h[3]))

    def contains(self, mu, sigma):
        return self.region.contains(mu, sigma) & self.hull.contains(mu, sigma)


def search_region(kind: str, region: RealisableRegion, df: pd.DataFrame) -> Any:
    """The ``region`` for ``PerplexityLaw.optimum``: realisable at the final budget, fitted hull, or both."""
    from pplaw.laws import Region

    if kind == "fitted":
        return df[["mu", "sigma"]].to_numpy(float)
    label = f"region realisable at D={region.budget:,}"
    if kind == "realisable":
        return Region(region.contains, region.bbox, label, region.outline())
    both = _Both(region, df[["mu", "sigma"]].to_numpy(float))
    return Region(both.contains, both.bbox, label + " within the hull of the fitted points")


def refit_law(law: Any, df: pd.DataFrame, law_choice: dict[str, Any], target: str,
              profile: bool = False) -> tuple[Any, str | None]:
    """The chosen law as the refit on every run uses it: anchored (:meth:`pplaw.laws.Law.anchored`) on the
    fitting runs it was scored from, so a floor keeps the loss the held-out runs validated (``floor x`` the
    smallest loss of all runs would be lower: the held-out runs are larger and their losses lower). With
    ``profile`` (``fit.refit_floor``) and a law that can profile its floor (the spline's ``fit_floor``), the
    refit estimates ``E`` from every run where a regime holds >= 4 sizes, the anchored floor its fallback.
    With no validation the law is as given. Returns ``(law, note)``: the note says when the anchored floor is
    not below a held-out run's loss (the held-out runs refute it) and the floor is re-derived instead."""
    if not law_choice.get("validated"):
        return law, None
    fit_df, _ = split_roles(df)
    anchored, note = law.anchored(fit_df[target].to_numpy(float)), None
    e, low = getattr(anchored, "e", None), float(df[target].min())
    if e is not None and e >= low:
        anchored, note = law, (f"the held-out floor E = {e:.4g} is not below the smallest measured {target} "
                               f"({low:.4g}): the refit takes the floor relative to every run instead")
    if profile and hasattr(anchored, "fit_floor"):
        anchored = type(anchored)(**{**anchored.config(), "fit_floor": True})
    return anchored, note


def fit_and_optimise(rows: list[dict[str, Any]], recipe: RunRecipe, region: RealisableRegion, out: Path,
                     total_tokens: int | None = None,
                     choose_band: Callable[[Any, pd.DataFrame, dict[str, Any]], BandChoice] | None = None,
                     ) -> dict[str, Any]:
    """Choose the law by held-out error, refit it on every sweep point, take the optimum; write ``fit.json``,
    ``fit_summary.txt``, ``holdout.json``, PNGs; return the outputs.

    ``total_tokens``: the corpus' tokens, which give each run's pool ``P`` (:func:`fit_frame`). With
    ``choose_band(fit, df, law_choice)`` (``select.family: band``, :func:`pplaw.pipeline.select.choose_band`)
    the selected optimum is its band (the law's best contiguous landscape band at the budget, or the best
    sweep regime's); the law's continuous optimum in ``region`` is reported beside it as ``law_optimum``."""
    from pplaw.laws import compare_variants
    from pplaw.laws.plotting import write_plots

    f = recipe.fit
    df = fit_frame(rows, f.space, total_tokens)
    law_choice = choose_law(df, recipe, out)
    write_json_atomic(out / "holdout.json", law_choice)
    law, floor_note = refit_law(candidate_laws(recipe)[law_choice["chosen"]], df, law_choice, f.target,
                                profile=f.refit_floor)
    fit = law.fit(df, target=f.target, mu="mu", sigma="sigma", D="D", bootstrap=f.bootstrap, seed=f.seed,
                  strict=False, progress=False)
    if floor_note:
        fit.warnings.append(floor_note)
    opt = fit.optimum(region=search_region(recipe.select.region, region, df), D=float(region.budget))
    fit.to_json(out / "fit.json")
    fit.plot(out / "fit.png", optimum=opt)
    # a validation run is its regime widened to hold a larger D (another (mu, sigma)): its own curve, not a third
    # point on its regime's (a local law would draw the regime's curve at the mean of both)
    by = df["regime"].astype(str).to_numpy()
    if "role" in df.columns:
        by = np.where(df["role"].fillna("fit").to_numpy() == "validation", np.char.add(by, " (held out)"), by)
    plots = [p.name for p in write_plots(fit, out, optimum=opt, by=by)]
    how, e = fit.extras.get("floor_how") or floor_note, getattr(fit.law, "e", None)  # e: None for laws without a floor
    summary = (f"law chosen: {law_choice['chosen']} ({law_choice['reason']})\n\n" + fit.summary()
               + (f"\nfloor E = {e or 0.0:.4g}: {how}" if how else "") + "\n\n" + str(opt))
    outputs: dict[str, Any] = {
        "fit": "fit.json", "plots": ["fit.png", *plots], "summary": "fit_summary.txt",
        "law": fit.law.describe(), "n_runs": int(len(df)),
        "floor": {"e": e, "how": how}, "metrics": fit.metrics, "params": fit.params,
        "ci": {k: list(v) for k, v in fit.ci.items()}, "warnings": fit.warnings,
        "optimum": opt.to_dict(), "law_optimum": opt.to_dict(), "region": recipe.select.region,
        "law_choice": law_choice,
    }
    if choose_band is not None:
        band = choose_band(fit, df, law_choice)
        outputs.update(band.outputs())
        summary += "\n\n" + band.summary_line()
    if f.compare_variants:
        try:
            cmp = compare_variants(df, target=f.target, D="D", mu="mu_ppl", sigma="sigma_ppl", mu_log="mu_log_ppl",
                                   sigma_log="sigma_log_ppl", holdout=f.variants_holdout, strict=False,
                                   progress=False)
            outputs["variants"] = json.loads(cmp.table.reset_index().to_json(orient="records"))
            outputs["best_variant"] = cmp.best
            summary += "\n\n" + str(cmp)
        except (FitError, InvalidInputError) as err:
            outputs["variants_error"] = f"{type(err).__name__}: {err}"
    if df["R"].nunique() > 1:
        outputs["mixture_laws"] = _mixture_laws(df, out)
        summary += "\n\n" + "\n".join(f"{k}: {v.get('summary', v.get('error'))}" for k, v in
                                      outputs["mixture_laws"].items())
    (out / "fit_summary.txt").write_text(summary + "\n", encoding="utf-8")
    return outputs


def _mixture_laws(df: pd.DataFrame, out: Path) -> dict[str, Any]:
    """D-CPT laws (domain loss vs domain ratio, general loss vs general ratio) when R varies."""
    from pplaw.laws import DCPT

    res = {}
    for form, target in (("domain", "domain_loss"), ("general", "general_loss")):
        try:
            sub = df.dropna(subset=[target])
            fit = DCPT(form=form, model_size=False).fit(sub, target=target, D="D", r="r_domain", strict=False,
                                                        progress=False)
            fit.to_json(out / f"dcpt_{form}.json")
            fit.plot(out / f"dcpt_{form}.png")
            res[f"dcpt_{form}"] = {"fit": f"dcpt_{form}.json", "plot": f"dcpt_{form}.png",
                                   "metrics": fit.metrics, "params": fit.params, "summary": fit.summary()}
        except (FitError, InvalidInputError) as err:
            res[f"dcpt_{form}"] = {"error": f"{type(err).__name__}: {err}"}
    return res


def predict(fit_path: Path, mu: float, sigma: float, D: float, P: float | None = None) -> dict[str, Any]:
    """The law's prediction (with its bootstrap confidence interval when there is one); ``P``: the subset's
    pool, for laws with a pool term (others ignore it)."""
    from pplaw.laws import Fit

    fit = Fit.from_json(fit_path)
    X = law_inputs(fit, mu=[mu], sigma=[sigma], D=[D], P=None if P is None else [P])
    try:
        p = fit.predict(**X, interval="confidence")
        return {"prediction": float(p["prediction"][0]), "lo": float(p["lo"][0]), "hi": float(p["hi"][0])}
    except FitError:
        return {"prediction": float(fit.predict(**X)[0]), "lo": None, "hi": None}
