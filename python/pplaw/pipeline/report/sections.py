"""The sections of the ``pplaw run`` report, in reading order (see :mod:`pplaw.pipeline.report`), and the
machine-readable summary they fill in."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pplaw.io import read_indices
from pplaw.pipeline.report import plots
from pplaw.pipeline.report.context import (
    BAND_KINDS,
    METHOD_ORDER,
    METRICS,
    ReportContext,
    compare,
    composition,
    fmt,
    kinds_of,
    mean_sd,
)


def build(ctx: ReportContext) -> dict[str, Any]:
    """Fill ``ctx.blocks``; return the machine-readable summary (also ``summary.json``)."""
    kinds = kinds_of(ctx)
    summary: dict[str, Any] = {"name": ctx.recipe.name, "budget": ctx.budget}
    _intro(ctx)
    _headline(ctx, summary)
    _landscape(ctx, kinds, summary)
    _plan(ctx, summary)
    _sweep(ctx, summary)
    _holdout(ctx, summary)
    _fit(ctx, kinds, summary)
    _comparison(ctx, kinds, summary)
    _prediction(ctx, summary)
    timings(ctx)
    return summary


def _space(ctx) -> tuple[str, str]:
    sp = ctx.recipe.fit.space
    return sp, ("log-PPL" if sp == "log_ppl" else "PPL")


def _intro(ctx: ReportContext) -> None:
    rc, t = ctx.recipe, ctx.table
    n_tok = int(np.asarray(t.column("n_scored")).sum())
    src = (f"a synthetic world (`pplaw.synth`, hash {ctx.inputs.world_hash})" if rc.world is not None
           else f"base model `{rc.model.base_model}`, corpus `{rc.corpus.domain_data}`")
    b = ctx.blocks
    b.append(("h1", rc.report.title))
    b.append(("p", f"Recipe **{rc.name}** on {src}: {t.num_rows:,} domain chunks ({n_tok:,} scored tokens). "
                   f"Final budget D = {ctx.budget:,} tokens ({ctx.budget / n_tok:.1%} of the corpus), each run "
                   f"training on {rc.train.epochs:g} x D tokens; final comparison over seeds "
                   f"{list(rc.select.seeds)}. Law: {ctx.fit.get('law', '-')}."))


def _headline(ctx: ReportContext, summary: dict) -> None:
    lines = []
    for base in ("random", "lowest_ppl", "highest_ppl", "full"):
        cmp = compare(ctx.finals, base)
        if not cmp:
            continue
        summary.setdefault("margins", {})[base] = cmp
        parts = []
        for key, label, sign in METRICS[:3]:
            c = cmp.get(key)
            if c:
                parts.append(f"{label} {c['mean']:+.4f} ({c['verdict']})")
        lines.append(f"DOS - {base}: " + "; ".join(parts))
    ctx.blocks.append(("h2", "Result in one look"))
    if lines:
        ctx.blocks.append(("p", "Differences DOS minus baseline, mean over paired seeds (loss: negative is better "
                                "for DOS; benchmarks: positive is better):"))
        ctx.blocks.append(("pre", "\n".join(lines)))
    else:
        ctx.blocks.append(("p", "No final comparison finished (see the failed runs below)."))


def _landscape(ctx: ReportContext, kinds, summary: dict) -> None:
    b, s = ctx.blocks, ctx.landscape["summary"]
    b.append(("h2", "1. Perplexity landscape"))
    b.append(("p", f"Chunk PPL under the base model: mean {s['mean']:.4g}, std {s['std']:.4g}; log-PPL mean "
                   f"{s['log_mean']:.4g}, std {s['log_std']:.4g}; {len(ctx.landscape['edges']) - 1} token-weighted "
                   "quantile bins."))
    b.append(("img", "landscape/landscape.png", "The landscape: PPL histogram with the bin edges, token mass and "
                                                "mean PPL per bin."))
    if kinds is None:
        return
    ppl = ctx.table.column("ppl").to_numpy()
    name = plots.plot_kinds(ppl, kinds, ctx.landscape["edges"], ctx.out / "report" / "kinds.png")
    rows, per_kind = [], {}
    for k in sorted(set(kinds)):
        p = ppl[kinds == k]
        q = np.quantile(p, [0.05, 0.25, 0.5, 0.75, 0.95])
        per_kind[k] = {"n": int(p.size), "q05": q[0], "median": q[2], "q95": q[4]}
        rows.append([k, f"{p.size:,}", *(fmt(float(v)) for v in q)])
    order = sorted(per_kind, key=lambda k: per_kind[k]["median"])
    overlaps = [f"{a} above {c}'s 5% quantile: {np.mean(ppl[kinds == a] > per_kind[c]['q05']):.1%}"
                for a, c in zip(order, order[1:])]
    summary["kinds"] = per_kind
    b.append(("p", "Diagnostics only (the method never sees these labels): the hidden kind of each chunk. "
                   "Kinds ordered by median PPL: " + " < ".join(order) + ". Overlap of neighbours: "
                   + "; ".join(overlaps) + "."))
    b.append(("table", ["kind", "chunks", "PPL q05", "q25", "median", "q75", "q95"], rows))
    b.append(("img", f"report/{name}", "Per-kind PPL histograms and the kind mix of each landscape bin."))


def _plan(ctx: ReportContext, summary: dict) -> None:
    sp, label = _space(ctx)
    pts = ctx.plan["points"]
    bad = [p for p in pts if p["status"] != "ok"]
    summary["unreachable"] = [{"id": p["id"], "reason": p["reason"]} for p in bad]
    b = ctx.blocks
    b.append(("h2", "2. Fitting grid"))
    b.append(("p", f"{len(ctx.plan['regimes'])} regimes (windows of landscape bins and mixtures of two windows) x "
                   f"sizes {[f'{d:,}' for d in ctx.plan['sizes']]} tokens x R {list(ctx.recipe.plan.replay_ratios)} x "
                   f"seeds {list(ctx.recipe.plan.seeds)}: {len(pts)} points, {len(pts) - len(bad)} realisable."))
    b.append(("img", "plan/plan.png", f"Planned subsets in the ({label} mean, std) plane over the realisable region."))
    if bad:
        b.append(("p", "Points the corpus cannot realise (kept out of the sweep, not moved):"))
        b.append(("table", ["point", "reason"], [[p["id"], p["reason"]] for p in bad]))


def _sweep(ctx: ReportContext, summary: dict) -> None:
    sp, label = _space(ctx)
    rows = ctx.sweep
    target = ctx.recipe.fit.target
    b = ctx.blocks
    failed = [r for r in rows if r["status"] != "ok"]  # failed, or (never silently) not finished
    summary["failed_runs"] = [{"id": r["id"], "error": r["error"] or f"status {r['status']}"} for r in failed]
    b.append(("h2", "3. Sweep"))
    n_ok = sum(r["status"] == "ok" for r in rows)
    b.append(("p", f"{n_ok} of {len(rows)} runs finished" + (f"; {len(failed)} FAILED (listed below; the sweep went "
                                                             "on without them)." if failed else ".")))
    b.append(("img", f"report/{plots.plot_sweep(rows, sp, target, ctx.out / 'report' / 'sweep.png')}",
              f"{target} of every sweep run against its subset's statistics."))
    table = [[r["id"], r["shape"], f"{r['D']:,}", fmt(r["R"]), fmt(r[f"mu_{sp}"]), fmt(r[f"sigma_{sp}"]),
              fmt(r.get("domain_loss")), fmt(r.get("general_loss")), r["status"]] for r in rows]
    b.append(("table", ["run", "shape", "D", "R", f"mu ({label})", f"sigma ({label})", "domain loss", "general loss",
                        "status"], table))
    if failed:
        b.append(("table", ["failed run", "error"], [[r["id"], (r["error"] or "")[:400]] for r in failed]))


def _holdout(ctx: ReportContext, summary: dict) -> None:
    """Each candidate law's error on the validation points it never saw, before any selection."""
    lc = ctx.fit.get("law_choice") or {}
    summary["holdout"] = {k: lc.get(k) for k in ("chosen", "validated", "trusted", "n_fit", "n_val", "reason",
                                                  "table")}
    b = ctx.blocks
    b.append(("h2", "4a. Held-out validation: does the law predict runs it never saw?"))
    if not lc.get("validated"):
        b.append(("p", f"**Not validated.** {lc.get('reason', 'no held-out points')}. Add "
                       "`plan.validation_sizes` (>= 2x the largest of `plan.sizes`) to measure it."))
        return
    rows = [[r["law"], fmt(r.get("holdout_mape")), fmt(r.get("holdout_worst_signed")),
             fmt(r.get("insample_mape")), fmt(r.get("r2"))] for r in lc.get("table", [])]
    b.append(("p", f"Every candidate law was fitted on the {lc['n_fit']} fitting runs only and predicted the "
                   f"{lc['n_val']} held-out runs (larger D). Chosen: **{lc['chosen']}**: {lc['reason']}. "
                   "The chosen law is then refitted on every run for the optimum and the final prediction."
                   + (f" It is the best of {len(rows)} candidates on these {lc['n_val']} points, so its held-out "
                      "MAPE flatters it somewhat; the final runs' forecast (section 6), never used to choose, is "
                      "the independent check." if len(rows) > 2 else "")))
    b.append(("table", ["law", "held-out MAPE %", "worst point %", "in-sample MAPE %", "in-sample R^2"], rows))
    b.append(("img", f"fit/{lc['plot']}", "predicted vs measured on the held-out runs"))
    if not lc.get("trusted"):
        b.append(("p", f"**Warning: the chosen law's held-out MAPE exceeds {10:.0f}%: its predicted losses at the "
                       "final budget are not fit to be trusted for planning compute.**"))


