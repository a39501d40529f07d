"""The confirm stage: before the final runs train on a band the law proposes on its own, measure it once at 2x.

The fit stage's band decision (:func:`pplaw.pipeline.select.decide`) takes the law's own band over the best
sweep regime's when the predicted gain clears the law's uncertainty. That band is the argmin of ~50 candidate
bands, so its prediction is biased low (the winner's curse of a noisy argmin), and it usually lies outside the
family the held-out leaders validated. On fresh world seeds 45 and 46 (benchmarks/PREDICT_RESULTS.md) it passed
the gap rule, its forecast missed by -25% / -30%, and at the final budget it measured no better (+0.004 nats) or
worse (+0.022) than the best sweep regime; the law's band sampled at the validation size (2x the largest fitting
size) measured worse than the best sweep regime's band there in both, so one run would have caught both.

The rule (successive halving's: a candidate goes on to the larger budget only if it wins at the smaller one):
when the fit stage selected the law's band (``selected: law``) and ``select.confirm`` is on, the law's band is
sampled at the largest validation size, once per plan seed and replay ratio, and trained exactly as a held-out
run; so is the best sweep regime's band at the final budget, unless the sweep's held-out leaders already hold
that run (``plan.validation_family: lead``: they do). The law's band is kept only if its mean measured loss
there is lower; otherwise the best sweep regime is selected, and the optimum says why. The runs feed no fit: they
decide, and are reported.

A gain within the law's uncertainty is measured too (``select.confirm_uncertain``): when the fit stage fell back
to the best sweep regime although the law predicts its own band lower (a positive gain that did not clear the
bootstrap CI or the held-out error on differences), the law's band is confirmed the same way and taken if it
wins. The fallback rule judges the gain by the law's error bars; one measured comparison at 2x judges it by the
data. On fresh world seed 80 of the repetition world (benchmarks/PREDICT_RESULTS.md) the law's own band was the
oracle's best, 0.014 nats (5x the seed sd) below the best sweep regime's, and the fallback rule had kept the best
sweep regime; on fresh seeds 100-104 the rule took the law's band in 3 of 5, each then better at the final
budget by 0.016-0.034 nats. Its limit: a band that wins only beyond 2x loses the comparison at 2x (seed 104:
the oracle's best band, rejected). Nothing is trained when the law predicts no gain, or its band is the best
sweep regime's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw.io import write_indices
from pplaw.pipeline.plan import passes_draw, point_id, sample_band, stats_both, window_tokens


def proposed_band(optimum: dict[str, Any], uncertain: bool = True) -> list[float] | None:
    """The law's band to confirm: the optimum's band when the fit stage selected it; with ``uncertain`` also the
    law's own pick (``optimum.law_band``) when the fit stage fell back to the best sweep regime although the law
    predicts that band lower; else None."""
    if optimum.get("selected") == "law":
        return optimum.get("band")
    lb = optimum.get("law_band") or {}
    if not uncertain or lb.get("band") is None or optimum.get("loss") is None or lb.get("loss") is None:
        return None
    if float(lb["loss"]) >= float(optimum["loss"]) or _same_band(lb["band"], optimum.get("band")):
        return None
    return list(lb["band"])


def confirmation_needed(optimum: dict[str, Any], plan: dict[str, Any], confirm: bool,
                        uncertain: bool = True) -> str | None:
    """None when the law's band must be confirmed (:func:`proposed_band`); else why nothing is trained."""
    if not confirm:
        return "select.confirm is off"
    if optimum.get("band") is None:
        return "the optimum is not a band (select.family: free)"
    if proposed_band(optimum, uncertain) is None:
        if not uncertain:
            return "the fit stage selected the best sweep regime: nothing to confirm (select.confirm_uncertain is off)"
        return ("the fit stage selected the best sweep regime and the law predicts no band better than it: "
                "nothing to confirm")
    if not plan.get("validation_sizes"):
        return "no validation size planned (plan.validation_sizes: []): nothing to confirm at"
    return None


def _same_band(a: Any, b: Any) -> bool:
    return a is not None and b is not None and len(a) == 2 and all(abs(float(x) - float(y)) < 1e-9
                                                                    for x, y in zip(a, b))


