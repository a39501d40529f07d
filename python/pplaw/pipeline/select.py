"""Fit the perplexity-aware law to the sweep, find the optimum, select the final subsets.

1. **Fit** ``PerplexityLaw`` (``pplaw.laws``) to the finished sweep runs: ``target ~ (mu, sigma, D)`` in the
   recipe's space, bootstrap over runs for CIs; optionally every (space, sigma) variant, ranked; when the
   sweep varies the replay ratio R, the D-CPT mixture laws for the domain and the general loss too.
2. **Optimum** ``(mu*, sigma*)``: the law's best point inside the region the corpus can realise at the final
   budget (:func:`pplaw.pipeline.plan.realisable_region`), optionally intersected with the hull of the fitted
   points, with the bootstrap CI.
3. **Subsets** at the final budget D: DOS (``pplaw.select_dos`` to ``(mu*, sigma*)``), and the baselines:
   ``random`` (``pplaw.sample_subset`` without a target), ``lowest_ppl`` / ``highest_ppl`` (the D tokens of
   lowest / highest PPL), ``full`` (every chunk, trained for the same number of tokens as the others).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.io import write_indices
from pplaw.pipeline.plan import RealisableRegion, pool_tokens, stats_both
from pplaw.pipeline.recipe import RunRecipe
from pplaw.runs import write_json_atomic

SUFFIX = {"ppl": "ppl", "log_ppl": "log_ppl"}


def fit_frame(rows: list[dict[str, Any]], space: str, total_tokens: int | None = None) -> pd.DataFrame:
    """The finished sweep runs as the law's table: ``mu``/``sigma`` in ``space``, ``D`` = subset tokens and,
    with ``total_tokens``, ``P`` = the tokens of the landscape band each run was drawn from (its pool; the
    bins are token-weighted, so a band of width ``w`` holds ``w * total_tokens``)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("domain_loss") is not None]
    if not ok:
        raise FitError("no sweep run finished, so there is nothing to fit: see sweep/runs.json and the failed.json "
                       "of each run in the run directory")
    df = pd.DataFrame(ok)
    df["mu"], df["sigma"] = df[f"mu_{space}"], df[f"sigma_{space}"]
    df["r_domain"] = 1.0 - df["R"]
    if total_tokens and "band" in df.columns:
        df["P"] = [pool_tokens(b, total_tokens) for b in df["band"]]
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