def _fit(ctx: ReportContext, kinds, summary: dict) -> None:
    sp, label = _space(ctx)
    f, opt = ctx.fit, ctx.fit["optimum"]
    summary["optimum"] = opt
    summary["fit_metrics"] = f["metrics"]
    b = ctx.blocks
    b.append(("h2", "4. The perplexity-aware law and its optimum"))
    m = f["metrics"]
    b.append(("p", f"{f['law']} fitted to {f['n_runs']} runs: R^2 {m['r2']:.4f}, RMSE {m['rmse']:.4g}, MAPE "
                   f"{m['mape']:.3g}%."))
    for name in f["plots"]:
        b.append(("img", f"fit/{name}", name.replace("_", " ").replace(".png", "")))
    ci = opt.get("ci") or {}

    def ci_s(k):
        return f" [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else " (no CI)"

    text = (f"Optimum in {label} space, searched in the {opt['region']}: mu* = {opt['mu']:.4g}{ci_s('mu')}, "
            f"sigma* = {opt['sigma']:.4g}{ci_s('sigma')} ({100 * opt.get('level', 0.95):.0f}% bootstrap CI).")
    if opt.get("on_boundary"):
        text += (" The optimum lies ON THE EDGE of the search region: the law would prefer (mu, sigma) outside it, "
                 "so this is a constrained optimum.")
    b.append(("p", text))
    if opt.get("selected"):
        bs = ctx.fit.get("best_sweep") or {}
        summary["selection"] = {"selected": opt["selected"], "why": opt.get("why"), "band": opt.get("band"),
                                "best_sweep": bs}
        b.append(("p", f"Selection family: contiguous bands of the landscape sampled uniformly ({opt.get('n_bands')} "
                       f"bands hold the budget, {opt.get('n_bands_searched')} searched). Best sweep regime: "
                       f"{bs.get('regime')} (run {bs.get('run')}, {ctx.recipe.fit.target} {bs.get('loss', float('nan')):.4f}), "
                       f"as band {bs.get('band')} at the budget. **DOS selects "
                       f"{'the law' + chr(39) + 's best band' if opt['selected'] == 'law' else 'the best sweep regime'}** "
                       f"{opt.get('band')}: {opt.get('why')}."))
    if kinds is not None and any(k in set(kinds) for k in BAND_KINDS):
        x = ctx.table.column("ppl").to_numpy()
        x = np.log(x) if sp == "log_ppl" else x
        band_mask = np.isin(kinds, BAND_KINDS)
        lo, hi = np.quantile(x[band_mask], [0.05, 0.95])
        inside = bool(lo <= opt["mu"] <= hi)
        summary["learnable_band"] = {"lo": float(lo), "hi": float(hi), "mu_star_inside": inside}
        b.append(("p", f"Diagnostics: the {'/'.join(BAND_KINDS)} chunks span {label} [{lo:.4g}, {hi:.4g}] (5%-95%); "
                       f"mu* = {opt['mu']:.4g} is {'INSIDE' if inside else 'OUTSIDE'} this learnable band."))
        _ci_width(ctx, opt, float(hi - lo), summary)
    if f.get("variants"):
        ho = "holdout_rmse" in f["variants"][0]
        rows = [[v["variant"], fmt(v["rmse"]), fmt(v["r2"]), fmt(v["mape"])]
                + ([fmt(v["holdout_rmse"]), fmt(v["holdout_mape"])] if ho else []) + [v["converged"]]
                for v in f["variants"]]
        used = f"{ctx.recipe.fit.space}/{ctx.recipe.fit.sigma}"
        note = "" if used == f["best_variant"] else f" The recipe uses **{used}**, not the best-ranked variant."
        b.append(("p", f"Law variants (sigma as std or variance, in PPL or log-PPL), ranked by "
                       f"{'held-out (' + str(ctx.recipe.fit.variants_holdout) + ') MAPE' if ho else 'in-sample RMSE'}, "
                       f"best first: **{f['best_variant']}**.{note}"))
        b.append(("table", ["variant", "RMSE", "R^2", "MAPE %"] + (["held-out RMSE", "held-out MAPE %"] if ho else [])
                  + ["converged"], rows))
    if f.get("warnings"):
        b.append(("p", "Fit warnings: " + " | ".join(f["warnings"])))
    _d_slopes(ctx, f, summary)
    path = ctx.out / "fit" / f["summary"]
    if path.is_file():
        b.append(("pre", path.read_text(encoding="utf-8")))


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


