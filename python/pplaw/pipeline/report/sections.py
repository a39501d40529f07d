"""The sections of the ``pplaw run`` report, in reading order (see :mod:`pplaw.pipeline.report`).

They only render: every number comes from the :class:`~pplaw.pipeline.analysis.Analysis` of the run (the
summary and its report-only detail); ``ctx`` gives the recipe's settings, the names of the stages' files and
plots, and the artefacts' own values that the report quotes as they are (the law's name, its variants,
the fit's warnings, the sweep's table)."""

from __future__ import annotations

import math

from pplaw.pipeline.analysis import BAND_KINDS, METRICS, Analysis
from pplaw.pipeline.plan import window_tokens
from pplaw.pipeline.report import plots
from pplaw.pipeline.report.context import ReportContext, fmt, mean_sd


def render(ctx: ReportContext, a: Analysis) -> None:
    """Fill ``ctx.blocks`` from ``a`` (and make the report's plots)."""
    _intro(ctx, a)
    _headline(ctx, a)
    _landscape(ctx, a)
    _plan(ctx, a)
    _sweep(ctx, a)
    _holdout(ctx, a)
    _fit(ctx, a)
    _comparison(ctx, a)
    _prediction(ctx, a)
    timings(ctx)


def _space(ctx) -> tuple[str, str]:
    sp = ctx.recipe.fit.space
    return sp, ("log-PPL" if sp == "log_ppl" else "PPL")


def _intro(ctx: ReportContext, a: Analysis) -> None:
    rc, t = ctx.recipe, ctx.table
    src = (f"a synthetic world (`pplaw.synth`, hash {ctx.inputs.world_hash})" if rc.world is not None
           else f"base model `{rc.model.base_model}`, corpus `{rc.corpus.domain_data}`")
    b = ctx.blocks
    b.append(("h1", rc.report.title))
    if not a.summary["holdout"]["validated"]:  # first, not only in section 4a: every forecast below is untested
        b.append(("p", f"**Warning: the law is not validated.** {no_validation_reason(ctx, a)}."))
    b.append(("p", f"Recipe **{rc.name}** on {src}: {t.num_rows:,} domain chunks ({a.detail['n_tokens']:,} scored "
                   f"tokens). Final budget D = {ctx.budget:,} tokens ({a.detail['budget_share']:.1%} of the corpus), "
                   f"each run training on {rc.train.epochs:g} x D tokens; final comparison over seeds "
                   f"{list(rc.select.seeds)}. Law: {ctx.fit.get('law', '-')}."))


def no_validation_reason(ctx: ReportContext, a: Analysis) -> str:
    """Why the run has no held-out validation: the plan's reason (turned off, or the default size does not fit
    the corpus), else the law choice's (no validation run finished)."""
    return ctx.plan.get("validation_note") or a.summary["holdout"].get("reason") or "no held-out points"


def _headline(ctx: ReportContext, a: Analysis) -> None:
    lines = []
    for base, cmp in (a.summary.get("margins") or {}).items():
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


def _landscape(ctx: ReportContext, a: Analysis) -> None:
    b, s = ctx.blocks, ctx.landscape["summary"]
    b.append(("h2", "1. Perplexity landscape"))
    b.append(("p", f"Chunk PPL under the base model: mean {s['mean']:.4g}, std {s['std']:.4g}; log-PPL mean "
                   f"{s['log_mean']:.4g}, std {s['log_std']:.4g}; {len(ctx.landscape['edges']) - 1} token-weighted "
                   "quantile bins."))
    b.append(("img", "landscape/landscape.png", "The landscape: PPL histogram with the bin edges, token mass and "
                                                "mean PPL per bin."))
    if "kinds" not in a.summary:  # no diagnostics file
        return
    d, per_kind = a.detail, a.summary["kinds"]
    name = plots.plot_kinds(d["ppl"], d["kinds"], ctx.landscape["edges"], ctx.out / "report" / "kinds.png")
    rows = [[k, f"{per_kind[k]['n']:,}", *(fmt(v) for v in d["kind_quantiles"][k])] for k in per_kind]
    overlaps = [f"{x} above {y}'s 5% quantile: {share:.1%}" for x, y, share in d["kind_overlaps"]]
    b.append(("p", "Diagnostics only (the method never sees these labels): the hidden kind of each chunk. "
                   "Kinds ordered by median PPL: " + " < ".join(d["kind_order"]) + ". Overlap of neighbours: "
                   + "; ".join(overlaps) + "."))
    b.append(("table", ["kind", "chunks", "PPL q05", "q25", "median", "q75", "q95"], rows))
    b.append(("img", f"report/{name}", "Per-kind PPL histograms and the kind mix of each landscape bin."))


