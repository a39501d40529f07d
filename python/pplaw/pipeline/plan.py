"""The fitting grid: subsets that realise a spread of (mu, sigma) regimes at several sizes D.

A *regime* is a region of the perplexity landscape:

- a **window**: a contiguous run of landscape bins (token-weighted quantile bins), realised by sampling D
  tokens uniformly inside that quantile window (``pplaw.sample_subset(quantile_window=...)``);
- a **mixture**: two windows pooled (neighbours first, see :func:`make_regimes`). Its target is the
  pooled chunks' (mu, sigma) - a similar mean to the windows between them, a wider spread. With
  ``plan.mixture_sampling: band`` (the default) a pool that is one contiguous stretch of bins (neighbours)
  is sampled uniformly inside it, like a window: the family the final selection picks from (contiguous bands
  sampled uniformly). With ``target`` (and for pools with a gap) it is realised by target sampling
  (``pplaw.sample_subset(target_mean=..., target_std=...)``, mean within 1%, std within 2%), which meets the
  moments with whatever chunks do so: two subsets with the same (mu, sigma) can hold different text, so a
  moment-matched mixture is a different subset than the band of the same moments.

Every regime is realised at every size D (x replay ratio R x seed). What the corpus cannot realise (a
window holding fewer than D tokens, a target outside the realisable range at D) is not silently moved:
the point is kept in the plan with status ``unreachable`` and the reason (the realisable range), and the
report lists it.

:func:`realisable_region` describes every (mu, sigma) a subset of D tokens can have: for each mean, the
std lies between that of the contiguous window of the PPL ranking with that mean (least spread) and that of
"lowest a + highest tail" (most spread). The optimum of the law is searched inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw._atomic import jsonable
from pplaw.exceptions import BudgetError, ConfigError, UnreachableTargetError
from pplaw.io import write_indices
from pplaw.pipeline.sections import NO_VALIDATION, PlanSection

SPACES = ("ppl", "log_ppl")


VALIDATION_ROUNDING = 1e-3  # validation sizes within 0.1% of 2x the largest fitting size count as 2x


def resolve_size(value: float, total_tokens: int, what: str) -> int:
    """A size from the recipe: a share of the corpus (<= 1) or a token count (> 1)."""
    tokens = int(round(value * total_tokens)) if value <= 1 else int(value)
    if tokens < 1:
        raise ConfigError(f"{what} = {value} gives {tokens} tokens (corpus: {total_tokens:,} tokens)")
    if tokens > total_tokens:
        raise ConfigError(f"{what} = {value} asks for {tokens:,} tokens but the corpus holds {total_tokens:,}")
    return tokens


def validation_tokens(cfg: PlanSection, sizes: list[int], total_tokens: int) -> tuple[list[int], str | None]:
    """The held-out sizes in tokens, and why there are none (None when there are some).

    ``plan.validation_sizes`` unset: one size, twice the largest fitting size *in tokens* (so the default
    holds whatever unit ``plan.sizes`` is in, shares or token counts); skipped with the reason when the corpus
    is smaller than that. Listed sizes must be >= 2x the largest fitting size (up to rounding)."""
    if cfg.validation_sizes is None:
        v = 2 * max(sizes)
        if v > total_tokens:
            return [], (f"no held-out validation runs: the default held-out size, 2x the largest fitting size "
                        f"({v:,} tokens), exceeds the corpus ({total_tokens:,} tokens); lower plan.sizes to at most "
                        f"half the corpus to validate the law")
        return [v], None
    if not cfg.validation_sizes:
        return [], NO_VALIDATION
    vsizes = [resolve_size(v, total_tokens, "plan.validation_sizes") for v in cfg.validation_sizes]
    for v in vsizes:
        # 2x up to the rounding of shares to whole tokens (0.2 and 0.1 of 186,167 tokens are 37,233 and 18,617)
        if v < 2 * max(sizes) * (1 - VALIDATION_ROUNDING):
            raise ConfigError(f"plan.validation_sizes: {v:,} tokens is less than 2x the largest fitting size "
                              f"({max(sizes):,} tokens): a held-out point must test extrapolation in D")
    return vsizes, None


def pool_tokens(band: Any, total_tokens: int) -> float:
    """Tokens in a landscape band ``(q_lo, q_hi)`` of token-weighted quantiles (NaN without a band)."""
    try:
        lo, hi = float(band[0]), float(band[1])
    except (TypeError, IndexError, ValueError):
        return float("nan")
    return max(hi - lo, 0.0) * float(total_tokens)


def stats_both(table: pa.Table, idx: np.ndarray) -> dict[str, float]:
    """(mu, sigma) of a subset in both spaces, plus its tokens and chunk count (Rust ``subset_stats``)."""
    from pplaw.sampling import subset_stats

    p = subset_stats(table, idx, space="ppl")
    lg = subset_stats(table, idx, space="log_ppl")
    return {"tokens": int(p["tokens"]), "count": int(p["count"]), "mu_ppl": float(p["mean"]),
            "sigma_ppl": float(p["std"]), "mu_log_ppl": float(lg["mean"]), "sigma_log_ppl": float(lg["std"])}


# ----------------------------------------------------------------------------------------------------------
# the realisable region


@dataclass
class RealisableRegion:
    """Every (mu, sigma) a subset of ``budget`` tokens can have (in ``space``). Used as the ``region`` of
    ``PerplexityLaw.optimum``: it has ``contains(mu, sigma)`` and ``bbox``."""

    budget: int
    space: str
    lower: np.ndarray  # (m, 2) (mean, std) along the least-spread edge, mean ascending
    upper: np.ndarray  # (k, 2) (mean, std) along the most-spread edge, mean ascending

    @property
    def mean_range(self) -> tuple[float, float]:
        return (max(self.lower[0, 0], self.upper[0, 0]), min(self.lower[-1, 0], self.upper[-1, 0]))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        lo, hi = self.mean_range
        s_lo = max(float(self.lower[:, 1].min()), 1e-9 * max(abs(hi), 1.0))
        return (max(lo, 1e-12), hi, s_lo, float(self.upper[:, 1].max()))

    def edges_at(self, mu: Any) -> tuple[np.ndarray, np.ndarray]:
        """(least, most) std a subset with mean ``mu`` can have. Interpolated linearly in (mean, second moment):
        sliding a window (or a tail split) by a fraction of a chunk moves both linearly, so this is exact
        between neighbouring edge points and conservative (inside the region) between thinned ones."""
        mu = np.asarray(mu, float)
        q_lo = np.interp(mu, self.lower[:, 0], self.lower[:, 1] ** 2 + self.lower[:, 0] ** 2)
        q_hi = np.interp(mu, self.upper[:, 0], self.upper[:, 1] ** 2 + self.upper[:, 0] ** 2)
        return np.sqrt(np.maximum(q_lo - mu**2, 0.0)), np.sqrt(np.maximum(q_hi - mu**2, 0.0))

    def contains(self, mu: Any, sigma: Any) -> np.ndarray:
        mu, sigma = np.asarray(mu, float), np.asarray(sigma, float)
        lo, hi = self.mean_range
        s_lo, s_hi = self.edges_at(mu)
        tol = 1e-9 * (abs(hi) + 1.0)  # float round-off (prefix sums, sqrt(q - m^2)) at the edges
        return (mu >= lo - tol) & (mu <= hi + tol) & (sigma >= s_lo - tol) & (sigma <= s_hi + tol)

    def outline(self, n: int = 200) -> np.ndarray:
        """Closed polygon (mean, std) for plots: the lower edge left to right, the upper edge back."""
        lo, hi = self.mean_range
        m = np.linspace(lo, hi, n)
        s_lo, s_hi = self.edges_at(m)
        return np.vstack([np.column_stack([m, s_lo]), np.column_stack([m, s_hi])[::-1], [[m[0], s_lo[0]]]])

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "space": self.space, "lower": self.lower.tolist(), "upper": self.upper.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RealisableRegion:
        return cls(int(d["budget"]), d["space"], np.asarray(d["lower"], float), np.asarray(d["upper"], float))


def _thin(points: np.ndarray, n: int = 400) -> np.ndarray:
    """Keep at most ``n`` points of a curve (the ends always), sorted by mean."""
    points = points[np.argsort(points[:, 0], kind="stable")]
    if len(points) <= n:
        return points
    return points[np.unique(np.linspace(0, len(points) - 1, n).round().astype(int))]


def realisable_region(ppl: np.ndarray, tokens: np.ndarray, budget: int, space: str = "ppl") -> RealisableRegion:
    """The region (see the module doc) from per-chunk PPL and token counts: the Rust core's edges
    (:func:`pplaw.sampling.realisable_edges`: windows and tails of the PPL ranking, prefix sums, O(n log n)),
    thinned for the plan's files and plots.

    Token-weighted moments (identical to the chunk-weighted ones when all chunks have the same length).
    """
    from pplaw.sampling import realisable_edges

    if space not in SPACES:
        raise ConfigError(f"space must be one of {SPACES}, got {space!r}")
    lower, upper = realisable_edges({"ppl": ppl, "n_scored": tokens}, token_budget=int(budget), space=space)
    return RealisableRegion(int(budget), space, _thin(lower), _thin(upper))


# ----------------------------------------------------------------------------------------------------------
# regimes and grid points


@dataclass
class Regime:
    name: str
    shape: str  # "window", "mixture" or "band" (a window as wide as the final selection's bands)
    bins: list[tuple[int, int]]  # [(first bin, end bin)) windows of landscape bins
    quantiles: list[tuple[float, float]]  # the same as token quantiles
    target: dict[str, float] | None = None  # mixtures: pooled (mu, sigma) in the fit space


def make_regimes(table: pa.Table, n_bins: int, cfg: PlanSection, max_size_tokens: int, total_tokens: int,
                 space: str, final_share: float | None = None) -> list[Regime]:
    """Windows evenly spread over the landscape, then mixtures of pairs of them (see the module doc), then
    ``plan.budget_bands`` bands as wide as the narrowest band that holds the final budget (``final_share`` of
    the corpus)."""
    width = cfg.window_bins or min(n_bins, math.ceil(n_bins * max_size_tokens / total_tokens) + 1)
    if width > n_bins:
        raise ConfigError(f"plan.window_bins = {width} exceeds landscape.n_bins = {n_bins}")
    starts = np.unique(np.linspace(0, n_bins - width, cfg.windows).round().astype(int))
    regimes = [Regime(f"w{i}", "window", [(int(s), int(s + width))], [(s / n_bins, (s + width) / n_bins)])
               for i, s in enumerate(starts)]
    # Mixture pairs, in order of preference: neighbours (a contiguous stretch of the landscape twice a
    # window wide: the regimes between two windows, with a wider spread), then neighbours-but-one, then
    # symmetric pairs (very wide, bimodal). Pooling distant windows only gives bimodal subsets whose
    # (mu, sigma) say little about which chunks they hold, so they come last. Within a group the picks are
    # spread evenly over the landscape.
    k = len(regimes)
    groups = [[(i, i + 1) for i in range(k - 1)], [(i, i + 2) for i in range(k - 2)],
              [(i, k - 1 - i) for i in range(k // 2) if k - 1 - 2 * i > 2]]
    chosen: list[tuple[int, int]] = []
    for group in groups:
        group = [p for p in group if p not in chosen]
        need = cfg.mixtures - len(chosen)
        if need <= 0 or not group:
            continue
        pick = np.unique(np.linspace(0, len(group) - 1, min(need, len(group))).round().astype(int))
        chosen += [group[i] for i in pick]
    for j, (i1, i2) in enumerate(chosen):
        r1, r2 = regimes[i1], regimes[i2]
        regimes.append(Regime(f"m{j}", "mixture", r1.bins + r2.bins, r1.quantiles + r2.quantiles))
    if cfg.budget_bands and final_share is not None:
        # The final selection picks among contiguous bands wide enough for the budget (pipeline.select.bands_at);
        # sampled uniformly, a band's (mu, sigma) does not depend on D, so the same bands at the fitting sizes
        # put the law's knots where it will be asked to predict: the final forecast becomes an extrapolation in
        # D alone, not in (mu, sigma) too (narrow windows and pooled pairs never reach those spreads).
        bw = min(n_bins, math.ceil(1.05 * final_share * n_bins - 1e-9))
        b_starts = np.unique(np.linspace(0, n_bins - bw, cfg.budget_bands).round().astype(int))
        regimes += [Regime(f"b{i}", "band", [(int(s), int(s + bw))], [(s / n_bins, (s + bw) / n_bins)])
                    for i, s in enumerate(b_starts)]
    return regimes


def _mixture_target(table: pa.Table, bin_index: np.ndarray, reg: Regime, space: str) -> dict[str, float]:
    from pplaw.sampling import subset_stats

    mask = np.zeros(len(bin_index), dtype=bool)
    for lo, hi in reg.bins:
        mask |= (bin_index >= lo) & (bin_index < hi)
    st = subset_stats(table, mask, space=space)
    return {"mu": float(st["mean"]), "sigma": float(st["std"])}


def contiguous_span(bins: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The one stretch ``[lo, hi)`` of bins that ``bins`` cover without a gap, or None when they leave one."""
    spans = sorted(bins)
    lo, hi = spans[0]
    for a, b in spans[1:]:
        if a > hi:
            return None
        hi = max(hi, b)
    return lo, hi


