"""Landscape, sampling and DOS over a directory of scored shards, shard by shard, in bounded memory.

    from pplaw.stream import scan_dir, sample_dir, dos_dir
    scan = scan_dir("run/chunks")                        # pass 1: the merged fine grid
    land = scan.landscape(100)                           # a merged Landscape (grid resolution)
    band = sample_dir(scan, token_budget=10**9, quantile_window=(0.35, 0.7), out="band.parquet")
    dos = dos_dir(scan, token_budget=10**9, target_mean=12.0, target_std=4.0, out="dos.parquet")

Passes (each reads only ``ppl``, ``n_scored`` and ``chunk_id``, one Parquet row group at a time):

1. **Landscape**: each shard's fine grid (``pplaw._core.build_grid``), merged exactly (``GridCore.merge``).
   Quantile edges at grid resolution (relative PPL error <= 5e-4), totals and mean/std exact.
2. **Cut**: every chunk's order value - its key ``chunk_key(seed, chunk_id)`` (uniform draw) or the
   Pareto priority of the tilted draw (targets, DOS) -, a token histogram of those values and the chunks
   near the predicted cut; the chunks within one grid cell of a quantile window edge, which give the
   exact edge. After the pass: the exact cut (order value, key) where the tokens reach the budget.
3. **Selection**: the chunks up to the cut, written shard by shard (an indices file, as ``pplaw sample``).
   Pass 2 already sets aside the members below the candidate range (selected whenever the cut falls
   inside it, the usual case; a temporary file per shard, read back once), so the selection is then
   assembled from them and the candidates without reading the shards again; otherwise (a cut outside the
   predicted range) one more pass collects the cut's bin and a last pass selects.

What is exact. A uniform draw, in a quantile band or a PPL window, selects the same rows as
:func:`pplaw.sample_subset` in memory, at any size. Target sampling and DOS run the in-memory core on the
three columns up to ``exact_limit`` chunks (5 million: same rows). Beyond, they need the core's global
steps (the tilt fit on every chunk, its local search), so streaming fits the tilt on the grid and draws
the order sample with an exact global cut: the budget rule holds exactly, a target sample's mean is within
1% and its std within 2% (checked, as the core promises; the core's refinement to a fifth of that is not
run), and DOS reaches ``J`` at the sampling-noise level of its interior candidate.

Memory: one row group of one shard, the grid (14,000 cells), a token histogram (2^16 or 2^17 bins) and the
candidates near the cut (about 2% of the chunks for a uniform draw at the cut's key, less for a tilted
one), plus the selected row numbers (8 bytes per selected chunk). ``executor="ray"`` runs each shard's
work as a Ray task (same results).
"""

from pplaw.stream.api import EXACT_LIMIT, dos_dir, drawer, sample_dir
from pplaw.stream.scan import Scan, landscape_from_dir, scan_dir
from pplaw.stream.write import Selection
from pplaw.stream.shards import chunk_keys

__all__ = ["EXACT_LIMIT", "Scan", "Selection", "chunk_keys", "dos_dir", "drawer", "landscape_from_dir", "sample_dir",
           "scan_dir"]
