"""Benchmark: pplaw's scaling-law fit (grid + L-BFGS-B + bootstrap) vs a plain scipy.optimize.minimize loop.

    .venv/bin/python benchmarks/bench_fit.py [--bootstrap 200] [--baseline-resamples 10] [--repeats 5] [--seed 0]

Data: Epoch AI's digitised Chinchilla points (``<repo>/../shared/data/chinchilla/svg_extracted_data.csv``),
tokens = FLOP / (6 N), the 5 highest losses dropped -> 240 points (as in tests/laws/conftest.py).

In one process:

- ours: ``Chinchilla(grid="coarse").fit(...)`` (the 3^5 = 243-start grid; the grid is evaluated at once and the
  best 32 starts are refined with L-BFGS-B and an analytic gradient), then the same call with
  ``bootstrap=200`` (warm-started refits on resampled rows). For reference also ``polish=None`` (L-BFGS-B from
  all 243 starts, the same number of local solves as the baseline).
- baseline: what a user writes by hand -- the Huber (delta=1e-3, summed) loss on log residuals of the
  log-sum-exp parameterisation (``scipy.special.logsumexp`` / ``scipy.special.huber``), one
  ``scipy.optimize.minimize(method="L-BFGS-B")`` call per start of the same 243-start grid with scipy's default
  options (finite-difference gradient, default tolerances, no bounds), keeping the best. Its bootstrap repeats
  that loop per resample; it is timed on fewer resamples (``--baseline-resamples``) and extrapolated per
  resample to ``--bootstrap``. Its resamples are the first ones ours draws (same seed), so the fitted
  parameters can be compared resample by resample.

Targets (issue 5): >= 5x the baseline (single fit and bootstrap), the 200-resample bootstrap <= 60 s.

Steep bowl (issue 12): the perplexity law's default fit on the steep-bowl table of tests/laws/laws_testdata.py
(|a1| = 8, 1% noise, 75 points) for seeds 0-4: the time of the default fit, its objective vs the objective at the
generating parameters (the global optimum can only be lower), and whether the true optimum (mu*, sigma*) over the
fitted hull lies in the bootstrap CI (``--steep-bootstrap`` resamples). Target: global objective and optimum in
its CI in 5/5 seeds.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread before numpy loads: L-BFGS-B calls BLAS on tiny matrices, and threads only add
# contention on a shared machine. Applies to ours and the baseline alike.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402
from scipy import optimize, special  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHINCHILLA_CSV = REPO.parent / "shared" / "data" / "chinchilla" / "svg_extracted_data.csv"
try:  # an uninstalled checkout: the pure-Python laws import from python/
    import pplaw  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(REPO / "python"))

from pplaw.laws import Chinchilla, PerplexityLaw, Region  # noqa: E402
from pplaw.laws.chinchilla import COARSE_GRID  # noqa: E402
from pplaw.laws.perplexity import _search  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "laws"))
from laws_testdata import STEEP_TRUE, steep_bowl_runs  # noqa: E402

# Besiroglu et al. 2024 (Epoch AI) on the same 240 points
EPOCH = {"E": 1.8172, "A": 477.8, "alpha": 0.3473, "B": 2143.0, "beta": 0.3672}
NAMES = ("E", "A", "alpha", "B", "beta")  # optimiser order: log E, log A, alpha, log B, beta
LOG_PARAMS = {"E", "A", "B"}
DELTA = 1e-3
BOOT_TARGET_S = 60.0
SPEEDUP_TARGET = 5.0


def load_chinchilla() -> pd.DataFrame:
    if not CHINCHILLA_CSV.is_file():
        sys.exit(f"bench_fit.py: Epoch AI's Chinchilla points are not at {CHINCHILLA_CSV}; this benchmark needs "
                 "the shared data directory next to the repository (<repo>/../shared/data), which a plain clone "
                 "does not have")
    df = pd.read_csv(CHINCHILLA_CSV)
    missing = {"Model Size", "Training FLOP", "loss"} - set(df.columns)
    if missing:
        sys.exit(f"bench_fit.py: {CHINCHILLA_CSV} lacks column(s) {sorted(missing)}")
    df["N"] = df["Model Size"]
    df["D"] = df["Training FLOP"] / (6 * df["Model Size"])  # tokens = FLOP / (6 N)
    return df.sort_values("loss").iloc[:-5].reset_index(drop=True)  # drop the 5 highest losses -> 240


# ------------------------------------------------------------------------------------------- baseline
def huber_objective(p: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> float:
    """Summed Huber loss of log residuals, ``log L = LSE(e, a - alpha log N, b - beta log D)``; p = (e, a,
    alpha, b, beta). log_n, log_d, log_l: (n,)."""
    e, a, alpha, b, beta = p
    pred = special.logsumexp([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d], axis=0)  # (n,)
    return float(np.sum(special.huber(DELTA, pred - log_l)))


def baseline_fit(log_n, log_d, log_l, starts: np.ndarray) -> tuple[optimize.OptimizeResult, int, int]:
    """L-BFGS-B from every start (scipy defaults: numeric gradient), keep the best -> (best, n_converged, nfev)."""
    best, n_ok, nfev = None, 0, 0
    for x0 in starts:
        r = optimize.minimize(huber_objective, x0, args=(log_n, log_d, log_l), method="L-BFGS-B")
        n_ok += bool(r.success)
        nfev += int(r.nfev)
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    return best, n_ok, nfev


def to_public(theta: np.ndarray) -> dict[str, float]:
    return {k: float(np.exp(v) if k in LOG_PARAMS else v) for k, v in zip(NAMES, theta)}


# ------------------------------------------------------------------------------------------- main
def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for ours (default 200)")
    ap.add_argument("--baseline-resamples", type=int, default=10,
                    help="bootstrap resamples actually run for the baseline, extrapolated per resample (default 10)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of our single fit; the median is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steep-bootstrap", type=int, default=100,
                    help="bootstrap resamples per steep-bowl seed for the optimum's CI (default 100)")
    args = ap.parse_args(argv)
    if args.bootstrap < 1 or args.baseline_resamples < 1 or args.repeats < 1:
        ap.error("--bootstrap, --baseline-resamples and --repeats must be >= 1")
    if args.baseline_resamples > args.bootstrap:
        ap.error("--baseline-resamples must be <= --bootstrap (its resamples are the first of ours)")

    df = load_chinchilla()
    n = len(df)
    log_n, log_d, log_l = (np.log(df[c].to_numpy(float)) for c in ("N", "D", "loss"))
    starts = np.array(list(itertools.product(*(COARSE_GRID[k] for k in NAMES))), dtype=float)  # (243, 5)
    law = Chinchilla(grid="coarse")
    load = os.getloadavg()
    print(f"bench_fit.py  {date.today()}  {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load avg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} (shared machine)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"data: {CHINCHILLA_CSV.name}, {n} points (5 highest losses dropped), tokens = FLOP/(6N); "
          f"start grid: {len(starts)} starts (Chinchilla grid='coarse')")
    print()

    # ---- ours: single fit
    fit_kw = dict(target="loss", N="N", D="D", progress=False)
    law.fit(df, **fit_kw)  # warm-up: imports, first-call overheads
    times = []
    for _ in range(args.repeats):
        fit, dt = timed(lambda: law.fit(df, **fit_kw))
        times.append(dt)
    t_ours = statistics.median(times)
    fit_all, t_ours_all = timed(lambda: law.fit(df, polish=None, **fit_kw))

    # ---- ours: fit + bootstrap (one call, as a user runs it); the bootstrap part = total - single fit
    fit_b, t_ours_total = timed(lambda: law.fit(df, bootstrap=args.bootstrap, seed=args.seed,
                                                 **{**fit_kw, "progress": None}))
    t_ours_boot = max(t_ours_total - t_ours, 1e-9)

    # ---- baseline: single fit
    print(f"baseline: {len(starts)} L-BFGS-B calls (numeric gradient) ...", file=sys.stderr)
    (base, base_ok, base_nfev), t_base = timed(lambda: baseline_fit(log_n, log_d, log_l, starts))

    # ---- baseline: bootstrap on the first resamples ours drew (same generator, same seed)
    rng = np.random.default_rng(args.seed)
    base_draws = np.full((args.baseline_resamples, len(NAMES)), np.nan)
    t0 = time.perf_counter()
    for b in tqdm(range(args.baseline_resamples), desc="baseline bootstrap", file=sys.stderr):
        idx = rng.integers(0, n, size=n)  # = pplaw.laws.solver.resample_indices without groups
        r, _, _ = baseline_fit(log_n[idx], log_d[idx], log_l[idx], starts)
        base_draws[b] = r.x
    t_base_boot_run = time.perf_counter() - t0
    t_base_per = t_base_boot_run / args.baseline_resamples
    t_base_boot = t_base_per * args.bootstrap  # extrapolated
    # reference only (not a target): the baseline with ours' warm start, one minimize per resample from its
    # full-data optimum -- separates the gain of the warm start from that of the solver and gradient
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for b in range(args.baseline_resamples):
        idx = rng.integers(0, n, size=n)
        optimize.minimize(huber_objective, base.x, args=(log_n[idx], log_d[idx], log_l[idx]), method="L-BFGS-B")
    t_warm_per = (time.perf_counter() - t0) / args.baseline_resamples

    # ---- report
    ours_p, all_p, base_p = fit.params, fit_all.params, to_public(base.x)
    print("== single fit (243-start grid) ==")
    print(f"ours      Chinchilla(grid='coarse').fit     {t_ours:8.3f} s  (median of {args.repeats}; "
          f"{fit.solution.n_polished} starts polished, objective {fit.solution.fun:.12g})")
    print(f"ours      same, polish=None (all starts)    {t_ours_all:8.3f} s  ({fit_all.solution.n_polished} starts "
          f"polished, objective {fit_all.solution.fun:.12g})")
    print(f"baseline  loop of minimize(L-BFGS-B)        {t_base:8.3f} s  ({len(starts)} calls, {base_ok} "
          f"converged, {base_nfev} objective evaluations, best objective {base.fun:.12g})")
    print(f"time ratio ours/baseline = {t_ours / t_base:.4f}  (speedup {t_base / t_ours:.1f}x); "
          f"polish=None: {t_ours_all / t_base:.4f} ({t_base / t_ours_all:.1f}x)")
    print()
    print("fitted parameters       ours   polish=None      baseline   rel.diff ours-base   Epoch AI (2024)")
    for k in NAMES:
        rel = (ours_p[k] - base_p[k]) / abs(base_p[k])
        print(f"  {k:<6} {ours_p[k]:14.6g} {all_p[k]:13.6g} {base_p[k]:13.6g} {rel:20.2e} {EPOCH[k]:17.6g}")
    print()

    print(f"== bootstrap ({args.bootstrap} resamples of the 240 rows, seed {args.seed}) ==")
    print(f"ours      fit + {args.bootstrap} warm-started refits    {t_ours_total:8.3f} s total, bootstrap part "
          f"{t_ours_boot:.3f} s = {t_ours_boot / args.bootstrap * 1e3:.2f} ms/resample ({fit_b.n_failed} failed)")
    print(f"baseline  {args.baseline_resamples} resamples x {len(starts)}-start loop run in {t_base_boot_run:.1f} s "
          f"= {t_base_per:.2f} s/resample -> EXTRAPOLATED to {args.bootstrap} resamples: {t_base_boot:.0f} s")
    print(f"time ratio ours/baseline = {t_ours_boot / t_base_boot:.5f}  (speedup {t_base_boot / t_ours_boot:.0f}x)")
    print(f"reference (not a target): baseline warm-started like ours, 1 minimize/resample: {t_warm_per * 1e3:.1f} "
          f"ms/resample on the same {args.baseline_resamples} -> ratio ours/that = "
          f"{t_ours_boot / args.bootstrap / t_warm_per:.3f} ({t_warm_per * args.bootstrap / t_ours_boot:.1f}x)")
    ours_first = fit_b.draws[: args.baseline_resamples]  # (R, P), optimiser scale
    diffs = {}
    for j, k in enumerate(NAMES):
        a, b = ours_first[:, j], base_draws[:, j]
        if k in LOG_PARAMS:
            a, b = np.exp(a), np.exp(b)
        diffs[k] = float(np.nanmax(np.abs(a - b) / np.abs(b)))
    print(f"same {args.baseline_resamples} resamples, max relative parameter difference ours vs baseline: "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    print("ours 95% percentile CIs: " + ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in fit_b.ci.items()
                                                  if k in NAMES))
    print()

    steep_ok = steep_bowl(args.steep_bootstrap)

    speed_fit, speed_boot = t_base / t_ours, t_base_boot / t_ours_boot
    checks = [
        (f"single fit >= {SPEEDUP_TARGET:g}x the baseline", speed_fit >= SPEEDUP_TARGET, f"{speed_fit:.1f}x"),
        (f"bootstrap >= {SPEEDUP_TARGET:g}x the baseline", speed_boot >= SPEEDUP_TARGET, f"{speed_boot:.0f}x"),
        (f"{args.bootstrap}-resample bootstrap <= {BOOT_TARGET_S:g} s (fit + bootstrap call)",
         t_ours_total <= BOOT_TARGET_S, f"{t_ours_total:.2f} s"),
        ("steep bowl: global objective and true optimum in its CI", steep_ok == 5, f"{steep_ok}/5 seeds"),
    ]
    print("== targets ==")
    for what, ok, got in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {got}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def steep_bowl(n_boot: int) -> int:
    """The steep-bowl case: per seed, the default fit's time, objective vs truth, optimum vs its CI."""
    print(f"== steep bowl (|a1| = 8, 1% noise, 75 points; PerplexityLaw() defaults; optimum CI from {n_boot} "
          "resamples) ==")
    print("seed  fit s    objective  at truth   ratio   a1      mu* [CI]                  sigma* [CI]               "
          "true (mu*, sigma*)  ok")
    law, good = PerplexityLaw(), 0
    for seed in range(5):
        df = steep_bowl_runs(seed)
        fit, dt = timed(lambda: law.fit(df, target="loss", progress=False))
        boot = law.fit(df, target="loss", bootstrap=n_boot, seed=seed, progress=False)
        truth = fit.problem.objective_batch(fit.law.internal(STEEP_TRUE)[None])[0]
        true_opt = _search(lambda m, s: fit.law.g(STEEP_TRUE, m, s), Region.make(None, fit.data), 201)[0]
        opt = boot.optimum()
        (m0, m1), (s0, s1) = opt.ci["mu"], opt.ci["sigma"]
        ok = bool(fit.solution.fun <= truth and m0 <= true_opt[0] <= m1 and s0 <= true_opt[1] <= s1)
        good += ok
        print(f"{seed:4d} {dt:6.2f} {fit.solution.fun:12.4e} {truth:10.4e} {fit.solution.fun / truth:7.4f} "
              f"{fit.params['a1']:7.3f}  {opt.mu:.4f} [{m0:.4f}, {m1:.4f}]    {opt.sigma:.4f} [{s0:.4f}, {s1:.4f}]"
              f"    ({true_opt[0]:.4f}, {true_opt[1]:.4f})  {'yes' if ok else 'NO'}")
    print()
    return good


if __name__ == "__main__":
    sys.exit(main())