def point_id(regime: str, size_no: int, r: float, seed: int) -> str:
    return f"{regime}_D{size_no}_R{r:g}_s{seed}"


def band_window(quantiles: list[tuple[float, float]], share: float, n_bins: int,
                extra_bins: int = 0) -> tuple[float, float]:
    """The contiguous band of landscape bins a regime stands for, wide enough for ``share`` of the corpus.

    A window's own bins when they hold ``share`` of the tokens; else the band widened symmetrically around
    its centre (clamped to the landscape) to ``ceil(1.05 * share * n_bins) + extra_bins`` bins, snapped to
    bin edges. A mixture's band spans its windows. This is how a regime is realised at a size larger than
    the one its window was cut for: the validation sizes, the best-sweep-regime baseline and the band family
    DOS selects from all use it, so every subset the loop trains on is a contiguous band of the landscape.
    """
    lo, hi = min(q for q, _ in quantiles), max(q for _, q in quantiles)
    b_lo, b_hi = int(round(lo * n_bins)), int(round(hi * n_bins))
    need = min(n_bins, max(b_hi - b_lo, math.ceil(1.05 * share * n_bins - 1e-9) + extra_bins))
    if b_hi - b_lo < need:
        centre = (b_lo + b_hi) / 2
        b_lo = int(round(centre - need / 2))
        b_lo = min(max(b_lo, 0), n_bins - need)
        b_hi = b_lo + need
    return b_lo / n_bins, b_hi / n_bins


