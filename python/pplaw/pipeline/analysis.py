"""The numbers of a ``pplaw run``: everything ``summary.json`` holds, computed from the run's artefacts.

:func:`analyse` is the one place these numbers are computed; the report (:mod:`pplaw.pipeline.report`) only
renders them, so that a number in ``report.md`` and the same number in ``summary.json`` cannot disagree, and
so that the numbers can be had (and tested) without making any plot or Markdown.

It returns an :class:`Analysis`: ``summary`` is exactly what ``summary.json`` holds (the report adds only
its own path and the timings), ``detail`` the further numbers the report shows but the summary never
carried (per-kind quartiles, each method's kind mix, prediction CIs, ...); they are kept apart so that
``summary.json`` stays what it was.

The per-kind numbers use the recipe's diagnostics file (the synthetic world's hidden kinds), which the
method itself never reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pplaw.io import read_indices
from pplaw.pipeline.forecast import form_error_of_run, interval
from pplaw.pipeline.fit import final_pool, predict

if TYPE_CHECKING:  # annotations only: the report's context is built above this module and imports nothing here
    from pplaw.pipeline.report.context import ReportContext

METHOD_ORDER = ("dos", "best_sweep", "random", "lowest_ppl", "highest_ppl", "full")
METRICS = (("domain_loss", "domain loss", -1), ("domain_bench", "domain benchmark", +1),
           ("general_bench", "general benchmark", +1), ("general_loss", "general loss", -1))
BAND_KINDS = ("learnable", "hard")
MARGIN_BASES = ("random", "lowest_ppl", "highest_ppl", "full")


@dataclass
class Analysis:
    """``summary``: the contents of ``summary.json`` (keys in the order they are written); ``detail``: the
    report-only numbers (see the module docstring)."""

    summary: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)


def analyse(ctx: ReportContext) -> Analysis:
    """Every number of the run's summary, from ``ctx``'s artefacts (no plot, no text, no file written)."""
    kinds = kinds_of(ctx)
    a = Analysis({"name": ctx.recipe.name, "budget": ctx.budget}, {"kinds": kinds})
    # the order of these calls is the order of summary.json's keys, kept as it was
    _corpus(ctx, a)
    _margins(ctx, a)
    _kinds(ctx, kinds, a)
    _plan(ctx, a)
    _sweep(ctx, a)
    _holdout(ctx, a)
    _fit(ctx, kinds, a)
    _comparison(ctx, kinds, a)
    _prediction(ctx, a)
    return a


# ----------------------------------------------------------------------------------------------------------
# shared computations


def kinds_of(ctx: ReportContext) -> np.ndarray | None:
    """Each chunk's kind from the diagnostics file (None without one). For the report only."""
    path, col = ctx.inputs.diagnostics, ctx.inputs.kind_column or "kind"
    if not path or "doc_id" not in ctx.table.column_names or not Path(path).is_file():
        return None
    diag = pd.read_json(path, lines=True) if str(path).endswith((".jsonl", ".json")) else pd.read_parquet(path)
    id_col = ctx.inputs.id_column or "doc_id"
    if id_col not in diag.columns or col not in diag.columns:
        return None
    mapping = dict(zip(diag[id_col].tolist(), diag[col].astype(str).tolist()))
    return np.array([mapping.get(d, "?") for d in ctx.table.column("doc_id").to_pylist()])


def composition(kinds: np.ndarray, idx: np.ndarray | None) -> dict[str, float]:
    """The share of each kind among the chunks ``idx`` (all chunks for None), over every kind of the corpus."""
    sub = kinds if idx is None else kinds[idx]
    names = sorted(set(kinds))
    return {k: float(np.mean(sub == k)) for k in names}


def compare(finals: list[dict], base: str) -> dict[str, dict[str, Any]]:
    """DOS minus ``base`` per metric, paired by seed: mean and sd of the differences, seeds DOS wins."""
    by = {(r["method"], r["seed"]): r for r in finals if r["status"] == "ok"}
    out = {}
    for key, _, sign in METRICS:
        diffs = [by[("dos", s)][key] - by[(base, s)][key] for (m, s) in by if m == "dos" and (base, s) in by
                 and by[("dos", s)].get(key) is not None and by[(base, s)].get(key) is not None]
        if not diffs:
            continue
        wins = sum((d * sign) > 0 for d in diffs)
        losses = sum((d * sign) < 0 for d in diffs)
        mean = float(np.mean(diffs))
        sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
        if wins == len(diffs):
            verdict = "DOS better in every seed"
        elif losses == len(diffs):
            verdict = "DOS WORSE in every seed"
        elif wins == losses == 0:
            verdict = "no difference (equal in every seed)"
        else:
            verdict = f"not consistent: DOS better in {wins}, worse in {losses} of {len(diffs)} seeds"
        out[key] = {"mean": mean, "sd": sd, "wins": wins, "n": len(diffs), "verdict": verdict}
    return out


