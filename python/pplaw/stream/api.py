"""Landscape, sampling and DOS over a directory of scored shards in bounded memory (see :mod:`pplaw.stream`)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw import sampling as S
from pplaw.exceptions import BudgetError, EmptyInputError, InvalidInputError, UnreachableTargetError
from pplaw.landscape import DEFAULT_GRID, Landscape, _check_grid_spec, _grid_cells
from pplaw.stream import passes
from pplaw.stream.run import check_executor, map_shards
from pplaw.stream.shards import Columns, has_column, list_shards
from pplaw.stream.tilt import fit_tilt

# Target sampling / DOS run the in-memory core (identical to pplaw.sample_subset / select_dos) up to this
# many chunks: about 90 bytes a chunk at its peak, so 0.5 GB; beyond it, the streaming tilted draw.
EXACT_LIMIT = 5_000_000
CAND_SPAN_KEY = 0.005  # candidate range around the predicted key cut: +-0.5% of the cut (and >= 6 bins)
CAND_SPAN_PRIO = 0.02  # ... around the predicted priority cut 0: +-0.02
CAND_MAX = 2_000_000  # ... and never more than about this many chunks (48 bytes each)


@dataclass
class Scan:
    """Pass 1 over a directory: the shards, their row counts and the merged fine grid."""

    path: str
    files: list[Path]
    counts: list[int]
    columns: Columns
    grid: Any  # pplaw._core.GridCore
    w_max: int
    w_min: int

    @property
    def starts(self) -> list[int]:
        return [int(s) for s in np.concatenate([[0], np.cumsum(self.counts)[:-1]])] if self.counts else []

    @property
    def n_rows(self) -> int:
        return int(sum(self.counts))

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.grid.summary())

    def landscape(self, n_bins: int = 100) -> Landscape:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise InvalidInputError(f"n_bins: expected a positive integer, got {n_bins!r}")
        return Landscape(grid=self.grid, n_bins=n_bins,
                         columns={"ppl": self.columns.ppl, "tokens": self.columns.tokens})


def scan_dir(path: str | os.PathLike, *, ppl_column: str = "ppl", tokens_column: str = "n_scored",
             chunk_id_column: str | None = "chunk_id", grid: dict | None = None, executor: str = "local",
             progress: bool | None = None) -> Scan:
    """Pass 1: every shard's grid (``pplaw._core.build_grid``), merged; the shards' row counts; the value
    checks of :func:`pplaw.io.read_scored` shard by shard; chunk ids unique across shards."""
    check_executor(executor)
    files = list_shards(path)
    cid = chunk_id_column if chunk_id_column and all(has_column(f, chunk_id_column) for f in files) else None
    cols = Columns(ppl_column, tokens_column, cid)
    spec = _check_grid_spec(grid if grid is not None else DEFAULT_GRID)
    results = list(map_shards(passes.scan, [(str(f), cols, spec) for f in files], executor=executor,
                              desc=f"landscape: {len(files)} shard(s)", progress=progress,
                              sizes=[f.stat().st_size for f in files]))
    grids = [r["grid"] for r in results if r["grid"] is not None]
    if not grids:
        raise EmptyInputError(f"input {str(path)!r} has no rows")
    from pplaw import _columns

    core = _columns.core()
    merged = core.GridCore.from_json(grids[0])
    for g in grids[1:]:
        merged = merged.merge(core.GridCore.from_json(g))
    if cid:
        _check_ids_across(results, cols, str(path), executor)
    w_min = min(r["w_min"] for r in results if r["w_min"] is not None)
    return Scan(str(path), files, [r["rows"] for r in results], cols, merged,
                max(r["w_max"] for r in results), w_min)


def _check_ids_across(results: list[dict], cols: Columns, path: str, executor: str) -> None:
    """Shards whose id ranges are disjoint cannot share an id; only overlapping ones are read and checked
    (a copied shard overlaps its original entirely)."""
    spans = sorted((r["id_min"], r["id_max"], k) for k, r in enumerate(results) if r["id_min"] is not None)
    groups, cur, hi = [], [], -1
    for lo, top, k in spans:
        if cur and lo > hi:
            groups.append(cur)
            cur = []
        cur.append(k)
        hi = max(hi, top)
    groups.append(cur)
    from pplaw._columns import check_unique_values

    for g in (g for g in groups if len(g) > 1):
        ids = np.concatenate(list(map_shards(passes.shard_ids, [(results[k]["file"], cols) for k in g],
                                             executor=executor, progress=False)))
        names = ", ".join(repr(results[k]["file"]) for k in g[:3])
        check_unique_values(pa.array(ids), f"scored chunks {path!r} (shards {names}...): column {cols.chunk_id!r}")


def landscape_from_dir(path: str | os.PathLike, *, n_bins: int = 100, ppl_column: str = "ppl",
                       tokens_column: str = "n_scored", grid: dict | None = None, executor: str = "local",
                       progress: bool | None = None) -> Landscape:
    """The landscape of a scored directory in one pass (grid resolution: see :meth:`Landscape.merge`)."""
    return scan_dir(path, ppl_column=ppl_column, tokens_column=tokens_column, grid=grid, executor=executor,
                    progress=progress).landscape(n_bins)


# ----------------------------------------------------------------------------------------------------------
# the selection


@dataclass
class Selection:
    """A subset of a scored directory: sorted global ``rows`` (numbered as :func:`pplaw.io.read_scored`
    numbers them; empty when ``keep_rows`` was off, the default with ``out``), achieved statistics per
    space and how it was computed (``method``: ``"exact"``, equal
    to the in-memory API, or ``"tilted"``, the streaming order sample whose moments are within the
    documented tolerances)."""

    rows: np.ndarray
    stats: dict[str, dict[str, float]]
    method: str
    files: list[Path]
    counts: list[int]
    out: Path | None = None
    request: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)


def sample_dir(path: str | os.PathLike | Scan, *, token_budget: int, target_mean: float | None = None,
               target_std: float | None = None, space: str = "ppl", ppl_window: Any = None,
               quantile_window: Any = None, seed: int = 0, ppl_column: str = "ppl",
               tokens_column: str = "n_scored", chunk_id_column: str | None = "chunk_id",
               out: str | os.PathLike | None = None, executor: str = "local", exact_limit: int = EXACT_LIMIT,
               progress: bool | None = None, keep_rows: bool | None = None) -> Selection:
    """:func:`pplaw.sample_subset` over a scored directory, shard by shard.

    Without targets (a uniform draw, in a ``quantile_window`` band or a ``ppl_window``) the subset is the
    in-memory one exactly (same rows), at any size. With targets: on up to ``exact_limit`` chunks the
    in-memory core runs on the three needed columns (same rows); beyond, the tilted order sample of the
    core is drawn shard by shard with the tilt fitted on the landscape's grid and a global cut (budget rule
    exact: ``B <= tokens < B + w_max``); its mean is checked within 1% and its std within 2% of the
    targets (UnreachableTargetError otherwise), the core's final local search is not run."""
    space = S._check_space(space)
    budget = S._check_budget(token_budget)
    mean, std = S._check_targets(target_mean, target_std, space, required=False)
    pwin = S._check_window(ppl_window, "ppl_window", lo_min=0.0, hi_max=math.inf)
    qwin = S._check_window(quantile_window, "quantile_window", lo_min=0.0, hi_max=1.0)
    seed = S._check_seed(seed)
    scan = _scan_of(path, ppl_column, tokens_column, chunk_id_column, executor, progress)
    kr = out is None if keep_rows is None else bool(keep_rows)
    request = dict(token_budget=budget, target_mean=mean, target_std=std, space=space, ppl_window=pwin,
                   quantile_window=qwin, seed=seed)
    if mean is None and std is None:
        return _cut_select(scan, budget, space, pwin, qwin, seed, None, out, executor, progress, request,
                           keep_rows=kr)
    if scan.n_rows <= exact_limit:
        def run(table: pa.Table) -> np.ndarray:
            return S.sample_subset(table, ppl_window=pwin, quantile_window=qwin, return_indices=True,
                                   **_in_memory_args(scan, request))
        return _exact_select(scan, run, out, executor, progress, request, kr)
    tilt = dict(mean=mean, std=std)
    sel = _cut_select(scan, budget, space, pwin, qwin, seed, tilt, out, executor, progress, request,
                      check=(mean, std), keep_rows=kr)
    return sel