def window_tokens(table: pa.Table, band: tuple[float, float]) -> int:
    """Tokens of the chunks inside a landscape band ``(q_lo, q_hi)`` (the sampler's own window, so a draw of
    exactly this many tokens takes the whole band)."""
    from pplaw.sampling import realisable_range

    return int(realisable_range(table, token_budget=1, quantile_window=tuple(band))["window_tokens"])


def band_draw(table: pa.Table, band: tuple[float, float], D: int, seed: int, max_repeat: float = 1.0,
              sample: Any = None) -> tuple[np.ndarray, bool]:
    """``(rows, repeated)``: ``D`` tokens drawn uniformly inside ``band``; a band holding fewer than ``D`` but at least
    ``D / max_repeat`` tokens is taken whole (training then repeats it: a run trains on ``epochs x D``
    tokens whatever its subset holds, :func:`pplaw.pipeline.sweep.cpt_options`, about ``D / P`` passes over
    a band of ``P`` tokens). ``sample``: the drawer's ``sample_subset`` (default: in memory over ``table``).

    Why whole and repeated rather than widened (``select.max_repeat`` > 1): a band is a finite slice of the
    corpus, and a practitioner who found the best data at proxy scale trains on it for more epochs at the
    final budget (Muennighoff et al., 2023: up to ~4 epochs of repeated data are worth nearly as much as
    fresh data, then less); whether that beats a wider band of fresh text is what the law must forecast."""
    if sample is None:
        from pplaw.sampling import sample_subset

        def sample(**kw: Any) -> np.ndarray:
            return sample_subset(table, return_indices=True, **kw)

    band = (float(band[0]), float(band[1]))
    P = window_tokens(table, band) if max_repeat > 1 else None
    if P is None or P >= D:
        return np.asarray(sample(token_budget=D, quantile_window=band, seed=seed)), False
    if P * max_repeat < D:
        raise BudgetError(f"band {list(band)} holds {P:,} tokens: {D:,} tokens would repeat it {D / P:.2f} times, "
                          f"more than max_repeat = {max_repeat:g}")
    return np.asarray(sample(token_budget=P, quantile_window=band, seed=seed)), True