def _ci_width(ctx: ReportContext, opt: dict, band: float, summary: dict) -> None:
    """Is the optimum pinned? Its mu* CI against the learnable band (issue 11: at most a third of it)."""
    pick = opt.get("law_band") or {}
    ci = (opt.get("ci") or {}).get("mu") or (pick.get("ci") or {}).get("mu")
    if not ci or band <= 0:
        why = ("the fit has no bootstrap draws (fit.bootstrap: 0)" if ctx.recipe.fit.bootstrap == 0 else
               "no band the law could pick lies inside the fitted hull")
        ctx.blocks.append(("p", f"Precision of the optimum: no CI on mu* ({why})."))
        return
    width = float(ci[1] - ci[0])
    ratio = width / band
    whose = "the selected optimum" if opt.get("ci") else "the law's best band (not selected)"
    summary["optimum_ci"] = {"mu": list(ci), "width": width, "learnable_band": band, "ratio": ratio, "of": whose}
    verdict = ("within a third of it" if ratio <= 1 / 3 else
               "WIDER than a third of it: the sweep does not pin the optimum inside the learnable band; bands "
               "across that CI are predicted to be equally good within the law's uncertainty")
    ctx.blocks.append(("p", f"Precision of the optimum: the {100 * opt.get('level', 0.95):.0f}% CI of mu* for "
                            f"{whose} is [{ci[0]:.4g}, {ci[1]:.4g}] ({width:.3g} wide), {ratio:.2f} of the learnable "
                            f"band's width: {verdict}."))