def dos_dir(path: str | os.PathLike | Scan, *, token_budget: int, target_mean: float, target_std: float,
            space: str = "ppl", weights: Any = None, seed: int = 0, ppl_column: str = "ppl",
            tokens_column: str = "n_scored", chunk_id_column: str | None = "chunk_id",
            out: str | os.PathLike | None = None, executor: str = "local", exact_limit: int = EXACT_LIMIT,
            progress: bool | None = None, keep_rows: bool | None = None) -> Selection:
    """:func:`pplaw.select_dos` over a scored directory. Up to ``exact_limit`` chunks: the in-memory core
    (same rows). Beyond: DOS's interior candidate, the tilted order sample to ``(mu*, sigma*)`` (drawn as
    in :func:`sample_dir`), without the core's local search, so ``J`` is at the sampling-noise level
    ``O(1/chunks)`` instead of ~0; a target outside the realisable region raises UnreachableTargetError
    there (the core would return the closest boundary subset)."""
    space = S._check_space(space)
    budget = S._check_budget(token_budget)
    mean, std = S._check_targets(target_mean, target_std, space, required=True)
    w_mu, w_s = S._check_weights(weights)
    if std == 0 and w_s is None:
        raise InvalidInputError("target_std is 0: the default weight of the std term (1/target_std^4) is "
                                "undefined; give both weights: weights=(w_mu, w_sigma)")
    seed = S._check_seed(seed)
    scan = _scan_of(path, ppl_column, tokens_column, chunk_id_column, executor, progress)
    kr = out is None if keep_rows is None else bool(keep_rows)
    request = dict(token_budget=budget, target_mean=mean, target_std=std, space=space, seed=seed)
    if scan.n_rows <= exact_limit:
        def run(table: pa.Table) -> np.ndarray:
            return S.select_dos(table, weights=(w_mu, w_s) if w_mu is not None or w_s is not None else None,
                                return_indices=True, **_in_memory_args(scan, request))
        return _exact_select(scan, run, out, executor, progress, {**request, "weights": (w_mu, w_s)}, kr)
    if std == 0:
        raise InvalidInputError(f"target_std = 0: streaming DOS (over {scan.n_rows:,} chunks, more than "
                                f"exact_limit = {exact_limit:,}) needs a spread to tilt to; raise exact_limit")
    return _cut_select(scan, budget, space, None, None, seed, dict(mean=mean, std=std), out, executor,
                       progress, {**request, "weights": (w_mu, w_s)}, check=None, what="DOS", keep_rows=kr)