def sample_band(table: pa.Table, quantiles: list[tuple[float, float]], D: int, n_bins: int, seed: int,
                total: int, max_repeat: float = 1.0) -> tuple[np.ndarray, tuple[float, float]]:
    """``(rows, band)``: ``D`` tokens sampled uniformly inside the regime's band (:func:`band_window`), widened
    one bin at a time while the band holds too few tokens (token-weighted bins hold about their share, not
    exactly). ``max_repeat`` > 1: the band need only hold ``D / max_repeat`` tokens; one that holds less than ``D`` is
    taken whole, to be repeated in training (:func:`band_draw`)."""
    for extra in range(n_bins + 1):
        q = band_window(quantiles, D / total / max_repeat, n_bins, extra)
        try:
            return band_draw(table, q, D, seed, max_repeat)[0], q
        except BudgetError:
            if q == (0.0, 1.0):
                raise
    raise BudgetError(f"no band of the landscape holds {D:,} tokens")  # pragma: no cover (the whole corpus does)


def validation_regimes(regimes: list[Regime], k: int, family: str = "window") -> list[Regime]:
    """``k`` regimes spread evenly from low to high PPL (the held-out points' regimes).

    ``family="band"``: the budget bands (windows when there are none). A band wide enough for the final budget
    holds the validation size without widening, so its held-out run is the *same* subset distribution at a
    larger D: its error is the error of the law's curve in D, which is what the final forecast extrapolates. A
    window must be widened to hold the larger size, so its (mu, sigma) moves with D; a widened learnable window
    takes in more learnable text and its loss falls faster than the window's own curve would (measured on world
    seed 12: log-slope 0.49 -> 0.81 per doubling), while a fixed band's slope falls (0.68 -> 0.53) as the loss
    nears its floor: windows hide the deceleration the final run meets. Measured on fresh world seeds 20-27,
    neither family removed the forecast's low bias (mean -11.4% with windows, -13.5% with bands), so the
    default stays ``window``."""
    if family == "lead":  # chosen after the sweep, from its results (:func:`lead_points`)
        return []
    shapes = ("band",) if family == "band" and any(r.shape == "band" for r in regimes) else ("window",)
    pool = [r for r in regimes if r.shape in shapes]
    pick = np.unique(np.linspace(0, len(pool) - 1, min(k, len(pool))).round().astype(int))
    return [pool[i] for i in pick]