def _plan(ctx: ReportContext, a: Analysis) -> None:
    sp, label = _space(ctx)
    pts, bad = ctx.plan["points"], a.summary["unreachable"]
    b = ctx.blocks
    b.append(("h2", "2. Fitting grid"))
    b.append(("p", f"{len(ctx.plan['regimes'])} regimes (windows of landscape bins and mixtures of two windows) x "
                   f"sizes {[f'{d:,}' for d in ctx.plan['sizes']]} tokens x R {list(ctx.recipe.plan.replay_ratios)} x "
                   f"seeds {list(ctx.recipe.plan.seeds)}: {len(pts)} points, {len(pts) - len(bad)} realisable."))
    b.append(("img", "plan/plan.png", f"Planned subsets in the ({label} mean, std) plane over the realisable region."))
    if bad:
        b.append(("p", "Points the corpus cannot realise (kept out of the sweep, not moved):"))
        b.append(("table", ["point", "reason"], [[p["id"], p["reason"]] for p in bad]))


def _sweep(ctx: ReportContext, a: Analysis) -> None:
    sp, label = _space(ctx)
    rows = ctx.sweep
    target = ctx.recipe.fit.target
    b = ctx.blocks
    failed = a.detail["sweep_failed"]  # failed, or (never silently) not finished
    b.append(("h2", "3. Sweep"))
    b.append(("p", f"{a.detail['sweep_ok']} of {len(rows)} runs finished"
                   + (f"; {len(failed)} FAILED (listed below; the sweep went on without them)." if failed else ".")))
    b.append(("img", f"report/{plots.plot_sweep(rows, sp, target, ctx.out / 'report' / 'sweep.png')}",
              f"{target} of every sweep run against its subset's statistics."))
    table = [[r["id"], r["shape"], f"{r['D']:,}", fmt(r["R"]), fmt(r[f"mu_{sp}"]), fmt(r[f"sigma_{sp}"]),
              fmt(r.get("domain_loss")), fmt(r.get("general_loss")), r["status"]] for r in rows]
    b.append(("table", ["run", "shape", "D", "R", f"mu ({label})", f"sigma ({label})", "domain loss", "general loss",
                        "status"], table))
    if failed:
        b.append(("table", ["failed run", "error"], [[r["id"], (r["error"] or "")[:400]] for r in failed]))


def _holdout(ctx: ReportContext, a: Analysis) -> None:
    """Each candidate law's error on the validation points it never saw, before any selection."""
    h = a.summary["holdout"]
    lc = ctx.fit.get("law_choice") or {}  # for its plot's name, and its reason when it gives none
    b = ctx.blocks
    b.append(("h2", "4a. Held-out validation: does the law predict runs it never saw?"))
    if not h["validated"]:
        b.append(("p", f"**Not validated.** {no_validation_reason(ctx, a)}."))
        return
    rows = [[r["law"], fmt(r.get("holdout_mape")), fmt(r.get("holdout_worst_signed")), fmt(r.get("holdout_diff_max")),
             fmt(r.get("insample_mape")), fmt(r.get("r2"))] for r in h["table"] or []]
    b.append(("p", f"Every candidate law was fitted on the {h['n_fit']} fitting runs only and predicted the "
                   f"{h['n_val']} held-out runs (larger D). Chosen: **{h['chosen']}**: {h['reason']}. "
                   "The chosen law is then refitted on every run for the optimum and the final prediction."
                   + (f" It is the best of {len(rows)} candidates on these {h['n_val']} points, so its held-out "
                      "MAPE flatters it somewhat; the final runs' forecast (section 6), never used to choose, is "
                      "the independent check." if len(rows) > 2 else "")))
    b.append(("table", ["law", "held-out MAPE %", "worst point %", "worst gap error", "in-sample MAPE %",
                        "in-sample R^2"], rows))
    b.append(("p", "*worst gap error*: the largest error of the law's predicted difference between two held-out "
                   "runs of one size (in units of the target). The selection compares two subsets at one budget, so "
                   "a predicted gain smaller than this is not trusted (section 4)."))
    b.append(("img", f"fit/{lc['plot']}", "predicted vs measured on the held-out runs"))
    if not h["trusted"]:
        b.append(("p", f"**Warning: the chosen law's held-out MAPE exceeds {10:.0f}%: its predicted losses at the "
                       "final budget are not fit to be trusted for planning compute.**"))