def _scan_of(path: Any, ppl_column: str, tokens_column: str, chunk_id_column: str | None, executor: str,
             progress: bool | None) -> Scan:
    if isinstance(path, Scan):
        return path
    return scan_dir(path, ppl_column=ppl_column, tokens_column=tokens_column, chunk_id_column=chunk_id_column,
                    executor=executor, progress=progress)


def _in_memory_args(scan: Scan, request: dict) -> dict:
    c = scan.columns
    return dict(token_budget=request["token_budget"], target_mean=request["target_mean"],
                target_std=request["target_std"], space=request["space"], seed=request["seed"],
                ppl_column=c.ppl, tokens_column=c.tokens, chunk_id_column=c.chunk_id)


def _exact_select(scan: Scan, run: Any, out: Any, executor: str, progress: bool | None,
                  request: dict, keep_rows: bool = True) -> Selection:
    """The in-memory core on the three needed columns of every shard (read piece by piece)."""
    from pplaw.stream.shards import iter_pieces

    c = scan.columns
    parts: dict[str, list] = {c.ppl: [], c.tokens: [], **({c.chunk_id: []} if c.chunk_id else {})}
    for f, start in zip(scan.files, scan.starts):
        for p in iter_pieces(f, start, c):
            parts[c.ppl].append(p.ppl)
            parts[c.tokens].append(p.tokens)
            if c.chunk_id:
                parts[c.chunk_id].append(p.chunk_id)
    table = pa.table({k: np.concatenate(v) for k, v in parts.items()})
    rows = np.asarray(run(table), dtype=np.uint64)
    del table, parts
    return _write_selection(scan, {"rows": rows}, out, executor, progress, request, "exact", None, keep_rows)


# ----------------------------------------------------------------------------------------------------------
# the cut: pass 2 (histogram + candidates), resolution, the last pass


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
            raise BudgetError(f"token_budget = {budget} is not below the {int(w.sum())} tokens the targets can "
                              f"be drawn from")
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


# ----------------------------------------------------------------------------------------------------------
# the last pass: the selected rows, written shard by shard


def _stats(sums: list[dict]) -> dict[str, dict[str, float]]:
    n = sum(s["count"] for s in sums)
    tok = sum(s["tokens"] for s in sums)
    mins = [s["w_min"] for s in sums if s["w_min"] is not None]
    maxs = [s["w_max"] for s in sums if s["w_max"] is not None]
    weighted = bool(mins) and min(mins) != max(maxs)
    out = {}
    for space in ("ppl", "log_ppl"):
        if weighted:
            s1, s2, d = sum(s[space][0] for s in sums), sum(s[space][1] for s in sums), float(tok)
        else:
            s1, s2, d = sum(s[space][2] for s in sums), sum(s[space][3] for s in sums), float(n)
        m = s1 / d if d else math.nan
        out[space] = {"count": n, "tokens": tok, "mean": m,
                      "std": math.sqrt(max(s2 / d - m * m, 0.0)) if d else math.nan, "weighted": weighted}
    return out


