"""The selection of a directory: written shard by shard as an indices file, with its statistics."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw.exceptions import UnreachableTargetError
from pplaw.stream import passes
from pplaw.stream.run import map_shards
from pplaw.stream.scan import Scan

S_MEAN_TOL, S_STD_TOL = 0.01, 0.02  # the core's promise for realisable targets (rust/src/sample.rs)


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
