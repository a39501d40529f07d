"""The select stage: which subset to train on at the final budget, and the baselines beside it.

1. **Band family** (:func:`choose_band`): the subsets the final selection may take are contiguous bands of
   the landscape sampled uniformly, the family the sweep's windows belong to (never a free (mu, sigma)
   match, which a bimodal mix of the corpus' two ends can realise). Every band that holds the budget is
   realised (:func:`candidate_bands`); the chosen law (refitted on all sweep points,
   :mod:`pplaw.pipeline.fit`) predicts each one's loss at the final budget; bands outside the convex hull of
   the fitted (mu, sigma) are dropped when ``select.region`` is ``fitted`` or ``both`` (the law has not been
   seen there). The best band is the law's pick (:func:`law_band`).
2. **Never worse than the evidence**: the *best sweep regime* (the lowest-loss sweep run at the largest
   fitting size, its regime's band widened to the budget, :func:`best_sweep_band`) is both a baseline and the
   fallback: when the law's predicted gain over it is within the law's own uncertainty, the loop selects it
   instead (:func:`decide`). That uncertainty has two parts, and the gain must clear both: the bootstrap CI of
   the gain (the fit's noise) and the held-out error on differences (how far the law mispredicted the gap
   between two validation runs of one size: its error of form where it extrapolates, which resampling the
   sweep runs cannot see). The band decision runs inside the fit stage (its outcome is cached with the fit);
   the confirm stage then measures the law's band at the validation size, both when it was selected and when
   its gain was positive but within the uncertainty (:mod:`pplaw.pipeline.confirm`), and keeps it only if it wins.
3. **Subsets** at the final budget D (:func:`select_subsets`): DOS (``pplaw.select_dos`` to ``(mu*, sigma*)``,
   or the selected band), and the baselines: ``random`` (``pplaw.sample_subset`` without a target),
   ``lowest_ppl`` / ``highest_ppl`` (the D tokens of lowest / highest PPL), ``full`` (every chunk, trained
   for the same number of tokens as the others), ``best_sweep`` (the best sweep regime's band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from pplaw._atomic import atomic_write_text
from pplaw.exceptions import BudgetError, FitError, InvalidInputError
from pplaw.io import write_indices
from pplaw.pipeline.fit import law_inputs, split_roles
from pplaw.pipeline.plan import band_draw, pool_tokens, sample_band, stats_both
from pplaw.pipeline.recipe import RunRecipe

def bands_at(share: float, n_bins: int, max_repeat: float = 1.0) -> list[tuple[float, float]]:
    """Every contiguous band of whole landscape bins wide enough for ``share`` of the corpus (``share /
    max_repeat`` when a band may be repeated up to ``max_repeat`` times, :func:`pplaw.pipeline.plan.band_draw`)."""
    w0 = min(n_bins, math.ceil(1.05 * share / max_repeat * n_bins - 1e-9))
    return [(b / n_bins, (b + w) / n_bins) for w in range(w0, n_bins + 1) for b in range(0, n_bins - w + 1)]


def realise_bands(table: pa.Table, bands: list[tuple[float, float]], budget: int, seed: int,
                  space: str, max_repeat: float = 1.0) -> pd.DataFrame:
    """Each band sampled to ``budget`` tokens (taken whole when shorter, up to ``max_repeat`` passes): its
    realised (mu, sigma) in both spaces and ``epochs``, the passes over the band a run of ``budget`` makes
    (1 unless repeated); bands that cannot hold the budget are dropped."""
    rows = []
    for q in bands:
        try:
            idx, repeated = band_draw(table, q, budget, seed, max_repeat)
        except BudgetError:
            continue
        st = stats_both(table, np.asarray(idx))
        rows.append({"q_lo": q[0], "q_hi": q[1], **st, "mu": st[f"mu_{space}"], "sigma": st[f"sigma_{space}"],
                     "D": float(budget), "epochs": budget / st["tokens"] if repeated else 1.0})
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


def _inputs(fit: Any, cand: pd.DataFrame) -> dict[str, np.ndarray]:
    """The law's inputs of each candidate band: (mu, sigma, D) and, for a law with a pool term, the band's P."""
    return law_inputs(fit, **{c: cand[c].to_numpy(float) for c in ("mu", "sigma", "D", "P") if c in cand.columns})


def _draw_preds(fit: Any, cand: pd.DataFrame) -> np.ndarray | None:
    """``(B, n)`` bootstrap predictions of every candidate (None without bootstrap draws)."""
    preds = fit.predict_draws(**_inputs(fit, cand))
    return preds if len(preds) >= 2 else None



@dataclass(frozen=True)
class LawBand:
    """The law's pick among the candidate bands it may search (``row``, at position ``index`` of them; None
    when there is none), with the optimum's CI over the bootstrap draws' own picks and the CI of its predicted
    loss (``{}`` / None without draws); ``draws``: the ``(B, n)`` bootstrap predictions of those bands."""

    row: pd.Series | None
    index: int | None = None
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    loss_ci: tuple[float, float] | None = None
    draws: np.ndarray | None = None

    def record(self) -> dict[str, Any]:
        """The band as the fit stage's outputs keep it (``optimum.law_band``)."""
        r = self.row
        return {"band": [float(r["q_lo"]), float(r["q_hi"])], "mu": float(r["mu"]), "sigma": float(r["sigma"]),
                "loss": float(r["predicted"]), "ci": {k: list(v) for k, v in self.ci.items()},
                "loss_ci": None if self.loss_ci is None else list(self.loss_ci)}