def lead_regimes(rows: list[dict[str, Any]], regimes: list[dict[str, Any]], k: int, target: str,
                 final_budget: int, n_bins: int, total: int,
                 max_repeat: float = 1.0) -> list[tuple[dict[str, Any], tuple[float, float]]]:
    """The ``k`` best sweep regimes at the largest fitting size (mean ``target`` over seeds and replay ratios),
    best first, each with its band at the final budget (:func:`band_window`, as the best-sweep baseline
    realises it); regimes whose bands coincide there count once.

    Why these: the final forecast that matters is the one for the band the loop selects, and the selection
    picks among the leaders (the best sweep regime in every fresh seed so far), as successive halving keeps
    only the leaders for the larger budget."""
    fit = [r for r in rows if r.get("role", "fit") == "fit" and r.get("status") == "ok"
           and r.get(target) is not None and np.isfinite(float(r[target]))]
    if not fit:
        return []
    top = int(max(fit, key=lambda r: float(r["D"]))["size_no"])  # the largest fitting size (every regime ran there)
    by: dict[str, list[float]] = {}
    for r in fit:
        if int(r["size_no"]) == top:
            by.setdefault(str(r["regime"]), []).append(float(r[target]))
    known = {g["name"]: g for g in regimes}
    chosen: list[tuple[dict[str, Any], tuple[float, float]]] = []
    for name in sorted(by, key=lambda n: (float(np.mean(by[n])), n)):
        if name not in known:
            continue
        band = band_window([tuple(q) for q in known[name]["quantiles"]], final_budget / total / max_repeat, n_bins)
        if any(band == b for _, b in chosen):
            continue
        chosen.append((known[name], band))
        if len(chosen) == k:
            break
    return chosen


