"""Is the law a decision tool? Train every candidate band of a finished run at the final budget, and see.

    python benchmarks/bench_oracle.py RUN_DIR [--seeds 0 1 2] [--top-k 3] [--bench] [--workers 2]
    python benchmarks/bench_oracle.py RUN_DIR --curve 0.05 0.1 0.2 0.3 0.4   # learning curves of the picks
    python benchmarks/bench_oracle.py RUN_DIR --steps   # are the proxies optimisation-limited?

``RUN_DIR`` is a finished ``pplaw run``. Its fit stage wrote every contiguous landscape band that holds the
final budget (``fit/bands.csv``), with the chosen law's prediction at that budget and whether the band lies
inside the hull of the fitted points (the bands the loop may pick from). This script

1. trains each in-hull band at the final budget *exactly as a final run* (the same ``pplaw train`` options,
   budget, replay and first seed; benchmarks only with ``--bench``: they do not change training), under
   ``RUN_DIR/oracle/`` (resumable: finished runs are read back);
2. trains the ``--top-k`` measured bands, the law's own band and the best-sweep band over every seed (the
   oracle's best is the lowest mean over seeds among them);
3. reports, against that oracle: each method's regret (its band's mean loss minus the oracle best's) with
   the paired seed noise (sd over seeds of the per-seed difference), the law's Spearman/Pearson between
   predicted and measured loss, its level error, top-k agreement, and pairwise decision accuracy (of every
   pair of bands, the share the law orders as the measurement does), beside a law-free ranking: each band
   scored by the loss of its nearest proxy run (in (mu, sigma)) at the largest fitting size.

``--curve F ...`` trains the selected, law and best-sweep bands at those fractions of the corpus (first seed) and
plots loss against D beside the law's prediction: where the law's level error comes from.

Writes ``oracle/oracle.json``, ``oracle/bands.csv``, ``oracle/oracle.md`` and ``oracle/oracle.png`` (and
``oracle/curve.*``). Cost: one final run per in-hull band plus ``(seeds - 1) x (top-k + 2)`` more; ``--sample N``
trains a seeded uniform sample of N in-hull bands (and the picks) instead of all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _manifest(run: Path, stage: str) -> dict[str, Any]:
    path = run / stage / "stage.json"
    if not path.is_file():
        raise SystemExit(f"{run} is not a finished pplaw run: {path} is missing (run `pplaw run --out {run}` first)")
    m = json.loads(path.read_text(encoding="utf-8"))
    if m.get("status") != "done":
        raise SystemExit(f"{run}: stage {stage!r} is not done (status {m.get('status')!r}); finish the run first")
    return m["outputs"]


class Oracle:
    """What a finished run hands the oracle: its recipe, inputs, scored chunks, fit and candidate bands."""

    def __init__(self, run: Path, bench: bool):
        from pplaw.pipeline import sweep as SW
        from pplaw.pipeline.artefacts import Inputs, PlanArtefact, ScoredChunks
        from pplaw.pipeline.recipe import RunRecipe, from_dict

        self.run, self.out = run, run / "oracle"
        self.recipe = from_dict(RunRecipe, json.loads((run / "recipe.json").read_text(encoding="utf-8")))
        r = self.recipe
        if r.world is not None:
            self.inp = Inputs.from_dict(_manifest(run, "world"))
        else:
            m, c = r.model, r.corpus
            self.inp = Inputs(base_model=m.base_model, tokenizer=m.tokenizer, domain_corpus=c.domain_data,
                              text_column=c.text_column, id_column=c.id_column, general_data=c.general_data,
                              domain_eval_data=c.domain_eval_data, general_eval_data=c.general_eval_data)
        self.chunks = ScoredChunks.load(run / "score", _manifest(run, "score"))
        self.plan = PlanArtefact.load(run / "plan", _manifest(run, "plan"))
        self.fit = _manifest(run, "fit")
        if (run / "confirm" / "stage.json").is_file():  # the optimum DOS used: the confirm stage's verdict on the fit's
            conf = _manifest(run, "confirm")
            if conf.get("optimum"):
                self.fit = {**self.fit, "optimum": conf["optimum"]}
        self.budget = int(self.plan.budget)
        self.bench = SW.bench_options(r, self.inp) if bench else None
        bands = pd.read_csv(run / "fit" / "bands.csv")
        self.bands = bands[bands["in_hull"].astype(bool)].reset_index(drop=True)
        if self.bands.empty:
            raise SystemExit(f"{run}/fit/bands.csv has no in-hull band: nothing for the oracle to train")
        self.seeds = [int(s) for s in r.select.seeds]
        self.sweep = json.loads((run / "sweep" / "runs.json").read_text(encoding="utf-8"))

    def spec(self, band: Any, seed: int, tokens: int, tag: str = "b", overrides: dict[str, Any] | None = None):
        """One run of ``tokens`` tokens sampled uniformly inside ``band`` (``(q_lo, q_hi)`` or its label; the
        final runs' sampler)."""
        band = tuple(_band(band)) if isinstance(band, str) else (float(band[0]), float(band[1]))
        from pplaw.io import write_indices
        from pplaw.pipeline import sweep as SW
        from pplaw.pipeline.plan import band_draw, stats_both

        rid = f"{tag}{band[0]:.2f}-{band[1]:.2f}_D{tokens}_s{seed}"
        d = self.out / "runs" / rid
        idx_path = self.out / "subsets" / f"{rid}.parquet"
        table = self.chunks.table
        # as the final runs draw it: a band shorter than the budget is taken whole and repeated, up to
        # select.max_repeat passes (pipeline/plan.py's band_draw)
        idx, repeated = band_draw(table, band, tokens, seed, float(self.recipe.select.max_repeat))
        if not idx_path.is_file():
            idx_path.parent.mkdir(parents=True, exist_ok=True)
            write_indices(table, idx, idx_path)
        opts = SW.cpt_options(self.recipe, self.inp, train_data=self.chunks.dir, run_dir=d, indices=idx_path,
                              tokens=tokens, replay_ratio=self.recipe.select.replay_ratio, seed=seed,
                              bench=self.bench)
        opts.update(overrides or {})  # e.g. a smaller batch (more optimiser steps on the same data): --steps
        st = stats_both(table, idx)
        meta = {"q_lo": band[0], "q_hi": band[1], "seed": seed, "D": tokens if repeated else st["tokens"],
                "target_D": tokens, "epochs": tokens / st["tokens"] if repeated else 1.0,
                **{k: st[k] for k in ("mu_ppl", "sigma_ppl", "mu_log_ppl", "sigma_log_ppl")}}
        return SW.RunSpec(rid, d, opts, meta, keep_model=False, root=self.run)

    def train(self, specs: list, workers: int, desc: str) -> pd.DataFrame:
        from pplaw.pipeline import sweep as SW

        t = self.recipe.train
        SW.run_all(specs, workers=workers, threads=t.threads_per_worker, launcher=t.launcher,
                   accelerate_config=t.accelerate_config, desc=desc)
        rows = pd.DataFrame(SW.run_table(specs, self.recipe))
        bad = rows[rows["status"] != "ok"]
        if len(bad):
            print(f"warning: {len(bad)} oracle run(s) failed and are left out: {list(bad['id'])}", file=sys.stderr)
        return rows[rows["status"] == "ok"].reset_index(drop=True)

    def predict(self, mu: float, sigma: float, D: float, band: str) -> float:
        from pplaw.pipeline.plan import pool_tokens
        from pplaw.pipeline.fit import predict

        total = int(self.plan.plan["total_tokens"])
        return predict(self.run / "fit" / "fit.json", mu, sigma, D, pool_tokens(_band(band), total))["prediction"]


def _key(band: Any) -> str:
    """A band's label, ``"0.40-0.75"`` (a string: pandas reads a tuple index key as (row, column))."""
    return f"{float(band[0]):.2f}-{float(band[1]):.2f}"


def _band(key: str) -> list[float]:
    return [float(x) for x in key.split("-")]


def nearest_proxy(o: Oracle, bands: pd.DataFrame) -> np.ndarray:
    """The law-free ranking: each band scored by the loss of the nearest sweep run (in (mu, sigma) of the fit's
    space) at the largest fitting size."""
    space, target = o.recipe.fit.space, o.recipe.fit.target
    fit_rows = [r for r in o.sweep if r.get("status") == "ok" and (r.get("role") or "fit") == "fit"]
    dmax = max(r["D"] for r in fit_rows)
    top = [r for r in fit_rows if r["D"] >= 0.95 * dmax]
    P = np.array([[r[f"mu_{space}"], r[f"sigma_{space}"]] for r in top])
    y = np.array([r[target] for r in top])
    Q = bands[["mu", "sigma"]].to_numpy(float)
    return y[np.argmin(np.linalg.norm(Q[:, None] - P[None], axis=2), axis=1)]


def pairwise(score: np.ndarray, truth: np.ndarray, min_gap: float = 0.0) -> tuple[float, int]:
    """Share of band pairs (measured gap > ``min_gap``) that ``score`` orders as ``truth`` does (ties: half)."""
    hits, n = 0.0, 0
    for i, j in combinations(range(len(truth)), 2):
        if abs(truth[i] - truth[j]) <= min_gap:
            continue
        n += 1
        s = np.sign(score[i] - score[j])
        hits += 0.5 if s == 0 else float(s == np.sign(truth[i] - truth[j]))
    return (hits / n if n else float("nan")), n


def sampled(o: Oracle, n: int | None, seed: int) -> pd.DataFrame:
    """The in-hull bands the oracle trains: all of them, or (``n``) a uniform random sample of ``n`` (seeded: an
    unbiased sample of the candidates, whatever the law predicts), plus the selected, law and best-sweep bands."""
    if n is None or n >= len(o.bands):
        return o.bands
    keys = [_key(b) for b in zip(o.bands["q_lo"], o.bands["q_hi"])]
    pick = set(np.random.default_rng(seed).choice(len(keys), size=n, replace=False).tolist())
    opt, bs = o.fit["optimum"], o.fit.get("best_sweep") or {}
    must = {_key(b) for b in (opt.get("band"), (opt.get("law_band") or {}).get("band"), bs.get("band")) if b}
    return o.bands[[i in pick or k in must for i, k in enumerate(keys)]].reset_index(drop=True)


def run_oracle(o: Oracle, top_k: int, workers: int, sample: int | None = None, sample_seed: int = 0) -> dict[str, Any]:
    from scipy.stats import pearsonr, spearmanr

    s0 = o.seeds[0]
    n_in_hull = len(o.bands)
    o.bands = sampled(o, sample, sample_seed)
    bands = [(float(a), float(b)) for a, b in zip(o.bands["q_lo"], o.bands["q_hi"])]
    one = o.train([o.spec(b, s0, o.budget) for b in bands], workers, "oracle: every in-hull band")
    target = o.recipe.fit.target
    cand = o.bands.copy()
    cand["key"] = [_key(b) for b in zip(cand["q_lo"], cand["q_hi"])]
    meas = {(_key((r.q_lo, r.q_hi))): getattr(r, target) for r in one.itertuples()}
    cand["measured"] = [meas.get(k, np.nan) for k in cand["key"]]
    cand = cand[np.isfinite(cand["measured"])].reset_index(drop=True)
    cand["proxy_score"] = nearest_proxy(o, cand)

    opt, bs = o.fit["optimum"], o.fit.get("best_sweep") or {}
    picks = {"selected (DOS)": _key(opt["band"])}
    if opt.get("law_band"):
        picks["law band"] = _key(opt["law_band"]["band"])
    if bs.get("band"):
        picks["best sweep"] = _key(bs["band"])
    top = list(cand.sort_values("measured")["key"][:top_k])
    many = list(dict.fromkeys(top + list(picks.values())))
    multi = o.train([o.spec(b, s, o.budget) for b in many for s in o.seeds], workers, "oracle: top bands x seeds")
    multi["key"] = [_key((a, b)) for a, b in zip(multi["q_lo"], multi["q_hi"])]
    per = multi.pivot_table(index="key", columns="seed", values=target)
    mean = per.mean(axis=1)
    best = mean.idxmin()

    def regret(k: str | None, per_seed: pd.Series | None = None) -> dict[str, Any]:
        vals = per.loc[k] if per_seed is None else per_seed
        diff = (vals - per.loc[best]).dropna()
        return {"band": None if k is None else _band(k), "mean": float(vals.mean()), "regret": float(diff.mean()),
                "noise_sd": float(diff.std(ddof=1)) if len(diff) > 1 else None, "n_seeds": int(len(diff))}

    out_methods = {name: regret(k) for name, k in picks.items() if k in per.index}
    out_methods["oracle best"] = regret(best)
    # random from the run's own final runs (same budget, same seeds)
    finals = json.loads((o.run / "final" / "runs.json").read_text(encoding="utf-8"))
    rnd = pd.Series({int(r["seed"]): r[target] for r in finals if r["method"] == "random" and r["status"] == "ok"})
    if len(rnd):
        out_methods["random"] = regret(None, rnd.reindex(per.columns))
    # the law-free choice: the band the nearest-proxy score ranks first
    kp = cand["key"][int(np.argmin(cand["proxy_score"].to_numpy()))]
    if kp in per.index:
        out_methods["nearest proxy"] = regret(kp)
    noise = float(np.nanmedian(per.std(axis=1, ddof=1))) if per.shape[1] > 1 else float("nan")

    pred, y = cand["predicted"].to_numpy(float), cand["measured"].to_numpy(float)
    k = min(top_k, len(cand))
    law_top = set(cand.sort_values("predicted")["key"][:k])
    ranking = {
        "n_bands": int(len(cand)), "spearman": float(spearmanr(pred, y)[0]), "pearson": float(pearsonr(pred, y)[0]),
        "level_error_mean": float(np.mean(pred - y)), "level_error_rel_mean": float(np.mean((pred - y) / y)),
        "level_error_sd": float(np.std(pred - y, ddof=1)) if len(y) > 1 else None,
        f"top{k}_agreement": len(law_top & set(top[:k])) / k,
        "pairwise_law": pairwise(pred, y)[0],
        "pairwise_proxy": pairwise(cand["proxy_score"].to_numpy(float), y)[0],
        "pairwise_law_beyond_noise": pairwise(pred, y, 2 * noise)[0] if np.isfinite(noise) else None,
        "pairwise_proxy_beyond_noise": (pairwise(cand["proxy_score"].to_numpy(float), y, 2 * noise)[0]
                                        if np.isfinite(noise) else None),
        "n_pairs_beyond_noise": pairwise(pred, y, 2 * noise)[1] if np.isfinite(noise) else None,
        "spearman_proxy": float(spearmanr(cand["proxy_score"], y)[0]),
    }
    res = {"run": str(o.run), "budget": o.budget, "target": target, "seeds": o.seeds, "law": o.fit.get("law"),
           "seed_noise_sd": noise, "oracle_best": _band(best), "methods": out_methods, "ranking": ranking,
           "bench": o.bench is not None, "n_in_hull": n_in_hull,
           "sampled": None if sample is None or sample >= n_in_hull else {"n": sample, "seed": sample_seed}}
    cand.drop(columns=["key"]).to_csv(o.out / "bands.csv", index=False)
    _plot(cand, picks, best, o.out / "oracle.png", target)
    return res


def _plot(cand: pd.DataFrame, picks: dict[str, Any], best: Any, path: Path, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    a = ax[0]
    a.scatter(cand["predicted"], cand["measured"], s=18, c="tab:gray", label="in-hull band")
    lo = float(min(cand["predicted"].min(), cand["measured"].min()))
    hi = float(max(cand["predicted"].max(), cand["measured"].max()))
    a.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    for (name, k), m in zip(list(picks.items()) + [("oracle best", best)], "osD*"):
        row = cand[cand["key"] == k]
        if len(row):
            a.scatter(row["predicted"], row["measured"], s=70, marker=m, facecolors="none", edgecolors="C3",
                      label=name)
    a.set(xlabel=f"law's predicted {target}", ylabel=f"measured {target} (first seed)",
          title="Every candidate band at the final budget")
    a.legend(fontsize=8)
    b = ax[1]
    order = cand.sort_values("q_lo")
    b.plot(order["q_lo"] + (order["q_hi"] - order["q_lo"]) / 2, order["measured"], "o", ms=4, label="measured")
    b.plot(order["q_lo"] + (order["q_hi"] - order["q_lo"]) / 2, order["predicted"], "x", ms=5, label="law")
    b.set(xlabel="band centre (landscape quantile)", ylabel=target, title="Measured vs predicted along the landscape")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_curve(o: Oracle, fractions: list[float], workers: int) -> dict[str, Any]:
    """The picks' learning curves: loss vs D at ``fractions`` of the corpus, measured and predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = int(o.plan.plan["total_tokens"])
    opt, bs = o.fit["optimum"], o.fit.get("best_sweep") or {}
    bands = {"selected": _key(opt["band"])}
    if opt.get("law_band"):
        bands["law band"] = _key(opt["law_band"]["band"])
    if bs.get("band"):
        bands["best sweep"] = _key(bs["band"])
    todo = []
    for b in dict.fromkeys(bands.values()):  # the selected band is often the best sweep's: train it once
        for f in fractions:
            D = int(round(f * total))
            lo, hi = _band(b)
            if D <= (hi - lo) * total:  # the band must hold D tokens
                todo.append(o.spec(b, o.seeds[0], D, tag="c"))
    rows = o.train(todo, workers, "oracle: learning curves")
    target = o.recipe.fit.target
    space = o.recipe.fit.space
    rows["key"] = [_key((a, b)) for a, b in zip(rows["q_lo"], rows["q_hi"])]
    rows["predicted"] = [o.predict(r[f"mu_{space}"], r[f"sigma_{space}"], r["D"], r["key"]) for _, r in rows.iterrows()]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (name, b) in enumerate(bands.items()):
        r = rows[rows["key"] == b].sort_values("D")
        ax.plot(r["D"], r[target], "o-", color=f"C{i}", label=f"{name} {b}: measured")
        ax.plot(r["D"], r["predicted"], "x--", color=f"C{i}", label=f"{name}: law")
    ax.set(xscale="log", yscale="log", xlabel="D (domain tokens, each run 2 epochs)" if o.recipe.train.epochs == 2
           else "D (domain tokens)", ylabel=target, title="Learning curves of the picked bands")
    ax.axvline(o.budget, color="k", lw=0.7, ls=":")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(o.out / "curve.png", dpi=110)
    plt.close(fig)
    rows.drop(columns=["key"]).to_csv(o.out / "curve.csv", index=False)
    return {"curve": rows[["q_lo", "q_hi", "D", "steps", target, "predicted"]].to_dict(orient="records")}


def run_steps(o: Oracle, workers: int) -> dict[str, Any]:
    """Are the proxies optimisation-limited? The best-sweep band at every fitting size and at the final budget,
    trained on the same subset with the recipe's batch and with half of it (twice the optimiser steps, the same
    tokens, epochs and schedule shape). A run past the initial transient barely gains from more steps on the
    same data; a run still in it gains much more. If the proxies gain more than the final run, their loss is
    inflated by too few steps, and the sweep's trend in D (which is also a trend in steps) over-states what more
    data buys at the final budget: the law's forecast comes out low."""
    t = o.recipe.train
    b = int(t.per_device_train_batch_size)
    if b < 2:
        raise SystemExit(f"--steps halves train.per_device_train_batch_size, which is {b}")
    band = _key((o.fit.get("best_sweep") or o.fit["optimum"])["band"])
    sizes = [int(d) for d in o.plan.plan["sizes"]] + [o.budget]
    todo = [o.spec(band, o.seeds[0], D, tag=f"t{bs}_", overrides={"per_device_train_batch_size": bs})
            for D in sizes for bs in (b, b // 2)]
    rows = o.train(todo, workers, "oracle: steps check")
    target = o.recipe.fit.target
    out = []
    for D in sizes:
        r = rows[rows["target_D"] == D]
        full = r[r["id"].str.startswith(f"t{b}_")]
        half = r[r["id"].str.startswith(f"t{b // 2}_")]
        if full.empty or half.empty:
            continue
        lf, lh = float(full[target].iloc[0]), float(half[target].iloc[0])
        out.append({"D": D, "band": band, f"loss_batch{b}": lf, f"loss_batch{b // 2}": lh,
                    "steps": int(full["steps"].iloc[0]), "steps_half_batch": int(half["steps"].iloc[0]),
                    "gain_log": math.log(lf / lh)})
    return {"steps": out, "batch": b}


def markdown(res: dict[str, Any]) -> str:
    r = res["ranking"]
    lines = [f"Oracle on `{res['run']}` (final budget {res['budget']:,} tokens, target {res['target']}, seeds "
             f"{res['seeds']}, seed noise sd {res['seed_noise_sd']:.4f})", "",
             "| method | band | mean | regret vs oracle | paired sd |", "|---|---|---|---|---|"]
    for name, m in res["methods"].items():
        sd = "-" if m["noise_sd"] is None else f"{m['noise_sd']:.4f}"
        lines.append(f"| {name} | {m['band']} | {m['mean']:.4f} | {m['regret']:+.4f} | {sd} |")
    of = f" (a seeded sample of the {res.get('n_in_hull')})" if res.get("sampled") else ""
    lines += ["", f"Ranking over {r['n_bands']} in-hull bands{of}: Spearman {r['spearman']:.3f}, Pearson "
              f"{r['pearson']:.3f}; level error (predicted - measured) {r['level_error_mean']:+.4f} "
              f"({100 * r['level_error_rel_mean']:+.1f}%), sd {r['level_error_sd']:.4f}; top-k agreement "
              f"{[v for k, v in r.items() if k.startswith('top')][0]:.2f}.",
              f"Pairwise decision accuracy: law {r['pairwise_law']:.3f}, nearest proxy run {r['pairwise_proxy']:.3f} "
              f"(all pairs); pairs whose measured gap exceeds 2x seed noise ({r['n_pairs_beyond_noise']}): law "
              f"{_f(r['pairwise_law_beyond_noise'])}, nearest proxy {_f(r['pairwise_proxy_beyond_noise'])}."]
    return "\n".join(lines) + "\n"


def _f(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a finished `pplaw run` directory")
    ap.add_argument("--top-k", type=int, default=3, help="measured-best bands rerun over every seed")
    ap.add_argument("--workers", type=int, default=2, help="runs trained at once")
    ap.add_argument("--bench", action="store_true", help="also run the benchmarks (does not change training)")
    ap.add_argument("--curve", type=float, nargs="*", default=None,
                    help="fractions of the corpus: learning curves of the picked bands instead of the oracle")
    ap.add_argument("--sample", type=int, default=None,
                    help="train a seeded uniform sample of this many in-hull bands (plus the picks), not all")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of --sample")
    ap.add_argument("--steps", action="store_true",
                    help="optimisation check: the best-sweep band at each size with the batch and half of it")
    a = ap.parse_args()
    from pplaw.pipeline.stages import RunLock
    from pplaw.runs import write_json_atomic

    if a.top_k < 1:
        raise SystemExit(f"--top-k must be >= 1, got {a.top_k}")
    if a.curve is not None and (not a.curve or any(not 0 < f <= 1 for f in a.curve)):
        raise SystemExit(f"--curve takes fractions of the corpus in (0, 1], got {a.curve}")
    o = Oracle(a.run_dir.resolve(), a.bench)
    o.out.mkdir(exist_ok=True)
    with RunLock(o.run):  # no `pplaw run` resumes into this directory meanwhile
        if a.curve is not None:
            res = run_curve(o, sorted(a.curve), a.workers)
            write_json_atomic(o.out / "curve.json", res)
            print(pd.DataFrame(res["curve"]).to_string(index=False))
            print(f"plot: {o.out / 'curve.png'}")
            return 0
        if a.steps:
            res = run_steps(o, a.workers)
            write_json_atomic(o.out / "steps.json", res)
            print(pd.DataFrame(res["steps"]).to_string(index=False))
            return 0
        if a.sample is not None and a.sample < 2:
            raise SystemExit(f"--sample must be >= 2 bands, got {a.sample}")
        res = run_oracle(o, a.top_k, a.workers, a.sample, a.sample_seed)
    write_json_atomic(o.out / "oracle.json", res)
    md = markdown(res)
    (o.out / "oracle.md").write_text(md, encoding="utf-8")
    print(md)
    print(f"plot: {o.out / 'oracle.png'}; bands: {o.out / 'bands.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