@dataclass(frozen=True)
class BandChoice:
    """What :func:`choose_band` decides: the selected optimum (``selected``: ``law`` or ``best_sweep``, and
    ``why``), the best sweep regime's band, and the candidates' table (``bands``, a CSV in the stage folder)."""

    optimum: dict[str, Any]
    best_sweep: dict[str, Any]
    bands: str = "bands.csv"

    def outputs(self) -> dict[str, Any]:
        """The fit stage's outputs that this choice sets."""
        return {"optimum": self.optimum, "best_sweep": self.best_sweep, "bands": self.bands}

    def summary_line(self) -> str:
        o = self.optimum
        return (f"the fit stage selected ({o['selected']}; the confirm stage may still measure the law's band): "
                f"band {o['band']}, mu* = {o['mu']:.5g}, sigma* = {o['sigma']:.5g}; {o['why']}")


def candidate_bands(fit: Any, df: pd.DataFrame, table: pa.Table, budget: int, n_bins: int, total: int, seed: int,
                    space: str, region: str, max_repeat: float = 1.0) -> pd.DataFrame:
    """Every band that holds ``budget`` (``budget / max_repeat``: taken whole and repeated), realised
    (:func:`realise_bands`), with its pool ``P``, the law's ``predicted`` loss and ``in_hull`` (inside the hull
    of the fitted points; always True unless ``region`` is ``fitted`` or ``both``)."""
    from pplaw.laws import Region

    cand = realise_bands(table, bands_at(budget / total, n_bins, max_repeat), budget, seed, space, max_repeat)
    if cand.empty:
        raise FitError(f"no contiguous band of the landscape holds the final budget of {budget:,} tokens"
                       + (f" (or 1/{max_repeat:g} of it, repeated)" if max_repeat > 1 else ""))
    cand["P"] = [pool_tokens(b, total) for b in zip(cand["q_lo"], cand["q_hi"])]  # each band's pool
    cand["predicted"] = fit.predict(**_inputs(fit, cand))
    cand["in_hull"] = True
    if region in ("fitted", "both"):
        try:
            hull = Region.hull(df[["mu", "sigma"]].to_numpy(float), "fitted points")
            cand["in_hull"] = hull.contains(cand["mu"].to_numpy(float), cand["sigma"].to_numpy(float))
        except InvalidInputError:
            pass
    return cand