def _fit(ctx: ReportContext, a: Analysis) -> None:
    sp, label = _space(ctx)
    f, opt, s = ctx.fit, a.summary["optimum"], a.summary
    b = ctx.blocks
    b.append(("h2", "4. The perplexity-aware law and its optimum"))
    m = s["fit_metrics"]
    floor = (f.get("floor") or {})
    how = f" Its floor E = {floor['e']:.4g}: {floor['how']}." if floor.get("how") and floor.get("e") is not None else ""
    b.append(("p", f"{f['law']} fitted to {f['n_runs']} runs: R^2 {m['r2']:.4f}, RMSE {m['rmse']:.4g}, MAPE "
                   f"{m['mape']:.3g}%.{how}"))
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
    if "selection" in s:
        sel, bs = s["selection"], s["selection"]["best_sweep"]
        b.append(("p", f"Selection family: contiguous bands of the landscape sampled uniformly ({opt.get('n_bands')} "
                       f"bands hold the budget, {opt.get('n_bands_searched')} searched). Best sweep regime: "
                       f"{bs.get('regime')} (run {bs.get('run')}, {ctx.recipe.fit.target} {bs.get('loss', float('nan')):.4f}), "
                       f"as band {bs.get('band')} at the budget. **DOS selects "
                       f"{'the law' + chr(39) + 's best band' if sel['selected'] == 'law' else 'the best sweep regime'}** "
                       f"{sel['band']}: {sel['why']}."))
    if "learnable_band" in s:
        lb = s["learnable_band"]
        b.append(("p", f"Diagnostics: the {'/'.join(BAND_KINDS)} chunks span {label} [{lb['lo']:.4g}, {lb['hi']:.4g}] "
                       f"(5%-95%); mu* = {opt['mu']:.4g} is {'INSIDE' if lb['mu_star_inside'] else 'OUTSIDE'} this "
                       "learnable band."))
        _ci_width(ctx, a)
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
    _d_slopes(ctx, a)
    path = ctx.out / "fit" / f["summary"]
    if path.is_file():
        b.append(("pre", path.read_text(encoding="utf-8")))


def _ci_width(ctx: ReportContext, a: Analysis) -> None:
    """Is the optimum pinned? Its mu* CI against the learnable band (issue 11: at most a third of it)."""
    opt, oc = a.summary["optimum"], a.summary.get("optimum_ci")
    if oc is None:
        why = ("the fit has no bootstrap draws (fit.bootstrap: 0)" if ctx.recipe.fit.bootstrap == 0 else
               "no band the law could pick lies inside the fitted hull")
        ctx.blocks.append(("p", f"Precision of the optimum: no CI on mu* ({why})."))
        return
    ci, width, ratio = oc["mu"], oc["width"], oc["ratio"]
    verdict = ("within a third of it" if ratio <= 1 / 3 else
               "WIDER than a third of it: the sweep does not pin the optimum inside the learnable band; bands "
               "across that CI are predicted to be equally good within the law's uncertainty")
    ctx.blocks.append(("p", f"Precision of the optimum: the {100 * opt.get('level', 0.95):.0f}% CI of mu* for "
                            f"{oc['of']} is [{ci[0]:.4g}, {ci[1]:.4g}] ({width:.3g} wide), {ratio:.2f} of the "
                            f"learnable band's width: {verdict}."))


def _d_slopes(ctx: ReportContext, a: Analysis) -> None:
    """Does one D exponent fit every regime? The law scales the whole reducible loss by D^-aD."""
    ds = a.summary.get("d_slopes")
    if ds is None:  # fewer than two regimes with a slope
        return
    slopes, a_d = ds["per_regime"], ds["aD"]
    lo, hi = a.detail["d_slope_range"]
    base = (f"the regimes' own log-log slopes of {ctx.recipe.fit.target} in D range from {slopes[lo]:.3g} ({lo}) to "
            f"{slopes[hi]:.3g} ({hi})")
    if a_d is None:  # a law whose data exponent depends on the regime (regime_d, spline)
        text = (f"Scaling with D: the chosen law gives each regime its own data exponent; {base}.")
    else:
        text = f"Scaling with D: the law has one D exponent for every regime (aD = {fmt(a_d)}); {base}."
    if a_d is not None and ds["heterogeneous"]:  # a regime's own exponent cannot be misfit by one aD
        text += (" This spread is LARGE: the law cannot follow how each regime scales with D, and the misfit also "
                 "bends its (mu, sigma) shape (more sweep sizes make it weigh more). Trust the optimum less and "
                 "look at the loss-vs-D plot.")
    b = ctx.blocks
    b.append(("p", text))


def _repeats(ctx: ReportContext) -> str:
    """Which final bands repeat (``select.max_repeat`` > 1), with their passes over the band ('' when none)."""
    if ctx.recipe.select.max_repeat <= 1:
        return ""
    said = []
    for name, band in (("DOS", (ctx.fit.get("optimum") or {}).get("band")),
                       ("best sweep", (ctx.fit.get("best_sweep") or {}).get("band"))):
        if band is not None:
            P = window_tokens(ctx.table, band)
            said.append(f"{name}'s band {[round(float(x), 3) for x in band]} holds {P:,} tokens "
                        f"({max(1.0, ctx.budget / P):.2f} passes per epoch of D)")
    return "; ".join(said)