def fit_and_optimise(rows: list[dict[str, Any]], recipe: RunRecipe, region: RealisableRegion, out: Path,
                     table: pa.Table | None = None, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Choose the law by held-out error, refit it on every sweep point, take the optimum; write ``fit.json``,
    ``fit_summary.txt``, ``holdout.json``, PNGs; return the outputs.

    With ``table`` and ``plan`` and ``select.family == "band"`` the selected optimum is the best contiguous
    landscape band at the budget (or the best sweep regime, see :mod:`pplaw.pipeline.choose`); the law's
    continuous optimum in ``region`` is reported beside it as ``law_optimum``."""
    from pplaw.laws import compare_variants
    from pplaw.laws.plotting import write_plots
    from pplaw.pipeline import choose as C

    f = recipe.fit
    df = fit_frame(rows, f.space, None if plan is None else int(plan["total_tokens"]))
    law_choice = C.choose_law(df, recipe, out)
    write_json_atomic(out / "holdout.json", law_choice)
    law = C.candidate_laws(recipe)[law_choice["chosen"]]
    fit = law.fit(df, target=f.target, mu="mu", sigma="sigma", D="D", bootstrap=f.bootstrap, seed=f.seed,
                  strict=False, progress=False)
    opt = fit.optimum(region=search_region(recipe.select.region, region, df), D=float(region.budget))
    fit.to_json(out / "fit.json")
    fit.plot(out / "fit.png", optimum=opt)
    # a validation run is its regime widened to hold a larger D (another (mu, sigma)): its own curve, not a third
    # point on its regime's (a local law would draw the regime's curve at the mean of both)
    by = df["regime"].astype(str).to_numpy()
    if "role" in df.columns:
        by = np.where(df["role"].fillna("fit").to_numpy() == "validation", np.char.add(by, " (held out)"), by)
    plots = [p.name for p in write_plots(fit, out, optimum=opt, by=by)]
    summary = (f"law chosen: {law_choice['chosen']} ({law_choice['reason']})\n\n" + fit.summary() + "\n\n"
               + str(opt))
    outputs: dict[str, Any] = {
        "fit": "fit.json", "plots": ["fit.png", *plots], "summary": "fit_summary.txt",
        "law": law.describe(), "n_runs": int(len(df)), "metrics": fit.metrics, "params": fit.params,
        "ci": {k: list(v) for k, v in fit.ci.items()}, "warnings": fit.warnings,
        "optimum": opt.to_dict(), "law_optimum": opt.to_dict(), "region": recipe.select.region,
        "law_choice": law_choice,
    }
    if recipe.select.family == "band" and table is not None and plan is not None:
        band = C.choose_band(fit, df, table, plan, recipe, int(region.budget), law_choice, out)
        outputs.update(optimum=band["optimum"], best_sweep=band["best_sweep"], bands=band["bands"])
        summary += (f"\n\nselected ({band['optimum']['selected']}): band {band['optimum']['band']}, "
                    f"mu* = {band['optimum']['mu']:.5g}, sigma* = {band['optimum']['sigma']:.5g}; "
                    f"{band['optimum']['why']}")
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
    from pplaw.pipeline.choose import law_inputs

    fit = Fit.from_json(fit_path)
    X = law_inputs(fit, mu=[mu], sigma=[sigma], D=[D], P=None if P is None else [P])
    try:
        p = fit.predict(**X, interval="confidence")
        return {"prediction": float(p["prediction"][0]), "lo": float(p["lo"][0]), "hi": float(p["hi"][0])}
    except FitError:
        return {"prediction": float(fit.predict(**X)[0]), "lo": None, "hi": None}


# ----------------------------------------------------------------------------------------------------------
# subsets at the final budget


def _extreme(ppl: np.ndarray, tokens: np.ndarray, budget: int, highest: bool) -> np.ndarray:
    """The chunks of lowest (highest) PPL until ``budget`` tokens are reached, as sorted row indices."""
    order = np.argsort(-ppl if highest else ppl, kind="stable")
    cum = np.cumsum(tokens[order])
    k = int(np.searchsorted(cum, budget, side="left")) + 1
    return np.sort(order[:k])


def select_subsets(table: pa.Table, recipe: RunRecipe, optimum: dict[str, Any], budget: int,
                   out: Path, best_sweep: dict[str, Any] | None = None,
                   scored_dir: Path | None = None) -> list[dict[str, Any]]:
    """DOS and the baselines at ``budget`` for every final seed; writes ``subsets/<method>_s<seed>.parquet``.
    ``select.executor`` stream/ray draws them shard by shard from ``scored_dir`` (:mod:`pplaw.stream`)."""
    from pplaw.stream import drawer

    sample_subset, select_dos = drawer(table, scored_dir, recipe.select.executor)

    ppl = table.column("ppl").to_numpy()
    tokens = table.column("n_scored").to_numpy().astype(np.int64)
    sel = recipe.select
    (out / "subsets").mkdir(parents=True, exist_ok=True)
    items = []
    for method in ["dos", *recipe.baselines.methods]:
        for seed in sel.seeds:
            if method == "dos" and optimum.get("band") is not None:  # the band family (select.family = band)
                idx = sample_subset(token_budget=budget, quantile_window=tuple(optimum["band"]), seed=seed)
            elif method == "best_sweep":
                if best_sweep is None:
                    raise InvalidInputError("baseline best_sweep needs select.family = band (the sweep's band "
                                            "family); drop it from baselines.methods or set select.family: band")
                idx = sample_subset(token_budget=budget, quantile_window=tuple(best_sweep["band"]), seed=seed)
            elif method == "dos":
                idx = select_dos(token_budget=budget, target_mean=optimum["mu"], target_std=optimum["sigma"],
                                 space=recipe.fit.space, weights=sel.weights, seed=seed)
            elif method == "random":
                idx = sample_subset(token_budget=budget, seed=seed)
            elif method in ("lowest_ppl", "highest_ppl"):
                idx = _extreme(ppl, tokens, budget, highest=method == "highest_ppl")
            else:  # full: every chunk; trained for as many tokens as the others (see cpt_options)
                idx = None
            item: dict[str, Any] = {"method": method, "seed": int(seed), "indices": None}
            if idx is not None:
                name = f"subsets/{method}_s{seed}.parquet"
                write_indices(table, idx, out / name)
                item.update(indices=name, **stats_both(table, np.asarray(idx)))
            else:
                item.update(**stats_both(table, np.arange(table.num_rows)))
            item["D"] = item["tokens"]
            items.append(item)
    return items


def whole_corpus_note(subsets: list[dict[str, Any]], n_rows: int) -> str | None:
    """What to say when DOS selected every chunk (the budget reaches the whole landscape): its subsets are then
    the random baseline's (and ``full``'s), so the comparison cannot show a difference; None otherwise."""
    dos = [s for s in subsets if s["method"] == "dos"]
    if not dos or any(s.get("count") != n_rows for s in dos):
        return None
    same = sorted({s["method"] for s in subsets if s["method"] != "dos" and s.get("count") == n_rows})
    also = f": its subsets equal those of {', '.join(same)}" if same else ""
    return (f"DOS selected the whole landscape (all {n_rows:,} chunks, {dos[0]['tokens']:,} tokens){also}, so DOS "
            f"and these baselines cannot differ; lower select.budget below the corpus to compare them")