def passes_draw(table: pa.Table, band: tuple[float, float], D: int, final: int, seed: int, max_repeat: float,
               passes: float) -> tuple[np.ndarray, bool]:
    """``(rows, repeated)`` of a held-out leader at size ``D`` whose band the final run repeats ``passes`` times
    (``select.max_repeat`` > 1): a uniform sample of ``D / passes`` tokens of the band, trained for ``D``, so the
    held-out run makes as many passes over its data as the final run does. A run at one pass cannot show what
    repetition costs (data-constrained scaling: the value of a repeated token decays with the passes over it,
    Muennighoff et al., 2023), and the law's pool term is scored on these runs. A band the final run does not
    repeat is sampled to ``D`` as before."""
    if passes <= 1.0 or D >= final:
        return band_draw(table, band, D, seed, max_repeat)
    from pplaw.sampling import sample_subset

    sub = sample_subset(table, token_budget=max(1, int(round(D / passes))), quantile_window=tuple(band), seed=seed,
                        return_indices=True)
    return np.asarray(sub), True


def lead_points(table: pa.Table, plan: dict[str, Any], rows: list[dict[str, Any]], cfg: PlanSection, target: str,
                out_dir: Path) -> list[dict[str, Any]]:
    """``plan.validation_family: lead``: the held-out points of the :func:`lead_regimes`: each leader's band *at
    the final budget* (the subset distribution the best-sweep baseline, and a law band near it, trains on there),
    sampled uniformly to the validation size; written under ``out_dir/points/``, fields as :func:`build_plan`'s.

    So the held-out run is the final candidate's own distribution at a smaller D: its error is the error of the
    law's curve in D where the final forecast extrapolates. Realising the leader at the validation size instead
    (its window widened only to hold that size) moves its (mu, sigma) with D: on world seed 21 a widened
    learnable window's loss fell faster than any fixed band's and the floor was misjudged. With
    ``select.max_repeat`` > 1 a leader whose band the final run repeats keeps its passes (:func:`passes_draw`)."""
    vsizes, total, n_bins = plan["validation_sizes"], int(plan["total_tokens"]), int(plan["n_bins"])
    final = int(plan.get("final_budget") or max(vsizes))
    n_fit = len(plan["sizes"])
    (out_dir / "points").mkdir(parents=True, exist_ok=True)
    points = []
    rep = float(plan.get("max_repeat") or 1.0)
    for reg, _ in lead_regimes(rows, plan["regimes"], cfg.validation_regimes, target, final, n_bins, total, rep):
        for seed in cfg.seeds:
            for j, D in enumerate(vsizes):
                try:  # the band as the best-sweep baseline finds it at the final budget (or at D, if larger)
                    band = sample_band(table, [tuple(q) for q in reg["quantiles"]], max(final, D), n_bins, seed,
                                       total, rep)[1]
                except BudgetError:
                    band = None
                passes = final / window_tokens(table, band) if band is not None and rep > 1 else 1.0
                for r in cfg.replay_ratios:
                    pid = point_id(reg["name"], n_fit + j, r, seed)
                    pt: dict[str, Any] = {"id": pid, "regime": reg["name"], "shape": reg["shape"],
                                          "bins": reg["bins"], "quantiles": reg["quantiles"],
                                          "target": reg["target"], "size_no": n_fit + j, "D_request": D,
                                          "R": float(r), "seed": int(seed), "role": "validation", "band": None,
                                          "status": "ok", "reason": None}
                    try:
                        if band is None:
                            raise BudgetError(f"no band around regime {reg['name']} holds {max(final, D):,} "
                                              "tokens")
                        idx, repeated = passes_draw(table, band, D, final, seed, rep, passes)
                    except BudgetError as err:
                        pt.update(status="unreachable", reason=str(err))
                        points.append(pt)
                        continue
                    name = f"points/{pid}.parquet"
                    write_indices(table, idx, out_dir / name)
                    pt.update(indices=name, band=[float(band[0]), float(band[1])], **stats_both(table, idx))
                    # the D it trains for (epochs x D): the subset's tokens (within a chunk of D), or D itself
                    pt["D"] = int(D) if repeated else int(pt["tokens"])
                    if repeated:  # its pool is the subset itself, not the band: P for the law's pool term
                        pt.update(pool=int(pt["tokens"]), passes=pt["D"] / pt["tokens"])
                    points.append(pt)
    return points