def _d_slopes(ctx: ReportContext, f: dict, summary: dict) -> None:
    """Does one D exponent fit every regime? The law scales the whole reducible loss by D^-aD."""
    slopes = d_slopes(ctx.sweep, ctx.recipe.fit.target)
    if len(slopes) < 2:
        return
    a_d = f["params"].get("aD")
    lo, hi = min(slopes, key=slopes.get), max(slopes, key=slopes.get)
    spread = slopes[hi] - slopes[lo]
    base = (f"the regimes' own log-log slopes of {ctx.recipe.fit.target} in D range from {slopes[lo]:.3g} ({lo}) to "
            f"{slopes[hi]:.3g} ({hi})")
    if a_d is None:  # a law whose data exponent depends on the regime (regime_d, logquad, spline)
        mixed = False
        summary["d_slopes"] = {"per_regime": slopes, "aD": None, "spread": spread, "heterogeneous": spread > 0.2}
        text = (f"Scaling with D: the chosen law gives each regime its own data exponent; {base}.")
    else:
        mixed = spread > max(0.2, a_d)
        summary["d_slopes"] = {"per_regime": slopes, "aD": a_d, "spread": spread, "heterogeneous": mixed}
        text = f"Scaling with D: the law has one D exponent for every regime (aD = {fmt(a_d)}); {base}."
    if mixed:
        text += (" This spread is LARGE: the law cannot follow how each regime scales with D, and the misfit also "
                 "bends its (mu, sigma) shape (more sweep sizes make it weigh more). Trust the optimum less and "
                 "look at the loss-vs-D plot.")
    b = ctx.blocks
    b.append(("p", text))