def d_slopes(rows: list[dict[str, Any]], target: str) -> dict[str, float]:
    """Each regime's own scaling with D: ``-d ln(target) / d ln D`` by least squares over its finished sizes
    (per replay ratio and seed, then averaged). Positive: the loss falls with more data."""
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        y = r.get(target)
        if r["status"] == "ok" and y is not None and math.isfinite(y) and y > 0:
            groups.setdefault((r["regime"], r["R"], r["seed"]), []).append((math.log(r["D"]), math.log(y)))
    per_regime: dict[str, list[float]] = {}
    for (regime, _, _), pts in groups.items():
        x, y = np.array(pts).T
        if np.ptp(x) > 0:
            per_regime.setdefault(regime, []).append(-float(np.polyfit(x, y, 1)[0]))
    return {k: float(np.mean(v)) for k, v in per_regime.items()}


def mean_sd_stats(values: list) -> dict[str, float | None]:
    """``{"mean", "sd"}`` (sample sd) of the finite values: mean None when there is none (no benchmark was
    run), sd None when there are fewer than two."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {"mean": float(np.mean(vals)) if vals else None,
            "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


def _not_finished(rows: list[dict]) -> list[dict[str, Any]]:
    """The summary's entry for runs that failed or (never silently) did not finish."""
    return [{"id": r["id"], "error": r["error"] or f"status {r['status']}"} for r in rows if r["status"] != "ok"]


# ----------------------------------------------------------------------------------------------------------
# the summary, in the report's reading order


def _corpus(ctx: ReportContext, a: Analysis) -> None:
    n_tok = int(np.asarray(ctx.table.column("n_scored")).sum())
    a.detail.update(n_tokens=n_tok, budget_share=ctx.budget / n_tok)


def _margins(ctx: ReportContext, a: Analysis) -> None:
    for base in MARGIN_BASES:
        cmp = compare(ctx.finals, base)
        if cmp:  # no key at all when no final comparison finished
            a.summary.setdefault("margins", {})[base] = cmp


def _kinds(ctx: ReportContext, kinds: np.ndarray | None, a: Analysis) -> None:
    """Diagnostics: each hidden kind's PPL quantiles and how much neighbouring kinds overlap."""
    if kinds is None:
        return
    ppl = ctx.table.column("ppl").to_numpy()
    per_kind, quantiles = {}, {}
    for k in sorted(set(kinds)):
        p = ppl[kinds == k]
        q = np.quantile(p, [0.05, 0.25, 0.5, 0.75, 0.95])
        per_kind[k] = {"n": int(p.size), "q05": q[0], "median": q[2], "q95": q[4]}
        quantiles[k] = [float(v) for v in q]
    order = sorted(per_kind, key=lambda k: per_kind[k]["median"])
    overlaps = [(x, y, float(np.mean(ppl[kinds == x] > per_kind[y]["q05"]))) for x, y in zip(order, order[1:])]
    a.summary["kinds"] = per_kind
    a.detail.update(ppl=ppl, kind_quantiles=quantiles, kind_order=order, kind_overlaps=overlaps)


def _plan(ctx: ReportContext, a: Analysis) -> None:
    bad = [p for p in ctx.plan["points"] if p["status"] != "ok"]
    a.summary["unreachable"] = [{"id": p["id"], "reason": p["reason"]} for p in bad]


def _sweep(ctx: ReportContext, a: Analysis) -> None:
    a.summary["failed_runs"] = _not_finished(ctx.sweep)
    a.detail.update(sweep_failed=[r for r in ctx.sweep if r["status"] != "ok"],
                    sweep_ok=sum(r["status"] == "ok" for r in ctx.sweep))


def _holdout(ctx: ReportContext, a: Analysis) -> None:
    """Each candidate law's error on the validation points it never saw, before any selection."""
    lc = ctx.fit.get("law_choice") or {}
    a.summary["holdout"] = {k: lc.get(k) for k in ("chosen", "validated", "trusted", "n_fit", "n_val", "reason",
                                                    "table")}


def _fit(ctx: ReportContext, kinds: np.ndarray | None, a: Analysis) -> None:
    s, opt = a.summary, ctx.fit["optimum"]
    s["optimum"] = opt
    s["fit_metrics"] = ctx.fit["metrics"]
    if opt.get("selected"):
        s["selection"] = {"selected": opt["selected"], "why": opt.get("why"), "band": opt.get("band"),
                          "best_sweep": ctx.fit.get("best_sweep") or {},
                          "confirmation": ctx.fit.get("confirmation")}  # pipeline/confirm.py's verdict, if any
    if kinds is not None and any(k in set(kinds) for k in BAND_KINDS):
        x = ctx.table.column("ppl").to_numpy()
        x = np.log(x) if ctx.recipe.fit.space == "log_ppl" else x
        lo, hi = np.quantile(x[np.isin(kinds, BAND_KINDS)], [0.05, 0.95])
        s["learnable_band"] = {"lo": float(lo), "hi": float(hi), "mu_star_inside": bool(lo <= opt["mu"] <= hi)}
        _optimum_ci(opt, float(hi - lo), a)
    _d_slopes(ctx, a)