def best_sweep_band(fit: Any, df: pd.DataFrame, table: pa.Table, plan: dict[str, Any], target: str, budget: int,
                    seed: int, space: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The best sweep regime (:func:`best_sweep_regime`) with its band at the budget (its regime's bins widened
    around their centre; with ``select.max_repeat`` > 1 its own bins while they hold ``budget / max_repeat``:
    the proxy winner trained for more epochs), its (mu, sigma) and the law's prediction there; and that band as
    a one-row table."""
    n_bins, total = int(plan["n_bins"]), int(plan["total_tokens"])
    bs = best_sweep_regime(df, target)
    reg = next(r for r in plan["regimes"] if r["name"] == bs["regime"])
    idx, q = sample_band(table, [tuple(x) for x in reg["quantiles"]], budget, n_bins, seed, total,
                         float(plan.get("max_repeat") or 1.0))
    st = stats_both(table, np.asarray(idx))
    bs_row = pd.DataFrame([{"q_lo": q[0], "q_hi": q[1], **st, "mu": st[f"mu_{space}"],
                            "sigma": st[f"sigma_{space}"], "D": float(budget), "P": pool_tokens(q, total)}])
    bs.update(band=[float(q[0]), float(q[1])], mu=float(bs_row["mu"][0]), sigma=float(bs_row["sigma"][0]),
              predicted=float(fit.predict(**_inputs(fit, bs_row))[0]), epochs=max(1.0, budget / st["tokens"]))
    return bs, bs_row


def law_band(fit: Any, inside: pd.DataFrame) -> LawBand:
    """The band of lowest predicted loss among ``inside``, with the CIs of its (mu, sigma) and loss."""
    if inside.empty:
        return LawBand(None)
    draws = _draw_preds(fit, inside)
    k = int(np.argmin(inside["predicted"].to_numpy()))
    ci = loss_ci = None
    if draws is not None:
        picks = inside.iloc[np.argmin(draws, axis=1)]  # each draw's best band: the optimum's CI
        lv = (1 - fit.level) / 2 * 100
        ci = {c: (float(np.percentile(picks[c], lv)), float(np.percentile(picks[c], 100 - lv)))
              for c in ("mu", "sigma")}
        ci["variance"] = (ci["sigma"][0] ** 2, ci["sigma"][1] ** 2)
        loss_ci = (float(np.percentile(draws[:, k], lv)), float(np.percentile(draws[:, k], 100 - lv)))
    return LawBand(inside.iloc[k], k, ci or {}, loss_ci, draws)


def decide(fit: Any, pick: LawBand, bs: dict[str, Any], bs_row: pd.DataFrame, law_choice: dict[str, Any],
           fallback: bool, target: str) -> tuple[str, str]:
    """``("law" | "best_sweep", why)``: the law's band, unless there is none or (``select.fallback``) its
    predicted gain over the best sweep regime is within its uncertainty (:func:`trust_gain`; the gain's
    bootstrap CI from the draws of both bands)."""
    if pick.row is None:
        return "best_sweep", ("no band realisable at the budget lies inside the hull of the fitted points "
                              "(the law has not been seen there)")
    if not fallback:
        return "law", ""
    gain = bs["predicted"] - float(pick.row["predicted"])
    lo = None
    if pick.draws is not None:
        diff = _draw_preds(fit, bs_row)[:, 0] - pick.draws[:, pick.index]
        lo = float(np.percentile(diff, (1 - fit.level) / 2 * 100))
    row = _holdout_row(law_choice)
    return trust_gain(gain, lo, row.get("holdout_diff_max"), row.get("holdout_mape"), float(pick.row["predicted"]),
                      fit.level, target)


def choose_band(fit: Any, df: pd.DataFrame, table: pa.Table, plan: dict[str, Any], recipe: Any, budget: int,
                law_choice: dict[str, Any], out: Path) -> BandChoice:
    """The band the law predicts best at ``budget``, the best-sweep band, and which of the two is selected;
    writes the candidates to ``out / bands.csv``."""
    sel, space = recipe.select, recipe.fit.space
    n_bins, total = int(plan["n_bins"]), int(plan["total_tokens"])
    seed = int(sel.seeds[0])
    cand = candidate_bands(fit, df, table, budget, n_bins, total, seed, space, sel.region,
                           float(plan.get("max_repeat") or 1.0))
    bs, bs_row = best_sweep_band(fit, df, table, plan, recipe.fit.target, budget, seed, space)
    inside = cand[cand["in_hull"]]
    pick = law_band(fit, inside)
    decision, why = decide(fit, pick, bs, bs_row, law_choice, sel.fallback, recipe.fit.target)
    cand.to_csv(out / "bands.csv", index=False)
    if decision == "law":
        r = pick.record()
        opt = {"mu": r["mu"], "sigma": r["sigma"], "variance": r["sigma"] ** 2, "ci": r["ci"], "loss": r["loss"],
               "loss_ci": r["loss_ci"], "band": r["band"]}
    else:
        opt = {"mu": bs["mu"], "sigma": bs["sigma"], "variance": bs["sigma"] ** 2, "ci": {}, "loss": bs["predicted"],
               "loss_ci": None, "band": bs["band"]}
    if pick.row is not None:  # the law's own pick, kept whichever band is selected (its CI is the law's precision)
        opt["law_band"] = pick.record()
    opt.update(level=fit.level, space=space, D=float(budget), selected=decision, why=why,
               on_boundary=bool(pick.row is not None and decision == "law" and
                                (pick.row["q_lo"] == 0.0 or pick.row["q_hi"] == 1.0)),
               region=f"contiguous landscape bands holding {budget:,} tokens"
                      + (" inside the hull of the fitted points" if sel.region in ("fitted", "both") else ""),
               n_bands=int(len(cand)), n_bands_searched=int(len(inside)))
    return BandChoice(opt, bs)


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

    executor = recipe.select.executor
    if executor == "slurm":  # the passes as a Slurm job array, with the recipe's slurm: section (pplaw.stream.slurm)
        (out / "slurm.yaml").parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "slurm.yaml", yaml.safe_dump({"slurm": recipe.to_dict()["slurm"]}, sort_keys=False))
        executor = f"slurm:{out / 'slurm.yaml'}"
    sample_subset, select_dos = drawer(table, scored_dir, executor)

    ppl = table.column("ppl").to_numpy()
    tokens = table.column("n_scored").to_numpy().astype(np.int64)
    chunk = int(tokens.max()) if len(tokens) else 0  # a draw's tokens are within one chunk of its budget
    sel = recipe.select
    (out / "subsets").mkdir(parents=True, exist_ok=True)
    items = []
    for method in ["dos", *recipe.baselines.methods]:
        for seed in sel.seeds:
            if method == "dos" and optimum.get("band") is not None:  # the band family (select.family = band)
                idx = band_draw(table, optimum["band"], budget, seed, sel.max_repeat, sample_subset)[0]
            elif method == "best_sweep":
                if best_sweep is None:
                    raise InvalidInputError("baseline best_sweep needs select.family = band (the sweep's band "
                                            "family); drop it from baselines.methods or set select.family: band")
                idx = band_draw(table, best_sweep["band"], budget, seed, sel.max_repeat, sample_subset)[0]
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
            # the D a final run trains for (epochs x D tokens, pipeline/sweep.py's cpt_options): the subset's
            # tokens, or the budget for a band taken whole to be repeated (select.max_repeat > 1)
            item["D"] = int(budget) if item["tokens"] < budget - chunk else item["tokens"]
            item["epochs"] = max(1.0, budget / item["tokens"])
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