def build_plan(table: pa.Table, bin_index: np.ndarray, n_bins: int, cfg: PlanSection, *, space: str,
               out_dir: Path, progress: Any = None, final_budget: int | None = None) -> dict[str, Any]:
    """Realise every grid point; write ``points/<id>.parquet`` (rows, chunk_id, ppl, n_scored) for each.

    Returns ``{"sizes": [tokens], "validation_sizes": [tokens], "validation_note": why there are none or None,
    "regimes": [...], "points": [...]}``; each
    point holds its request, its role (``fit``: the law is fitted on it; ``validation``: held out, at a size
    >= 2x the largest fitting size), its status (``ok`` or ``unreachable`` with the reason) and its realised
    statistics in both spaces.
    """
    from pplaw.sampling import sample_subset

    total = int(np.asarray(table.column("n_scored")).sum())
    sizes = [resolve_size(v, total, "plan.sizes") for v in cfg.sizes]
    vsizes, no_validation = validation_tokens(cfg, sizes, total)
    regimes = make_regimes(table, n_bins, cfg, max(sizes), total, space,
                           None if final_budget is None else final_budget / total)
    for reg in regimes:
        if reg.shape == "mixture":
            reg.target = _mixture_target(table, bin_index, reg, space)
    (out_dir / "points").mkdir(parents=True, exist_ok=True)
    points, cache = [], {}
    jobs = [(reg, k, D, r, seed, "fit") for reg in regimes for k, D in enumerate(sizes) for r in cfg.replay_ratios
            for seed in cfg.seeds]
    jobs += [(reg, len(sizes) + j, D, r, seed, "validation")
             for reg in validation_regimes(regimes, cfg.validation_regimes, cfg.validation_family)
             for j, D in enumerate(vsizes) for r in cfg.replay_ratios for seed in cfg.seeds]
    for reg, k, D, r, seed, role in jobs:
        pid = point_id(reg.name, k, r, seed)
        pt: dict[str, Any] = {"id": pid, "regime": reg.name, "shape": reg.shape, "bins": reg.bins,
                              "quantiles": reg.quantiles, "target": reg.target, "size_no": k, "D_request": D,
                              "R": float(r), "seed": int(seed), "role": role, "band": None, "status": "ok",
                              "reason": None}
        key = (reg.name, D, seed)  # the subset does not depend on R: replay is added at training time
        try:
            if key not in cache:
                if role == "validation":  # the regime's band, widened around its centre to hold D
                    cache[key] = sample_band(table, reg.quantiles, D, n_bins, seed, total)
                elif reg.shape in ("window", "band") or (cfg.mixture_sampling == "band" and
                                                         contiguous_span(reg.bins) is not None):
                    lo_b, hi_b = contiguous_span(reg.bins)
                    q_lo, q_hi = lo_b / n_bins, hi_b / n_bins
                    cache[key] = (sample_subset(table, token_budget=D, quantile_window=(q_lo, q_hi), seed=seed,
                                                return_indices=True), (q_lo, q_hi))
                else:
                    cache[key] = (sample_subset(table, token_budget=D, target_mean=reg.target["mu"],
                                                target_std=reg.target["sigma"], space=space, seed=seed,
                                                return_indices=True), None)
            idx, band = cache[key]
        except (UnreachableTargetError, BudgetError) as err:
            pt.update(status="unreachable", reason=str(err),
                      realisable=jsonable(getattr(err, "realisable", None)))
            points.append(pt)
            if progress is not None:
                progress.update(1)
            continue
        name = f"points/{pid}.parquet"
        write_indices(table, idx, out_dir / name)
        pt.update(indices=name, band=None if band is None else [float(band[0]), float(band[1])],
                  **stats_both(table, idx))
        pt["D"] = pt["tokens"]
        points.append(pt)
        if progress is not None:
            progress.update(1)
    return {"sizes": sizes, "validation_sizes": vsizes, "validation_note": no_validation, "total_tokens": total,
            "space": space,
            "n_bins": int(n_bins),
            "regimes": [{"name": r.name, "shape": r.shape, "bins": r.bins, "quantiles": r.quantiles,
                         "target": r.target} for r in regimes],
            "points": points}


