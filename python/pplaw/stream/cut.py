"""Pass 2 and the exact cut: order values, the token histogram, the candidates and the quantile edges."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shutil
import tempfile
from fractions import Fraction

from pplaw.exceptions import BudgetError, EmptyInputError, InvalidInputError, UnreachableTargetError
from pplaw.landscape import _grid_cells
from pplaw.stream import passes
from pplaw.stream.run import map_shards
from pplaw.stream.scan import Scan
from pplaw.stream.tilt import fit_tilt
from pplaw.stream.write import Selection, _write_selection

CAND_SPAN_KEY = 0.005  # candidate range around the predicted key cut: +-0.5% of the cut (and >= 6 bins)
CAND_SPAN_PRIO = 0.02  # ... around the predicted priority cut 0: +-0.02
CAND_MAX = 2_000_000  # ... and never more than about this many chunks (56 bytes each)


def _cut_select(scan: Scan, budget: int, space: str, pwin: Any, qwin: Any, seed: int, tilt: dict | None,
                out: Any, executor: str, progress: bool | None, request: dict, *, check: Any = None,
                what: str = "sample", keep_rows: bool = True) -> Selection:
    summ = scan.summary
    fracs, intervals = [], []
    lo_iv = hi_iv = None
    pmin, pmax = (pwin or (0.0, math.inf))
    if qwin is not None:
        for q in qwin:
            # the core's (q * 2^53).round(): half away from zero, in exact rationals (x + 0.5 in floats
            # rounds to even above 2^52)
            num = math.floor(Fraction(q) * (1 << 53) + Fraction(1, 2))
            t = -(-(num * scan.grid.n_tokens) // (1 << 53))  # smallest token count reaching the fraction
            fracs.append(t)
            intervals.append(_quantile_interval(scan, t))
        lo_iv = (max(pmin, intervals[0][0]), max(pmin, intervals[0][1]))
        hi_iv = (min(pmax, intervals[1][0]), min(pmax, intervals[1][1]))
    plan: dict[str, Any] = {"space": space, "seed": seed, "lo": lo_iv or (pmin, pmin),
                            "hi": hi_iv or (pmax, pmax), "edge_intervals": intervals}
    est_lo, est_hi = plan["lo"][0], plan["hi"][1]
    mid, count, tokens = _grid_cells(scan.grid)
    inwin = (mid >= est_lo) & (mid <= est_hi)
    if tilt is None:
        plan["order"] = "key"
        per_bin = float(count[inwin].sum()) / passes.n_bins(plan)
        plan["cand_bins"] = _candidate_bins(plan, budget / max(float(tokens[inwin].sum()), 1.0), per_bin)
    else:
        x = np.log(mid[inwin]) if space == "log_ppl" else mid[inwin]
        w = tokens[inwin].astype(np.float64)
        if budget >= w.sum():
            raise BudgetError(f"token_budget = {budget} is not below the {int(w.sum())} tokens of {scan.path!r} "
                              f"the targets can be drawn from")
        wmean = float(w @ x / w.sum())
        wstd = float(np.sqrt(max(w @ (x - wmean) ** 2 / w.sum(), 0.0)))
        center = tilt["mean"] if tilt["mean"] is not None else wmean
        scale = tilt["std"] if tilt["std"] is not None else max(wstd, 1e-300)
        label = f"{what} to target (mean={tilt['mean']}, std={tilt['std']}) in {space} at token_budget = {budget}"
        try:
            lam = fit_tilt(x, w, float(budget), center, scale, (1.0, 0.0, 1.0),
                           (True, tilt["mean"] is not None, tilt["std"] is not None), what=label)
        except UnreachableTargetError as err:
            raise UnreachableTargetError(f"{err}; realisable mean range about {_mean_range(x, w, budget)} "
                                         f"(from the landscape's grid)",
                                         {"mean": _mean_range(x, w, budget)}) from None
        plan.update(order="prio", lam=[float(v) for v in lam], center=center, scale=scale)
        z = (x - center) / scale
        p = 1.0 / (1.0 + np.exp(-np.clip(lam[0] + lam[1] * z + lam[2] * z * z, -700, 700)))
        # chunks per priority bin near 0: the density of logit(u) - eta at 0 is p (1 - p) per chunk
        per_bin = float(np.sum(count[inwin] * p * (1 - p))) * (2 * passes.PRIO_RANGE / passes.PRIO_BINS)
        plan["cand_bins"] = _candidate_bins(plan, None, per_bin)
    args = [(str(f), s, scan.columns, plan) for f, s in zip(scan.files, scan.starts)]
    spill = Path(tempfile.mkdtemp(prefix="pplaw-stream-"))  # written and read by this process only
    try:
        return _cut_passes(scan, args, plan, budget, pmin, pmax, qwin, fracs, intervals, spill, out, executor,
                           progress, request, tilt, check, what, keep_rows)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _cut_passes(scan: Scan, args: list, plan: dict, budget: int, pmin: float, pmax: float, qwin: Any,
                fracs: list, intervals: list, spill: Path, out: Any, executor: str, progress: bool | None,
                request: dict, tilt: Any, check: Any, what: str, keep_rows: bool) -> Selection:
    """Pass 2 (the members below the candidate range go to ``spill``, one file per shard), the exact cut,
    then the selection: from the spilled rows and the candidates when the cut fell inside the candidate
    range (no third pass), else from pass 2b and a last pass."""
    summ = scan.summary
    hist, cands, edges, below = None, [], [], [0] * len(intervals)
    for k, res in enumerate(map_shards(passes.classify, args, executor=executor, desc=f"{what}: pass 2 (cut)",
                                       progress=progress, rows=scan.counts)):
        hist = res["hist"] if hist is None else hist + res["hist"]
        cands.append(res["cand"])
        edges.append(res["edge"])
        below = [a + b for a, b in zip(below, res["below"])]
        sure = res["sure"]
        np.savez(spill / f"{k}.npz", **{n: sure[n] for n in ("row", "file_row", "chunk_id", "ppl", "tokens")})
        del res, sure
    cand, edge = passes.concat_records(cands), passes.concat_records(edges)
    # exact window bounds from the edge chunks
    if qwin is not None:
        q = [_resolve_quantile(summ, t, iv, b, edge) for t, iv, b in zip(fracs, intervals, below)]
        lo, hi = max(pmin, q[0]), min(pmax, q[1])
    else:
        lo, hi = pmin, pmax
    _, und = passes.membership(edge["ppl"], plan)
    und_in = und & (edge["ppl"] >= lo) & (edge["ppl"] <= hi)
    extra = {k: v[und_in] for k, v in edge.items()}
    extra_bins = _bins_of(extra, plan)
    hist = hist + np.bincount(extra_bins, weights=extra["tokens"], minlength=len(hist)).astype(np.int64)
    total = int(hist.sum())
    if total == 0:
        raise EmptyInputError(f"no chunk of {scan.path!r} has a perplexity inside the window [{lo}, {hi}] "
                              f"(ppl ranges over [{summ['ppl_min']}, {summ['ppl_max']}])")
    if budget > total:
        where = (f" inside the PPL window [{lo}, {hi}]" if lo > summ["ppl_min"] or hi < summ["ppl_max"]
                 else " in the corpus")
        raise BudgetError(f"token_budget = {budget} exceeds the {total} tokens available{where} of {scan.path!r}")
    plan["lo"], plan["hi"] = (lo, lo), (hi, hi)
    cum = np.cumsum(hist)
    b_star = int(np.searchsorted(cum, budget, side="left"))
    before = int(cum[b_star] - hist[b_star])
    inside = plan["cand_bins"][0] <= b_star <= plan["cand_bins"][1]
    if inside:
        pool = {k: v[_bins_of(cand, plan) == b_star] for k, v in cand.items()}
        pool = passes.concat_records([pool, {k: v[extra_bins == b_star] for k, v in extra.items()}])
    else:  # the cut fell outside the predicted range: one more pass collects its bin (with the exact
        # bounds now in the plan, the edge chunks inside the window are members there: not added again)
        pool = passes.concat_records(list(map_shards(
            passes.collect_bin, [(*a, b_star) for a in args], executor=executor, desc=f"{what}: pass 2b",
            progress=progress, rows=scan.counts)))
    order = np.lexsort((pool["key"], pool["v"]))
    run = before + np.cumsum(pool["tokens"][order])
    at = int(np.searchsorted(run, budget, side="left"))
    plan["cut"] = (pool["v"][order][at], int(pool["key"][order][at]))
    method = "exact" if tilt is None else "tilted"
    if not inside:
        return _write_selection(scan, {"plan": plan}, out, executor, progress, request, method, check, keep_rows)
    # the selection = the spilled members below the candidate range + the candidates up to the cut
    picks = passes.concat_records([cand, extra])
    cv, ck = plan["cut"]
    if plan["order"] == "key":
        keep = picks["key"] <= np.uint64(ck)
    else:
        keep = (picks["v"] < cv) | ((picks["v"] == cv) & (picks["key"] <= np.uint64(ck)))
    picks = {k: v[keep] for k, v in picks.items()}
    del cand, edge, pool, extra
    return _write_selection(scan, {"results": _assembled(scan, spill, picks)}, out, executor, progress, request,
                            method, check, keep_rows)


def _assembled(scan: Scan, spill: Path, picks: dict) -> Any:
    """Per shard, in order: its spilled rows and its picked candidates, sorted by row (as the last pass
    would return them)."""
    starts = np.asarray(scan.starts, dtype=np.uint64)
    shard_of = np.searchsorted(starts, picks["row"], side="right") - 1
    has_id = scan.columns.chunk_id is not None
    for k in range(len(scan.files)):
        with np.load(spill / f"{k}.npz") as z:
            part = {n: z[n] for n in ("row", "file_row", "chunk_id", "ppl", "tokens")}
        mine = shard_of == k
        extra = {"row": picks["row"][mine], "file_row": picks["row"][mine] - starts[k],
                 "chunk_id": picks["id"][mine] if has_id else np.zeros(0, np.uint64),
                 "ppl": picks["ppl"][mine], "tokens": picks["tokens"][mine]}
        merged = {n: [part[n], extra[n].astype(part[n].dtype, copy=False)] for n in part}
        res = passes.finish(merged)
        order = np.argsort(res["row"], kind="stable")
        for n in ("row", "file_row", "ppl", "tokens"):
            res[n] = res[n][order]
        if has_id:
            res["chunk_id"] = res["chunk_id"][order]
        yield res


def _candidate_bins(plan: dict, frac: float | None, per_bin: float) -> tuple[int, int]:
    """The order-value bins whose members pass 2 keeps: around the predicted cut, the key at the budget's
    share ``frac`` of the window's tokens (uniform draw) or priority 0 (the tilt makes the expected tokens
    below priority 0 the budget); at most about CAND_MAX chunks (``per_bin``: the expected chunks per bin),
    so memory stays flat at any corpus size. A cut outside costs one more pass, never a wrong result."""
    cap = max(2.0, CAND_MAX / max(2 * per_bin, 1.0))
    if plan["order"] == "key":
        b = min(frac, 1.0) * passes.n_bins(plan)
        r = max(2.0, min(max(6.0, CAND_SPAN_KEY * b), cap))
        return int(b - r), int(b + r)
    mid_bin = passes.PRIO_BINS // 2
    r = int(max(2.0, min(math.ceil(CAND_SPAN_PRIO * passes.PRIO_BINS / (2 * passes.PRIO_RANGE)), cap)))
    return mid_bin - r, mid_bin + r


def _bins_of(rec: dict, plan: dict) -> np.ndarray:
    if plan["order"] == "key":
        return (rec["key"] >> np.uint64(passes.KEY_BINS_SHIFT)).astype(np.int64)
    v = rec["v"]
    b = np.floor((np.clip(v, -passes.PRIO_RANGE, passes.PRIO_RANGE) + passes.PRIO_RANGE)
                 * (passes.PRIO_BINS / (2 * passes.PRIO_RANGE)))
    return np.minimum(b.astype(np.int64), passes.PRIO_BINS - 1)


def _quantile_interval(scan: Scan, t: int) -> tuple[float, float]:
    """A PPL interval holding the exact token quantile reaching ``t`` tokens: the grid cell where the
    cumulative tokens reach ``t`` (widened by 1e-9 for the rounding of a chunk's cell)."""
    cells = pa.Table.from_batches([scan.grid.cells()])
    cum = np.cumsum(cells.column("tokens").to_numpy().astype(np.int64))
    k = min(int(np.searchsorted(cum, max(t, 1), side="left")), len(cum) - 1)
    summ = scan.summary
    with np.errstate(over="ignore"):
        a = math.exp(cells.column("log_ppl_lo")[k].as_py()) * (1 - 1e-9)
        z = math.exp(min(cells.column("log_ppl_hi")[k].as_py(), 700.0)) * (1 + 1e-9)
    if t == 0 or summ["ppl_min"] == summ["ppl_max"]:
        a = z = summ["ppl_min"]
    return max(a, 0.0), z


def _resolve_quantile(summ: dict, t: int, iv: tuple, below: int, edge: dict) -> float:
    """The smallest PPL ``x`` with ``tokens(ppl <= x) >= t`` (``rust/src/select.rs`` token_quantiles)."""
    if t == 0 or summ["ppl_min"] == summ["ppl_max"]:
        return float(summ["ppl_min"])
    inside = (edge["ppl"] >= iv[0]) & (edge["ppl"] <= iv[1])
    x, w = edge["ppl"][inside], edge["tokens"][inside]
    order = np.argsort(x, kind="stable")
    run = below + np.cumsum(w[order])
    if below >= t or not len(run) or run[-1] < t:
        raise InvalidInputError(f"internal: the quantile at {t} tokens is not inside the grid cell "
                                f"[{iv[0]}, {iv[1]}] (tokens below {below}); the shards changed between passes?")
    return float(x[order][int(np.searchsorted(run, t, side="left"))])


def _mean_range(x: np.ndarray, w: np.ndarray, budget: int) -> tuple[float, float]:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    k = int(np.searchsorted(cw, budget)) + 1
    lo = float(np.sum((w * x)[order][:k]) / cw[k - 1])
    r = order[::-1]
    cw2 = np.cumsum(w[r])
    k2 = int(np.searchsorted(cw2, budget)) + 1
    return lo, float(np.sum((w * x)[r][:k2]) / cw2[k2 - 1])