def _write_selection(scan: Scan, how: dict, out: Any, executor: str, progress: bool | None, request: dict,
                     method: str, check: Any, keep_rows: bool = True) -> Selection:
    import pyarrow.parquet as pq

    c = scan.columns
    plan, rows = how.get("plan"), how.get("rows")
    args = []
    for f, s, n in zip(scan.files, scan.starts, scan.counts):
        sub = None if rows is None else rows[(rows >= s) & (rows < s + n)]
        args.append((str(f), s, c, plan or {}, sub))
    names = pa.array([str(f) for f in scan.files])
    writer, tmp, got_rows, sums = None, None, [], []
    path = Path(out) if out is not None else None
    try:
        source = how["results"] if "results" in how else map_shards(
            passes.select, args, executor=executor, desc="selection: last pass", progress=progress,
            rows=scan.counts)
        for k, res in enumerate(source):
            sums.append(res["sums"])
            if keep_rows:  # 8 bytes per selected chunk; off by default when the subset goes to a file
                got_rows.append(res["row"].astype(np.uint64))
            if path is None:
                continue
            cols = {"row": pa.array(res["row"].astype(np.uint64))}
            if c.chunk_id:
                cols[c.chunk_id] = pa.array(res["chunk_id"].astype(np.int64))
            if len(scan.files) > 1:
                cols["file"] = pa.DictionaryArray.from_arrays(pa.array(np.full(len(res["row"]), k, np.int32)), names)
                cols["file_row"] = pa.array(res["file_row"].astype(np.uint64))
            cols[c.ppl] = pa.array(res["ppl"].astype(np.float64))
            cols[c.tokens] = pa.array(res["tokens"].astype(np.int64))
            batch = pa.table(cols)
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                # dictionary encoding only where it pays (the file names): ~2.4x faster writes
                writer = pq.ParquetWriter(tmp, batch.schema, use_dictionary=["file"] if "file" in cols else False)
            writer.write_table(batch)
        stats = _stats(sums)
        if check is not None:
            _check_tolerance(stats[request["space"]], *check, request, scan.path)
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    sel_rows = np.concatenate(got_rows) if got_rows else np.zeros(0, np.uint64)
    return Selection(sel_rows, stats, method, scan.files, scan.counts, path, request)


def _check_tolerance(st: dict, mean: float | None, std: float | None, request: dict, path: str) -> None:
    ok_m = mean is None or abs(st["mean"] - mean) <= S_MEAN_TOL * abs(mean)
    ok_s = std is None or abs(st["std"] - std) <= S_STD_TOL * std
    if not (ok_m and ok_s):
        raise UnreachableTargetError(
            f"streaming sample of {path!r} to target (mean={mean}, std={std}) in {request['space']} at "
            f"token_budget = {request['token_budget']}: the tilted draw reached mean={st['mean']:.6g}, "
            f"std={st['std']:.6g}, outside 1%/2% (the target is near the edge of what the corpus can realise)",
            {"achieved": {"mean": st["mean"], "std": st["std"]}})


S_MEAN_TOL, S_STD_TOL = 0.01, 0.02  # the core's promise for realisable targets (rust/src/sample.rs)


def drawer(table: Any, scored_dir: Any = None, executor: str = "memory") -> tuple[Any, Any]:
    """``(sample, dos)``: callables with :func:`pplaw.sample_subset` / :func:`pplaw.select_dos`'s keywords
    returning sorted row indices, drawn from ``table`` in memory (``executor="memory"``) or shard by shard
    from ``scored_dir`` (``"stream"``, or ``"ray"``: the passes as Ray tasks), one pass 1 shared by all draws.
    The pipeline's select stage uses it (``select.executor``)."""
    from pplaw.sampling import sample_subset, select_dos

    if executor not in ("memory", "stream", "ray"):
        raise InvalidInputError(f"select.executor: expected memory, stream or ray, got {executor!r}")
    if executor == "memory" or scored_dir is None:
        return (lambda **kw: sample_subset(table, return_indices=True, **kw),
                lambda **kw: select_dos(table, return_indices=True, **kw))
    ex = "ray" if executor == "ray" else "local"
    scan = scan_dir(scored_dir, executor=ex, progress=False)
    return (lambda **kw: sample_dir(scan, executor=ex, progress=False, **kw).rows,
            lambda **kw: dos_dir(scan, executor=ex, progress=False, **kw).rows)