def _held(rows: list[dict[str, Any]], band: Any, size_no: int) -> list[dict[str, Any]]:
    """Held-out sweep runs of ``band`` at validation size ``size_no`` (the leaders' runs of that band)."""
    return [r for r in rows if r.get("role") == "validation" and int(r.get("size_no", -1)) == size_no
            and _same_band(r.get("band"), band)]


def confirmation_points(table: pa.Table, plan: dict[str, Any], optimum: dict[str, Any], best_sweep: dict[str, Any],
                        rows: list[dict[str, Any]], seeds: list[int], replay_ratios: list[float],
                        out_dir: Path, uncertain: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs to train: the law's band (:func:`proposed_band`, regime ``law``) and, unless the sweep's held-out runs hold it, the best
    sweep regime's band (regime ``best_sweep``), each sampled to the largest validation size for every seed and
    replay ratio (a band too narrow for that size widened around its centre, as the held-out leaders'
    are: :func:`pplaw.pipeline.plan.sample_band`); indices under ``out_dir/points/``, fields as
    :func:`pplaw.pipeline.plan.build_plan`'s. Also the ids of the held-out sweep runs that stand for the best
    sweep band ([] when it is trained here). With ``select.max_repeat`` > 1 each band is drawn as the held-out
    leaders are (:func:`pplaw.pipeline.plan.passes_draw`: the band itself, with the final run's passes over a
    sub-pool of it), so the two bands are compared at the same repetition as their final runs."""
    D, size_no = int(plan["validation_sizes"][-1]), len(plan["sizes"]) + len(plan["validation_sizes"]) - 1
    n_bins, total = int(plan["n_bins"]), int(plan["total_tokens"])
    rep, final = float(plan.get("max_repeat") or 1.0), int(plan.get("final_budget") or D)

    def draw(band: Any, seed: int) -> tuple[np.ndarray, tuple[float, float], bool]:
        q = (float(band[0]), float(band[1]))
        if rep > 1:  # the band itself with the final run's passes over it, as the held-out leaders are drawn
            idx, repeated = passes_draw(table, q, D, final, seed, rep, final / window_tokens(table, q))
            return idx, q, repeated
        idx, q = sample_band(table, [q], D, n_bins, seed, total)
        return idx, q, False

    held = _held(rows, draw(best_sweep["band"], int(seeds[0]))[1], size_no)
    todo = [("law", proposed_band(optimum, uncertain))] + ([] if held else [("best_sweep", best_sweep["band"])])
    (out_dir / "points").mkdir(parents=True, exist_ok=True)
    points = []
    for name, band in todo:
        for seed in seeds:
            idx, q, repeated = draw(band, int(seed))
            for r in replay_ratios:
                pid = point_id(f"confirm_{name}", size_no, r, seed)
                path = f"points/{pid}.parquet"
                write_indices(table, idx, out_dir / path)
                pt: dict[str, Any] = {"id": pid, "regime": name, "shape": "band", "size_no": size_no,
                                      "D_request": D, "R": float(r), "seed": int(seed), "role": "confirmation",
                                      "band": [float(q[0]), float(q[1])], "status": "ok", "reason": None,
                                      "indices": path, **stats_both(table, np.asarray(idx))}
                pt["D"] = int(D) if repeated else pt["tokens"]
                if repeated:  # a sub-pool of the band: its pool, as the held-out leaders' (plan.passes_draw)
                    pt.update(pool=int(pt["tokens"]), passes=D / pt["tokens"])
                points.append(pt)
    return points, [str(r.get("id")) for r in held]


def _losses(rows: list[dict[str, Any]], target: str) -> list[float]:
    return [float(r[target]) for r in rows if r.get("status") == "ok" and r.get(target) is not None
            and np.isfinite(float(r[target]))]


def decide_confirmation(optimum: dict[str, Any], best_sweep: dict[str, Any], sweep_rows: list[dict[str, Any]],
                        confirm_rows: list[dict[str, Any]], held: list[str], plan: dict[str, Any],
                        target: str, uncertain: bool = True) -> dict[str, Any]:
    """``{"status": "confirmed" | "rejected", "law_loss", "best_sweep_loss", "why", "optimum"}``: the law's band
    (:func:`proposed_band`)
    is kept only if its mean measured ``target`` at the validation size is below the best sweep band's there;
    ``held``: the ids of the sweep's held-out runs that stand for the best sweep band (:func:`confirmation_points`).
    A confirmation run that failed counts against the law's band (it is not trained on unmeasured)."""
    law_rows = [r for r in confirm_rows if r.get("regime") == "law"]
    held_ids = set(held)
    bs_rows = [r for r in confirm_rows if r.get("regime") == "best_sweep"] or \
        [r for r in sweep_rows if str(r.get("id")) in held_ids]
    law, bs = _losses(law_rows, target), _losses(bs_rows, target)
    D = int(plan["validation_sizes"][-1])
    out: dict[str, Any] = {"D": D, "law_band": proposed_band(optimum, uncertain), "best_sweep_band": best_sweep["band"],
                           "law_loss": float(np.mean(law)) if law else None,
                           "best_sweep_loss": float(np.mean(bs)) if bs else None,
                           "law_runs": [r.get("id") for r in law_rows], "best_sweep_runs": [r.get("id") for r in bs_rows]}
    if not law or len(law) < len(law_rows) or not bs:
        out.update(status="rejected", why=(f"the confirmation runs at {D:,} tokens did not all finish (law band: "
                                           f"{len(law)}/{len(law_rows)}, best sweep band: {len(bs)}/{len(bs_rows)}); "
                                           "the law's band is not trained on unmeasured"))
    elif out["law_loss"] < out["best_sweep_loss"]:
        out.update(status="confirmed", why=(f"confirmed at {D:,} tokens: the law's band measured {target} "
                                            f"{out['law_loss']:.4f} against the best sweep band's "
                                            f"{out['best_sweep_loss']:.4f}"))
    else:
        out.update(status="rejected", why=(f"at {D:,} tokens the law's band measured {target} {out['law_loss']:.4f}, "
                                           f"not below the best sweep band's {out['best_sweep_loss']:.4f}"))
    out["optimum"] = confirmed_optimum(optimum, best_sweep, out)
    if optimum.get("selected") != "law":  # a gain within the law's uncertainty was measured (select.confirm_uncertain)
        out["uncertain"] = True
    return out


def confirmed_optimum(optimum: dict[str, Any], best_sweep: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
    """The optimum after the confirmation: the law's band with the confirmation added to its ``why``, or the best
    sweep regime's band (the fit stage's fallback optimum) with the law's own pick kept as ``law_band``. A law's band
    confirmed after the fit stage fell back (a gain within its uncertainty) takes the place of the best sweep band,
    with its own (mu, sigma), CIs and predicted loss from ``optimum.law_band``."""
    fell_back = optimum.get("selected") != "law"
    if conf["status"] == "confirmed":
        if fell_back:
            lb = optimum["law_band"]
            law = {"mu": lb["mu"], "sigma": lb["sigma"], "variance": lb["sigma"] ** 2, "ci": lb.get("ci") or {},
                   "loss": lb["loss"], "loss_ci": lb.get("loss_ci"), "band": list(lb["band"]), "selected": "law",
                   "on_boundary": bool(lb["band"][0] == 0.0 or lb["band"][1] == 1.0)}
            return {**optimum, **law, "confirmed": True,
                    "why": f"the law's predicted gain was within its uncertainty ({optimum.get('why') or 'fallback'}), "
                           f"so its band {list(lb['band'])} was measured: {conf['why']}"}
        return {**optimum, "why": "; ".join(w for w in (optimum.get("why"), conf["why"]) if w), "confirmed": True}
    bs = best_sweep
    proposed = conf.get("law_band") or optimum.get("band")
    return {**optimum, "mu": bs["mu"], "sigma": bs["sigma"], "variance": bs["sigma"] ** 2, "ci": {},
            "loss": bs["predicted"], "loss_ci": None, "band": bs["band"], "selected": "best_sweep",
            "on_boundary": False, "confirmed": False,
            "why": f"the law's band {proposed} was proposed"
                   + (f" ({optimum['why']})" if optimum.get("why") else "") + f" but {conf['why']}"}