def _optimum_ci(opt: dict, band: float, a: Analysis) -> None:
    """Is the optimum pinned? Its mu* CI against the learnable band (issue 11: at most a third of it). No key
    when there is no CI (the report says why)."""
    pick = opt.get("law_band") or {}
    ci = (opt.get("ci") or {}).get("mu") or (pick.get("ci") or {}).get("mu")
    if not ci or band <= 0:
        return
    width = float(ci[1] - ci[0])
    whose = "the selected optimum" if opt.get("ci") else "the law's best band (not selected)"
    a.summary["optimum_ci"] = {"mu": list(ci), "width": width, "learnable_band": band, "ratio": width / band,
                               "of": whose}


def _d_slopes(ctx: ReportContext, a: Analysis) -> None:
    """Does one D exponent fit every regime? The law scales the whole reducible loss by D^-aD."""
    slopes = d_slopes(ctx.sweep, ctx.recipe.fit.target)
    if len(slopes) < 2:
        return
    a_d = ctx.fit["params"].get("aD")
    lo, hi = min(slopes, key=slopes.get), max(slopes, key=slopes.get)
    spread = slopes[hi] - slopes[lo]
    # a law whose data exponent depends on the regime (regime_d, spline) has no aD to compare with
    mixed = spread > 0.2 if a_d is None else spread > max(0.2, a_d)
    a.summary["d_slopes"] = {"per_regime": slopes, "aD": a_d, "spread": spread, "heterogeneous": mixed}
    a.detail["d_slope_range"] = (lo, hi)


def _subset_idx(ctx: ReportContext, method: str, seed: int) -> np.ndarray | None:
    p = ctx.out / "select" / "subsets" / f"{method}_s{seed}.parquet"
    return read_indices(p, "row")[0] if p.is_file() else None


def _comparison(ctx: ReportContext, kinds: np.ndarray | None, a: Analysis) -> None:
    """Each method's metrics over seeds; its first seed's subset statistics and kind mix (diagnostics)."""
    sp = ctx.recipe.fit.space
    a.summary["failed_final_runs"] = _not_finished(ctx.finals)
    ok = [r for r in ctx.finals if r["status"] == "ok"]
    comp, methods = {}, {}
    for m in METHOD_ORDER:
        rs = [r for r in ok if r["method"] == m]
        if not rs:
            continue
        comp[m] = {k: mean_sd_stats([r.get(k) for r in rs]) | {"n": len(rs)} for k, _, _ in METRICS}
        mix = None if kinds is None else composition(kinds, _subset_idx(ctx, m, rs[0]["seed"]))
        methods[m] = {"n": len(rs), "mu": rs[0][f"mu_{sp}"], "sigma": rs[0][f"sigma_{sp}"], "mix": mix}
    a.summary["comparison"] = comp
    a.detail.update(methods=methods, finals_ok=len(ok), finals_failed=[r for r in ctx.finals if r["status"] != "ok"])


def _prediction(ctx: ReportContext, a: Analysis) -> None:
    """The fitted law's forecast for each method's final runs (mean over seeds) against the measurement."""
    sp = ctx.recipe.fit.space
    total = int(ctx.plan["total_tokens"])
    fit_path = ctx.out / "fit" / ctx.fit["fit"]
    pred, shown = {}, {}
    form = form_error_of_run(ctx.fit.get("law_choice") or {}, ctx.plan["sizes"])
    for m in METHOD_ORDER:
        rs = [r for r in ctx.finals if r["method"] == m and r["status"] == "ok"]
        if not rs or m == "full":  # full trains on less than one pass over a larger set: not the law's setting
            continue
        ps = [predict(fit_path, r[f"mu_{sp}"], r[f"sigma_{sp}"], r["D"], final_pool(m, r["D"], ctx.fit, total))
              for r in rs]
        measured = [r[ctx.recipe.fit.target] for r in rs]
        p = float(np.mean([x["prediction"] for x in ps]))
        lo = [x["lo"] for x in ps if x["lo"] is not None]
        hi = [x["hi"] for x in ps if x["hi"] is not None]
        err = p - float(np.mean(measured))
        ci = (float(np.mean(lo)), float(np.mean(hi))) if lo else None
        pi = interval(p, float(np.mean([r["D"] for r in rs])), form, ci)
        pred[m] = {"predicted": p, "measured": float(np.mean(measured)), "error": err,
                   "rel_error": err / float(np.mean(measured)),
                   "interval": None if pi is None else [pi["lo"], pi["hi"]],
                   "covered": None if pi is None else bool(pi["lo"] <= float(np.mean(measured)) <= pi["hi"])}
        shown[m] = {"ci": ci, "measured": mean_sd_stats(measured), "interval": pi}
    a.summary["prediction"] = pred
    largest = max(ctx.plan["sizes"])
    a.detail.update(prediction=shown, budget_over_largest=ctx.budget / largest, extrapolation=ctx.budget > largest)