def plot_plan(plan: dict[str, Any], regions: dict[int, RealisableRegion], path: Path) -> Path:
    """The planned points in the (mu, sigma) plane over the realisable region at each size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pplaw._atomic import atomic_write

    space = plan["space"]
    key = "log_ppl" if space == "log_ppl" else "ppl"
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for k, (D, reg) in enumerate(sorted(regions.items())):
        o = reg.outline()
        ax.fill(o[:, 0], o[:, 1], alpha=0.08, color=f"C{k}")
        ax.plot(o[:, 0], o[:, 1], lw=0.8, color=f"C{k}", label=f"realisable at D={D:,}")
    ok = [p for p in plan["points"] if p["status"] == "ok"]
    for shape, marker in (("window", "o"), ("mixture", "s"), ("band", "^")):
        pts = [p for p in ok if p["shape"] == shape]
        if pts:
            ax.scatter([p[f"mu_{key}"] for p in pts], [p[f"sigma_{key}"] for p in pts], marker=marker,
                       c=[f"C{p['size_no']}" for p in pts], edgecolor="k", s=40, zorder=3, label=f"{shape} points")
    for p in ok:
        if p["seed"] == plan["points"][0]["seed"] and p["R"] == plan["points"][0]["R"] and p["size_no"] == 0:
            ax.annotate(p["regime"], (p[f"mu_{key}"], p[f"sigma_{key}"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
    bad = [p for p in plan["points"] if p["status"] != "ok" and p.get("target")]
    if bad:
        ax.scatter([p["target"]["mu"] for p in bad], [p["target"]["sigma"] for p in bad], marker="x", c="red",
                   s=50, zorder=4, label="unreachable targets")
    if space == "ppl":
        ax.set_xscale("log")
        ax.set_yscale("log")
    label = "log-PPL" if space == "log_ppl" else "PPL"
    ax.set(xlabel=f"subset mean chunk {label} (mu)", ylabel=f"subset std of chunk {label} (sigma)",
           title="Fitting grid: planned subsets in the realisable (mu, sigma) region")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