def _comparison(ctx: ReportContext, a: Analysis) -> None:
    sp, label = _space(ctx)
    fin = ctx.finals
    b = ctx.blocks
    b.append(("h2", "5. DOS vs baselines at the same budget"))
    b.append(("p", f"Every method selects D = {ctx.budget:,} tokens (full: the whole corpus) and trains on the same "
                   f"number of tokens; mean ± sd over seeds {list(ctx.recipe.select.seeds)}."))
    for note in ctx.notes:
        b.append(("p", f"**Note:** {note}."))
    rep = _repeats(ctx)
    if rep:
        b.append(("p", f"select.max_repeat = {ctx.recipe.select.max_repeat:g}: a band holding fewer than D tokens is "
                       f"taken whole and trained for the same number of tokens, repeating it: {rep}."))
    rows = []
    for m, comp in a.summary["comparison"].items():
        meth = a.detail["methods"][m]
        mix = ", ".join(f"{k} {v:.0%}" for k, v in (meth["mix"] or {}).items())
        rows.append([m, meth["n"], *(mean_sd(comp[k]) for k, _, _ in METRICS),
                     fmt(meth["mu"]), fmt(meth["sigma"]), mix or "-"])
    b.append(("table", ["method", "seeds", "domain loss", "domain benchmark", "general benchmark", "general loss",
                        f"mu ({label})", f"sigma ({label})", "kinds (diagnostics)"], rows))
    if a.detail["finals_ok"]:
        b.append(("img", f"report/{plots.plot_comparison(fin, ctx.out / 'report' / 'comparison.png')}",
                  "DOS vs baselines: domain loss, domain benchmark, general benchmark."))
    mrows = []
    for base, cmp in (a.summary.get("margins") or {}).items():
        for key, label_m, _ in METRICS:
            c = cmp.get(key)
            if c:
                sd = "" if math.isnan(c["sd"]) else f" ± {c['sd']:.4f}"
                mrows.append([f"DOS - {base}", label_m, f"{c['mean']:+.4f}{sd}", f"{c['wins']}/{c['n']}", c["verdict"]])
    if mrows:
        b.append(("p", "Margins, paired by seed (sd of the paired differences; a margin smaller than its sd is not a "
                       "reliable difference):"))
        b.append(("table", ["comparison", "metric", "margin", "DOS better in", "verdict"], mrows))
    failed = a.detail["finals_failed"]
    if failed:
        b.append(("table", ["final run not finished", "status", "error"],
                  [[r["id"], r["status"], (r.get("error") or "")[:300]] for r in failed]))


def _prediction(ctx: ReportContext, a: Analysis) -> None:
    rows = []
    for m, p in a.summary["prediction"].items():
        shown = a.detail["prediction"][m]
        ci = f" [{shown['ci'][0]:.4f}, {shown['ci'][1]:.4f}]" if shown["ci"] else ""
        pi = shown.get("interval")
        pis = "- (no validation runs)" if pi is None else (
            f"[{pi['lo']:.4f}, {pi['hi']:.4f}] {'covers' if p.get('covered') else 'MISSES'} "
            f"(sd form {pi['sd_form']:.3f}, bootstrap {pi['sd_boot']:.3f})")
        rows.append([m, f"{p['predicted']:.4f}{ci}", pis, mean_sd(shown["measured"]),
                     f"{p['error']:+.4f} ({p['rel_error']:+.1%})"])
    b = ctx.blocks
    b.append(("h2", "6. The law's prediction for the final runs vs the measurement"))
    sizes = [f"{d:,}" for d in ctx.plan["sizes"]]
    where = (f"{a.detail['budget_over_largest']:.2g}x the largest sweep size: an extrapolation in D"
             if a.detail["extrapolation"] else "within the sweep's sizes: an interpolation in D")
    b.append(("p", f"The law fitted on the sweep predicts {ctx.recipe.fit.target} from each final subset's (mu, sigma, "
                   f"D) (CI: bootstrap, parameter uncertainty only). D = {ctx.budget:,} against sweep sizes {sizes} "
                   f"is {where}. `full` is left out (it trains on less than one pass over a larger set, outside the "
                   "law's setting). The 90% prediction interval adds the law's error of form measured on the "
                   "held-out validation runs (RMS log error, bias included), grown with the log extrapolation "
                   "distance from the largest fitting size, to the bootstrap's noise (pplaw.pipeline.forecast)."))
    if rows:
        b.append(("table", ["method", "predicted [bootstrap CI]", "90% prediction interval", "measured (mean ± sd)",
                            "error (pred - meas)"], rows))


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