def _subset_idx(ctx, method: str, seed: int) -> np.ndarray | None:
    p = ctx.out / "select" / "subsets" / f"{method}_s{seed}.parquet"
    return read_indices(p, "row")[0] if p.is_file() else None


def _mean_sd_summary(values: list) -> dict[str, float | None]:
    """``{"mean", "sd"}`` of the finite values: mean None when there is none (no benchmark was run), sd None
    when there are fewer than two."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {"mean": float(np.mean(vals)) if vals else None,
            "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


def _comparison(ctx: ReportContext, kinds, summary: dict) -> None:
    sp, label = _space(ctx)
    fin = ctx.finals
    ok = [r for r in fin if r["status"] == "ok"]
    summary["failed_final_runs"] = [{"id": r["id"], "error": r["error"] or f"status {r['status']}"}
                                    for r in fin if r["status"] != "ok"]
    b = ctx.blocks
    b.append(("h2", "5. DOS vs baselines at the same budget"))
    b.append(("p", f"Every method selects D = {ctx.budget:,} tokens (full: the whole corpus) and trains on the same "
                   f"number of tokens; mean ± sd over seeds {list(ctx.recipe.select.seeds)}."))
    rows, comp = [], {}
    for m in METHOD_ORDER:
        rs = [r for r in ok if r["method"] == m]
        if not rs:
            continue
        comp[m] = {k: _mean_sd_summary([r.get(k) for r in rs]) | {"n": len(rs)} for k, _, _ in METRICS}
        mix = ""
        if kinds is not None:
            idx = _subset_idx(ctx, m, rs[0]["seed"])
            c = composition(kinds, idx)
            mix = ", ".join(f"{k} {v:.0%}" for k, v in c.items())
        rows.append([m, len(rs), *(mean_sd([r.get(k) for r in rs]) for k, _, _ in METRICS),
                     fmt(rs[0][f"mu_{sp}"]), fmt(rs[0][f"sigma_{sp}"]), mix or "-"])
    summary["comparison"] = comp
    b.append(("table", ["method", "seeds", "domain loss", "domain benchmark", "general benchmark", "general loss",
                        f"mu ({label})", f"sigma ({label})", "kinds (diagnostics)"], rows))
    if ok:
        b.append(("img", f"report/{plots.plot_comparison(fin, ctx.out / 'report' / 'comparison.png')}",
                  "DOS vs baselines: domain loss, domain benchmark, general benchmark."))
    mrows = []
    for base, cmp in (summary.get("margins") or {}).items():
        for key, label_m, _ in METRICS:
            c = cmp.get(key)
            if c:
                sd = "" if math.isnan(c["sd"]) else f" ± {c['sd']:.4f}"
                mrows.append([f"DOS - {base}", label_m, f"{c['mean']:+.4f}{sd}", f"{c['wins']}/{c['n']}", c["verdict"]])
    if mrows:
        b.append(("p", "Margins, paired by seed (sd of the paired differences; a margin smaller than its sd is not a "
                       "reliable difference):"))
        b.append(("table", ["comparison", "metric", "margin", "DOS better in", "verdict"], mrows))
    failed = [r for r in fin if r["status"] != "ok"]
    if failed:
        b.append(("table", ["final run not finished", "status", "error"],
                  [[r["id"], r["status"], (r.get("error") or "")[:300]] for r in failed]))


def _prediction(ctx: ReportContext, summary: dict) -> None:
    from pplaw.pipeline.select import final_pool, predict

    sp, _ = _space(ctx)
    total = int(ctx.plan["total_tokens"])
    fit_path = ctx.out / "fit" / ctx.fit["fit"]
    rows, pred = [], {}
    for m in METHOD_ORDER:
        rs = [r for r in ctx.finals if r["method"] == m and r["status"] == "ok"]
        if not rs or m == "full":
            continue
        ps = [predict(fit_path, r[f"mu_{sp}"], r[f"sigma_{sp}"], r["D"], final_pool(m, r["D"], ctx.fit, total))
              for r in rs]
        measured = [r[ctx.recipe.fit.target] for r in rs]
        p = float(np.mean([x["prediction"] for x in ps]))
        lo = [x["lo"] for x in ps if x["lo"] is not None]
        hi = [x["hi"] for x in ps if x["hi"] is not None]
        ci = f" [{np.mean(lo):.4f}, {np.mean(hi):.4f}]" if lo else ""
        err = p - float(np.mean(measured))
        pred[m] = {"predicted": p, "measured": float(np.mean(measured)), "error": err,
                   "rel_error": err / float(np.mean(measured))}
        rows.append([m, f"{p:.4f}{ci}", mean_sd(measured), f"{err:+.4f} ({err / np.mean(measured):+.1%})"])
    summary["prediction"] = pred
    b = ctx.blocks
    b.append(("h2", "6. The law's prediction for the final runs vs the measurement"))
    sizes, largest = [f"{d:,}" for d in ctx.plan["sizes"]], max(ctx.plan["sizes"])
    where = (f"{ctx.budget / largest:.2g}x the largest sweep size: an extrapolation in D" if ctx.budget > largest
             else "within the sweep's sizes: an interpolation in D")
    b.append(("p", f"The law fitted on the sweep predicts {ctx.recipe.fit.target} from each final subset's (mu, sigma, "
                   f"D) (CI: bootstrap, parameter uncertainty only). D = {ctx.budget:,} against sweep sizes {sizes} "
                   f"is {where}. `full` is left out (it trains on less than one pass over a larger set, outside the "
                   "law's setting)."))
    if rows:
        b.append(("table", ["method", "predicted", "measured (mean ± sd)", "error (pred - meas)"], rows))


def timings(ctx: ReportContext) -> None:
    rows = []
    for t in ctx.timings:
        if t["cached"]:
            took = f"cached (took {t['original_seconds']:.1f} s when it ran)" if t.get("original_seconds") else "cached"
            rows.append([t["stage"], "0.0", took])
        else:
            rows.append([t["stage"], "-" if t["seconds"] is None else f"{t['seconds']:.1f}", "ran"])
    ctx.blocks.append(("h2", "7. Time per stage"))
    ctx.blocks.append(("table", ["stage", "seconds (this invocation)", "status"], rows))
    ctx.blocks.append(("p", f"Total wall time of this invocation: {ctx.total_seconds:.1f} s "
                            f"({ctx.total_seconds / 60:.1f} min). Run directory: `{ctx.out}`; machine-readable "
                            "results in `summary.json`."))

