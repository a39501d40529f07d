"""Pass 1 over a directory of scored shards: the merged fine grid, the shards' row counts, the checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw.exceptions import EmptyInputError, InvalidInputError
from pplaw.landscape import DEFAULT_GRID, Landscape, _check_grid_spec
from pplaw.stream import passes
from pplaw.stream.run import check_executor, map_shards
from pplaw.stream.shards import Columns, has_column, list_shards


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
