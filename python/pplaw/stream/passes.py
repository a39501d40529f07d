"""The per-shard work of the streaming passes: pure functions of (shard, plan) -> small results.

They are what a local loop, a Ray task or a Slurm array task runs on one shard, so all three give the same
results: nothing here depends on which process runs which shard, only on the shard's rows and the plan.

- :func:`scan` (pass 1): the shard's fine grid (``pplaw._core.build_grid``) and its totals.
- :func:`classify` (pass 2): for a cut plan, the token histogram of the members' order values, the
  members whose order value lies in the plan's candidate range, the chunks whose membership depends on an
  exact quantile edge (with the tokens below each edge interval).
- :func:`collect_bin` (only when the cut fell outside the candidate range): the members of one bin.
- :func:`select` (last pass): the selected rows of the shard and their moment sums.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw.stream.shards import Columns, Piece, chunk_keys, iter_pieces, unit_open

KEY_BINS_SHIFT = 48  # band order value = key: 2^16 bins on its top bits
PRIO_RANGE = 64.0  # tilt order value = priority, binned on [-64, 64]
PRIO_BINS = 1 << 17


def scan(file: str, cols: Columns, grid_spec: tuple[float, float, int]) -> dict[str, Any]:
    """Pass 1 on one shard: its grid (as JSON, which travels between processes) and totals."""
    from pplaw import _columns

    core = _columns.core()
    log_lo, log_hi, n_cells = grid_spec
    grid, overlap = None, False
    out: dict[str, Any] = {"file": file, "rows": 0, "tokens": 0, "w_min": None, "w_max": 0, "id_min": None,
                           "id_max": None}
    for piece in iter_pieces(Path(file), 0, cols, check=True):
        if not len(piece):
            continue
        g = core.build_grid(pa.array(piece.ppl), pa.array(piece.tokens), log_lo=log_lo, log_hi=log_hi,
                            n_cells=n_cells)
        grid = g if grid is None else grid.merge(g)
        out["rows"] += len(piece)
        out["tokens"] += int(piece.tokens.sum())
        w_min, w_max = int(piece.tokens.min()), int(piece.tokens.max())
        out["w_min"] = w_min if out["w_min"] is None else min(out["w_min"], w_min)
        out["w_max"] = max(out["w_max"], w_max)
        if piece.chunk_id is not None:
            lo, hi = int(piece.chunk_id.min()), int(piece.chunk_id.max())
            # pieces are unique each (checked); overlapping pieces of one shard get the whole-shard check
            if out["id_max"] is not None and lo <= out["id_max"]:
                overlap = True
            out["id_min"] = lo if out["id_min"] is None else min(out["id_min"], lo)
            out["id_max"] = hi if out["id_max"] is None else max(out["id_max"], hi)
    if overlap:
        from pplaw._columns import check_unique_values

        check_unique_values(pa.array(shard_ids(file, cols)), f"scored shard {file!r}: column {cols.chunk_id!r}")
    out["grid"] = grid.to_json() if grid is not None else None
    return out


def shard_ids(file: str, cols: Columns) -> np.ndarray:
    """Every chunk id of a shard (only for shards whose id ranges overlap another's: the duplicate check)."""
    return np.concatenate([p.chunk_id for p in iter_pieces(Path(file), 0, cols)] or [np.zeros(0, np.uint64)])


# ----------------------------------------------------------------------------------------------------------
# order values and membership


def order_value(piece: Piece, x: np.ndarray, keys: np.ndarray, plan: dict) -> tuple[np.ndarray, np.ndarray]:
    """(order value, bin) of each chunk: the key itself (uniform draw), or the Pareto priority
    ``logit(u) - eta(x)`` of the tilted draw (``rust/src/sample.rs``), ties broken by key."""
    if plan["order"] == "key":
        return keys, (keys >> np.uint64(KEY_BINS_SHIFT)).astype(np.int64)
    lam, center, scale = plan["lam"], plan["center"], plan["scale"]
    u = unit_open(keys)
    z = (x - center) / scale
    prio = np.log(u / (1.0 - u)) - (lam[0] + lam[1] * z + lam[2] * z * z)
    b = np.floor((np.clip(prio, -PRIO_RANGE, PRIO_RANGE) + PRIO_RANGE) * (PRIO_BINS / (2 * PRIO_RANGE)))
    return prio, np.minimum(b.astype(np.int64), PRIO_BINS - 1)


def n_bins(plan: dict) -> int:
    return 1 << (64 - KEY_BINS_SHIFT) if plan["order"] == "key" else PRIO_BINS


def _x(piece: Piece, plan: dict) -> np.ndarray:
    return np.log(piece.ppl) if plan["space"] == "log_ppl" else piece.ppl


def membership(ppl: np.ndarray, plan: dict) -> tuple[np.ndarray, np.ndarray]:
    """(decided members, undecided chunks): the window's bounds are known up to the intervals
    ``plan["lo"] = (La, Lb)`` and ``plan["hi"] = (Ua, Ub)`` (equal ends: known exactly)."""
    (la, lb), (ua, ub) = plan["lo"], plan["hi"]
    und = np.zeros(len(ppl), dtype=bool)
    if la < lb:
        und |= (ppl >= la) & (ppl <= lb)
    if ua < ub:
        und |= (ppl >= ua) & (ppl <= ub)
    in_lo = (ppl >= lb) if la == lb else (ppl > lb)
    in_hi = (ppl <= ua) if ua == ub else (ppl < ua)
    return in_lo & in_hi & ~und, und


def _records(piece: Piece, mask: np.ndarray, x: np.ndarray, v: np.ndarray, keys: np.ndarray) -> dict:
    idx = np.flatnonzero(mask)
    return {"row": (piece.start + idx).astype(np.uint64), "ppl": piece.ppl[idx], "x": x[idx],
            "tokens": piece.tokens[idx], "v": v[idx], "key": keys[idx], "id": piece.ids()[idx]}


def concat_records(parts: list[dict]) -> dict:
    names = ("row", "ppl", "x", "tokens", "v", "key", "id")
    if not parts:
        return {"row": np.zeros(0, np.uint64), "ppl": np.zeros(0), "x": np.zeros(0),
                "tokens": np.zeros(0, np.int64), "v": np.zeros(0), "key": np.zeros(0, np.uint64),
                "id": np.zeros(0, np.uint64)}
    return {n: np.concatenate([p[n] for p in parts]) for n in names}


def _rows_of(piece: Piece, idx: np.ndarray, out: dict[str, list]) -> None:
    """Append the rows ``idx`` of a piece to a selection being collected (see :func:`finish`)."""
    out["row"].append((piece.start + idx).astype(np.uint64))
    out["file_row"].append((piece.file_start + idx).astype(np.uint64))
    out["chunk_id"].append(piece.chunk_id[idx] if piece.chunk_id is not None else np.zeros(0, np.uint64))
    out["ppl"].append(piece.ppl[idx])
    out["tokens"].append(piece.tokens[idx])


def _empty_rows() -> dict[str, list]:
    return {"row": [], "file_row": [], "chunk_id": [], "ppl": [], "tokens": []}


def finish(out: dict[str, list]) -> dict[str, Any]:
    """A shard's selected rows (lists of arrays) as arrays, with their token-weighted and unweighted moment
    sums in both spaces (the selection's statistics add up over shards)."""
    dtypes = {"row": np.uint64, "file_row": np.uint64, "chunk_id": np.uint64, "ppl": np.float64,
              "tokens": np.int64}
    res: dict[str, Any] = {k: (np.concatenate(v) if v else np.zeros(0, dtypes[k])) for k, v in out.items()}
    w = res["tokens"].astype(np.float64)
    lx = np.log(res["ppl"]) if len(res["ppl"]) else np.zeros(0)
    res["sums"] = {"count": int(len(w)), "tokens": int(res["tokens"].sum()) if len(w) else 0,
                   "w_min": int(res["tokens"].min()) if len(w) else None,
                   "w_max": int(res["tokens"].max()) if len(w) else None,
                   "ppl": (float(w @ res["ppl"]), float(w @ res["ppl"] ** 2), float(res["ppl"].sum()),
                           float(res["ppl"] @ res["ppl"])),
                   "log_ppl": (float(w @ lx), float(w @ lx ** 2), float(lx.sum()), float(lx @ lx))}
    return res


def classify(file: str, start: int, cols: Columns, plan: dict) -> dict[str, Any]:
    """Pass 2 on one shard (see the module doc)."""
    hist = np.zeros(n_bins(plan), dtype=np.int64)
    cand, edge, sure = [], [], _empty_rows()
    below = [0 for _ in plan["edge_intervals"]]
    c_lo, c_hi = plan["cand_bins"]
    for piece in iter_pieces(Path(file), start, cols):
        if not len(piece):
            continue
        keys = chunk_keys(piece.ids(), plan["seed"])
        x = _x(piece, plan)
        v, b = order_value(piece, x, keys, plan)
        member, und = membership(piece.ppl, plan)
        # integer token sums: float64 bincount is exact below 2^53 tokens per bin
        hist += np.bincount(b[member], weights=piece.tokens[member], minlength=len(hist)).astype(np.int64)
        cand.append(_records(piece, member & (b >= c_lo) & (b <= c_hi), x, v, keys))
        # the members below the candidate range: selected whenever the cut falls inside it (the usual
        # case), so the last pass is not needed then
        _rows_of(piece, np.flatnonzero(member & (b < c_lo)), sure)
        in_edge = np.zeros(len(piece), dtype=bool)
        for k, (a, z) in enumerate(plan["edge_intervals"]):
            below[k] += int(piece.tokens[piece.ppl < a].sum())
            in_edge |= (piece.ppl >= a) & (piece.ppl <= z)
        if in_edge.any() or und.any():
            edge.append(_records(piece, in_edge | und, x, v, keys))
    return {"hist": hist, "cand": concat_records(cand), "edge": concat_records(edge), "below": below,
            "sure": finish(sure)}


def collect_bin(file: str, start: int, cols: Columns, plan: dict, bin_no: int) -> dict:
    """The decided members of one order-value bin (the rare extra pass)."""
    parts = []
    for piece in iter_pieces(Path(file), start, cols):
        keys = chunk_keys(piece.ids(), plan["seed"])
        x = _x(piece, plan)
        v, b = order_value(piece, x, keys, plan)
        member, _ = membership(piece.ppl, plan)
        parts.append(_records(piece, member & (b == bin_no), x, v, keys))
    return concat_records(parts)


def select(file: str, start: int, cols: Columns, plan: dict, rows: np.ndarray | None = None) -> dict[str, Any]:
    """Last pass on one shard: the selected rows (``row``, ``file_row``, chunk id, ppl, tokens) and their
    token-weighted and unweighted moment sums in both spaces. ``plan["cut"] = (v, key)`` selects the members
    up to that order value; ``rows`` (sorted global rows) selects those rows instead."""
    out = _empty_rows()
    for piece in iter_pieces(Path(file), start, cols):
        if not len(piece):
            continue
        if rows is not None:
            r = np.arange(piece.start, piece.start + len(piece), dtype=np.uint64)
            pos = np.searchsorted(rows, r)
            mask = (pos < len(rows)) & (rows[np.minimum(pos, len(rows) - 1)] == r)
        else:
            member, und = membership(piece.ppl, plan)
            if und.any():  # resolved bounds: plan["lo"]/["hi"] are exact in the last pass
                raise AssertionError("select: the window bounds must be resolved before the last pass")
            keys = chunk_keys(piece.ids(), plan["seed"])
            v, _ = order_value(piece, _x(piece, plan), keys, plan)
            cv, ck = plan["cut"]
            if plan["order"] == "key":  # keys are unique (ids are): the cut is one key
                mask = member & (keys <= np.uint64(ck))
            else:
                mask = member & ((v < cv) | ((v == cv) & (keys <= np.uint64(ck))))
        _rows_of(piece, np.flatnonzero(mask), out)
    return finish(out)
