"""The perplexity landscape of a scored corpus: token-weighted quantile bins and per-bin statistics.

    land = pplaw.Landscape.from_dataset(scored)             # columns "ppl" and "n_scored"
    land.quantiles        # n_bins + 1 PPL edges (token-weighted quantiles)
    land.bins             # pyarrow Table, one row per bin
    land.mean, land.std   # chunk-PPL mean/std (log_mean/log_std in log-PPL)
    land.bin_index        # each chunk's bin (numpy uint32, logical row order)
    land.plot("landscape.png"); land.save("landscape.json")

Definitions (docs/architecture.md; computed exactly by the Rust core, ``pplaw._core``):

- **Edges.** ``edges[0]`` is the smallest PPL, ``edges[n_bins]`` the largest; for ``0 < k < n_bins``,
  ``edges[k]`` is the smallest PPL ``x`` present in the data such that chunks with ``ppl <= x`` hold at
  least ``k / n_bins`` of all tokens. Edges repeat when one value carries much mass.
- **Bins.** A chunk with PPL ``x`` is in bin ``clip(searchsorted(edges, x, side="right") - 1, 0,
  n_bins - 1)`` (``edges[k] <= x < edges[k+1]``, last bin closed; with repeated edges the bins in between
  stay empty).
- **Statistics.** Per bin and overall: mean and (population) variance of PPL and of ln PPL, unweighted
  over chunks when every chunk has the same token count and token-weighted otherwise (``.weighted``).

Merging shards. Each landscape also holds a fixed fine grid over ln PPL (default: cells of 0.001 nat over
PPL 1 .. 1.2e6, plus an under- and an overflow cell) with integer counts and fixed-point moment sums, so
``a.merge(b)`` is exact, associative and commutative (bit-identical in any order). The merged landscape's
count/token totals and overall mean/std are exact; its quantile edges are grid quantiles: each lies within
one grid cell of the exact edge, a relative PPL error of at most ``exp(h/2) - 1`` for cell width ``h``
(5.0e-4 for the default grid; ``Landscape.grid_resolution`` gives it). Per-bin statistics of a merged
landscape are computed from the cells and carry the same resolution; it has no per-chunk ``bin_index``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw import _columns
from pplaw._atomic import atomic_write, atomic_write_text
from pplaw.exceptions import InvalidInputError, SerializationError

FILE_FORMAT = "pplaw.Landscape"
FILE_VERSION = 1
# The core's default fine grid: ln PPL in [0, 14) (PPL 1 .. 1.2e6) in 14,000 cells of 0.001 nat.
DEFAULT_GRID = {"log_lo": 0.0, "log_hi": 14.0, "n_cells": 14_000}


class Landscape:
    """A perplexity landscape. Build it with :meth:`from_dataset`, :meth:`from_arrow` or :meth:`from_arrays`."""

    def __init__(self, *, core: Any = None, grid: Any = None, n_bins: int | None = None,
                 columns: dict[str, str | None] | None = None):
        # Exactly one of: `core` (an exact LandscapeCore, which owns its grid) or `grid` + `n_bins` (a merged
        # or grid-only landscape: edges and bin statistics come from the grid's cells).
        if (core is None) == (grid is None):
            raise InvalidInputError("Landscape: pass either core= or grid= (use the from_* constructors)")
        self._core = core
        self._grid = core.grid() if core is not None else grid
        self._n_bins = int(core.n_bins if core is not None else n_bins)
        self.columns = dict(columns or {})
        self._bins: pa.Table | None = None
        self._bin_index: np.ndarray | None = None
        self._edges: np.ndarray | None = None
        self._summary = dict(core.summary() if core is not None else grid.summary())

    # ------------------------------------------------------------------------------------------------------
    # constructors

    @classmethod
    def from_dataset(cls, ds: Any, ppl_column: str = "ppl", tokens_column: str = "n_scored", n_bins: int = 100,
                     *, grid: dict | None = None, chunk_id_column: str | None = "chunk_id") -> "Landscape":
        """From a ``datasets.Dataset`` (its select/shuffle/filter indices mapping is honoured without
        materialising it) or any table ``from_arrow`` takes. ``grid``: ``{"log_lo", "log_hi", "n_cells"}``
        of the fine grid (shards that will be merged must use the same one). ``chunk_id_column`` (used when
        present; None: never): repeated ids are refused, as ``pplaw landscape`` refuses them (a chunk counted
        twice)."""
        cols = _columns.resolve(ds, ppl_column=ppl_column, tokens_column=tokens_column,
                                chunk_id_column=chunk_id_column)
        return cls._build(cols, n_bins, grid)

    @classmethod
    def from_arrow(cls, data: Any, ppl_column: str = "ppl", tokens_column: str = "n_scored", n_bins: int = 100,
                   *, grid: dict | None = None, chunk_id_column: str | None = "chunk_id") -> "Landscape":
        """From a pyarrow Table/RecordBatch (polars/pandas DataFrames and mappings work too) or a pair of
        arrays ``(ppl, tokens)``; ``chunk_id_column`` as in :meth:`from_dataset`."""
        if isinstance(data, tuple) and len(data) == 2:
            return cls.from_arrays(*data, n_bins=n_bins, grid=grid)
        return cls.from_dataset(data, ppl_column, tokens_column, n_bins, grid=grid, chunk_id_column=chunk_id_column)

    @classmethod
    def from_arrays(cls, ppl: Any, tokens: Any, *, n_bins: int = 100, rows: Any = None,
                    grid: dict | None = None) -> "Landscape":
        """From per-chunk PPL (float) and token counts (int): pyarrow, numpy, polars, pandas or lists.
        ``rows``: optional logical -> physical row mapping (logical row i is ``ppl[rows[i]]``)."""
        return cls._build(_columns.resolve_arrays(ppl, tokens, rows=rows), n_bins, grid)

    @classmethod
    def _build(cls, cols: _columns.Columns, n_bins: int, grid: dict | None) -> "Landscape":
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise InvalidInputError(f"n_bins: expected a positive integer, got {n_bins!r}")
        kwargs = dict(cols.core_kwargs())
        if grid is not None:
            kwargs["grid"] = _check_grid_spec(grid)
        core = cols.call(_columns.core().build_landscape, cols.ppl, cols.tokens, n_bins=n_bins, **kwargs)
        return cls(core=core, columns={"ppl": cols.names.get("ppl"), "tokens": cols.names.get("tokens")})

    # ------------------------------------------------------------------------------------------------------
    # statistics

    @property
    def exact(self) -> bool:
        """True when built from the chunks themselves; False for a merged (grid-resolution) landscape."""
        return self._core is not None

    @property
    def n_bins(self) -> int:
        return self._n_bins

    @property
    def n_chunks(self) -> int:
        return int(self._summary["n_chunks"])

    @property
    def n_tokens(self) -> int:
        return int(self._summary["n_tokens"])

    @property
    def mean(self) -> float:
        """Mean chunk PPL (token-weighted when chunk lengths differ)."""
        return float(self._summary["mean"])

    @property
    def std(self) -> float:
        """Standard deviation of chunk PPL (population; same weighting as ``mean``)."""
        return float(self._summary["std"])

    @property
    def log_mean(self) -> float:
        return float(self._summary["log_mean"])

    @property
    def log_std(self) -> float:
        return float(self._summary["log_std"])

    @property
    def weighted(self) -> bool:
        """Whether statistics are token-weighted (chunk lengths differ) or plain over chunks."""
        return bool(self._summary["weighted"])

    @property
    def summary(self) -> dict[str, Any]:
        """All overall statistics as a dict (n_chunks, n_tokens, mean, std, log_mean, log_std, weighted...)."""
        return dict(self._summary)

    @property
    def quantiles(self) -> np.ndarray:
        """The ``n_bins + 1`` bin edges: token-weighted PPL quantiles at ``k / n_bins`` (float64)."""
        if self._edges is None:
            edges = self._core.edges if self._core is not None else self._grid.quantiles(self._n_bins)
            self._edges = np.asarray(edges, dtype=np.float64)
            self._edges.setflags(write=False)
        return self._edges

    edges = quantiles

    @property
    def bins(self) -> pa.Table:
        """One row per bin: bin, ppl_lo, ppl_hi, count, tokens, ppl_min, ppl_max, ppl_mean, ppl_var,
        log_ppl_mean, log_ppl_var (NaN statistics for an empty bin)."""
        if self._bins is None:
            if self._core is not None:
                self._bins = pa.Table.from_batches([self._core.bins()])
            else:
                self._bins = _bins_from_grid(self._grid, self.quantiles, self.weighted)
        return self._bins

    @property
    def bin_index(self) -> np.ndarray:
        """Each chunk's bin (uint32, in the input's logical row order; a zero-copy view)."""
        if self._core is None:
            raise InvalidInputError(
                "this landscape was merged from shards (grid resolution) and has no per-chunk bin index; "
                "compute bins with np.searchsorted(land.quantiles, ppl, side='right') - 1"
            )
        if self._bin_index is None:
            try:
                arr = self._core.bin_index()
            except InvalidInputError as err:
                raise InvalidInputError(
                    "this landscape was loaded from a file saved without per-chunk bin indices "
                    "(save(..., include_bin_index=True) keeps them)"
                ) from err
            self._bin_index = arr.to_numpy(zero_copy_only=True)
        return self._bin_index

    @property
    def grid_resolution(self) -> dict[str, float]:
        """The fine grid: ``log_lo``, ``log_hi``, ``n_cells``, cell width ``h`` (nats) and the relative PPL
        error bound ``exp(h/2) - 1`` of quantiles from a merged landscape."""
        spec = _grid_spec(self._grid)
        h = (spec["log_hi"] - spec["log_lo"]) / spec["n_cells"]
        return {**spec, "cell_width": h, "quantile_rel_error": math.expm1(h / 2)}

    def grid(self) -> Any:
        """The mergeable fine grid (a ``pplaw._core.GridCore``)."""
        return self._grid

    def band(self, q_lo: float, q_hi: float, **kwargs: Any) -> Any:
        """A ``datasets.Dataset.filter`` predicate keeping the chunks between quantiles ``q_lo`` and ``q_hi``
        of this landscape: ``scored.filter(land.band(0.35, 0.70), batched=True)``. Keyword arguments as
        :func:`pplaw.filters.in_band` (``weight``, ``keep``, ``seed``, ``ppl_column``)."""
        from pplaw.filters import in_band

        return in_band(self, q_lo, q_hi, **kwargs)

    def ppl_at(self, q: float, *, weight: str = "tokens") -> float:
        """The PPL at (token-weighted, or ``weight="chunks"``) quantile ``q``: :func:`pplaw.filters.quantile_ppl`."""
        from pplaw.filters import quantile_ppl

        return quantile_ppl(self, q, weight=weight)

    # ------------------------------------------------------------------------------------------------------
    # merging and persistence

    def merge(self, other: "Landscape") -> "Landscape":
        """Combine two landscapes of disjoint shards through their fine grids (exact, order-independent).

        The result has grid-resolution quantiles (see the module doc) and the landscapes' common ``n_bins``:
        two landscapes with different ``n_bins`` are refused, so that ``a.merge(b) == b.merge(a)``.
        """
        if not isinstance(other, Landscape):
            raise InvalidInputError(f"merge: expected a Landscape, got {type(other).__name__}")
        if other._n_bins != self._n_bins:
            raise InvalidInputError(f"merge: the landscapes have different n_bins ({self._n_bins} and "
                                    f"{other._n_bins}); build the shards with the same n_bins")
        return Landscape(grid=self._grid.merge(other._grid), n_bins=self._n_bins, columns=self.columns)

    @classmethod
    def merge_all(cls, landscapes: list["Landscape"]) -> "Landscape":
        """Merge many shard landscapes (any order gives the same result)."""
        if not landscapes:
            raise InvalidInputError("merge_all: no landscapes given")
        out = landscapes[0]
        for other in landscapes[1:]:
            out = out.merge(other)
        return out if len(landscapes) > 1 else out.merge_identity()

    def merge_identity(self) -> "Landscape":
        """This landscape at grid resolution (what a one-shard merge gives)."""
        return Landscape(grid=self._grid, n_bins=self._n_bins, columns=self.columns)

    def to_json(self, include_bin_index: bool = False) -> str:
        doc: dict[str, Any] = {"format": FILE_FORMAT, "version": FILE_VERSION, "exact": self.exact,
                               "n_bins": self._n_bins, "columns": self.columns}
        if self._core is not None:
            doc["landscape"] = json.loads(self._core.to_json(include_bin_index=include_bin_index))
        else:
            doc["grid"] = json.loads(self._grid.to_json())
        return json.dumps(doc, separators=(",", ":"))

    def save(self, path: str | os.PathLike, *, include_bin_index: bool = False) -> Path:
        """Write the landscape as JSON, atomically (temp file + rename). Per-chunk bin indices are left out
        unless ``include_bin_index`` (they are as long as the corpus)."""
        path = Path(path)
        text = self.to_json(include_bin_index=include_bin_index)
        atomic_write_text(path, text)
        return path

    @classmethod
    def from_json(cls, text: str, *, source: str = "document") -> "Landscape":
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SerializationError(f"{source} is not a pplaw landscape: invalid JSON ({err})") from err
        if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
            raise SerializationError(f"{source} is not a pplaw landscape (expected format {FILE_FORMAT!r})")
        if doc.get("version") != FILE_VERSION:
            raise SerializationError(
                f"{source}: landscape file version {doc.get('version')!r} is not supported (expected {FILE_VERSION})"
            )
        core = _columns.core()
        try:
            if "landscape" in doc:
                inner = core.LandscapeCore.from_json(json.dumps(doc["landscape"]))
                return cls(core=inner, columns=doc.get("columns"))
            grid = core.GridCore.from_json(json.dumps(doc["grid"]))
            return cls(grid=grid, n_bins=int(doc["n_bins"]), columns=doc.get("columns"))
        except SerializationError as err:
            raise SerializationError(f"{source}: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise SerializationError(f"{source} is a corrupt pplaw landscape file: {err!r}") from err

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Landscape":
        """Read a landscape written by :meth:`save`; a bad file raises SerializationError naming it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise SerializationError(f"landscape file {str(path)!r} does not exist") from err
        except (OSError, UnicodeDecodeError) as err:
            raise SerializationError(f"cannot read landscape file {str(path)!r}: {err}") from err
        return cls.from_json(text, source=f"landscape file {str(path)!r}")

    # ------------------------------------------------------------------------------------------------------

    def histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid cells as ``(ppl_mid, chunks, tokens)`` arrays (non-empty cells; under/overflow cells are
        placed at the observed min/max PPL)."""
        return _grid_cells(self._grid)

    def plot(self, path: str | os.PathLike, *, title: str | None = None) -> Path:
        """Write a PNG: chunk count and token mass over log-PPL with the bin edges, and token mass per bin."""
        return _plot(self, Path(path), title)

    def __repr__(self) -> str:
        kind = "exact" if self.exact else "merged, grid resolution"
        q = self.quantiles
        return (
            f"Landscape({self.n_chunks:,} chunks, {self.n_tokens:,} tokens, {self._n_bins} bins, {kind}; "
            f"ppl mean={self.mean:.4g} std={self.std:.4g}, log_ppl mean={self.log_mean:.4g} "
            f"std={self.log_std:.4g}, {'token-weighted' if self.weighted else 'unweighted'}; "
            f"ppl range [{q[0]:.4g}, {q[-1]:.4g}], median {np.interp(0.5, np.linspace(0, 1, len(q)), q):.4g})"
        )

    def __len__(self) -> int:
        return self.n_chunks


# ----------------------------------------------------------------------------------------------------------
# helpers


def _check_grid_spec(grid: Any) -> tuple[float, float, int]:
    """``{"log_lo", "log_hi", "n_cells"}`` (missing keys take the defaults) -> the core's spec tuple."""
    keys = ("log_lo", "log_hi", "n_cells")
    if not isinstance(grid, dict) or set(grid) - set(keys):
        raise InvalidInputError(f"grid: expected a dict with keys log_lo, log_hi, n_cells, got {grid!r}")
    spec = {**DEFAULT_GRID, **grid}
    try:
        return float(spec["log_lo"]), float(spec["log_hi"]), int(spec["n_cells"])
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"grid: log_lo/log_hi must be numbers and n_cells an integer, got {grid!r}") from err


def _grid_spec(grid: Any) -> dict:
    log_lo, log_hi, n_cells = grid.spec
    return {"log_lo": float(log_lo), "log_hi": float(log_hi), "n_cells": int(n_cells)}


def _grid_cells(grid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty cells as (representative PPL, chunks, tokens); the representative is the geometric
    midpoint of the cell clipped to the observed [min, max] (the value grid quantiles use)."""
    cells = pa.Table.from_batches([grid.cells()])  # non-empty cells only
    with np.errstate(over="ignore"):  # the overflow cell's upper bound is +inf (clipped below)
        lo = np.exp(cells.column("log_ppl_lo").to_numpy())
        hi = np.exp(cells.column("log_ppl_hi").to_numpy())
    s = grid.summary()
    lo = np.clip(lo, s["ppl_min"], s["ppl_max"])
    hi = np.clip(hi, s["ppl_min"], s["ppl_max"])
    mid = np.sqrt(lo * hi)
    count = cells.column("count").to_numpy().astype(np.int64)
    tokens = cells.column("tokens").to_numpy().astype(np.int64)
    keep = count > 0
    return mid[keep], count[keep], tokens[keep]


def _bins_from_grid(grid: Any, edges: np.ndarray, weighted: bool) -> pa.Table:
    """Bin statistics of a merged landscape from its cells (each cell at its representative PPL)."""
    mid, count, tokens = _grid_cells(grid)
    n_bins = len(edges) - 1
    k = np.clip(np.searchsorted(edges, mid, side="right") - 1, 0, n_bins - 1)
    w = tokens.astype(np.float64) if weighted else count.astype(np.float64)
    b_count = np.bincount(k, weights=count, minlength=n_bins).astype(np.uint64)
    b_tokens = np.bincount(k, weights=tokens, minlength=n_bins).astype(np.uint64)
    out = {"bin": np.arange(n_bins, dtype=np.uint32), "ppl_lo": edges[:-1], "ppl_hi": edges[1:],
           "count": b_count, "tokens": b_tokens}
    with np.errstate(invalid="ignore", divide="ignore"):
        wsum = np.bincount(k, weights=w, minlength=n_bins)
        for name, x in (("ppl", mid), ("log_ppl", np.log(mid))):
            m = np.bincount(k, weights=w * x, minlength=n_bins) / wsum
            v = np.maximum(np.bincount(k, weights=w * (x - m[k]) ** 2, minlength=n_bins) / wsum, 0.0)
            out[f"{name}_mean"], out[f"{name}_var"] = m, v
        mins = np.full(n_bins, np.nan)
        maxs = np.full(n_bins, np.nan)
        np.fmin.at(mins, k, mid)  # fmin ignores the NaN start value
        np.fmax.at(maxs, k, mid)
    out["ppl_min"], out["ppl_max"] = mins, maxs
    names = ["bin", "ppl_lo", "ppl_hi", "count", "tokens", "ppl_min", "ppl_max", "ppl_mean", "ppl_var",
             "log_ppl_mean", "log_ppl_var"]
    return pa.table({n: out[n] for n in names})


def _plot(land: Landscape, path: Path, title: str | None) -> Path:
    """Two panels: the distribution over log-PPL (token mass, chunk count, bin edges) and token mass per bin.
    Uses the Agg canvas directly (no pyplot state, works headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    mid, count, tokens = land.histogram()
    edges = land.quantiles
    lo, hi = float(edges[0]), float(edges[-1])
    if hi <= lo * 1.0001:  # a single PPL value: widen the axis a little around it
        lo, hi = lo / 1.05, hi * 1.05
    display = np.geomspace(lo, hi, 121)  # display bars: 120, equal width in log-PPL
    tok_hist, _ = np.histogram(np.clip(mid, lo, hi), bins=display, weights=tokens)
    cnt_hist, _ = np.histogram(np.clip(mid, lo, hi), bins=display, weights=count)

    fig = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 2])
    # token mass and chunk count as shares on one axis: where the two differ, chunk lengths vary with PPL
    top.bar(display[:-1], tok_hist / max(tok_hist.sum(), 1), width=np.diff(display), align="edge",
            color="#4C72B0", alpha=0.7, label="share of tokens")
    top.step(display, np.r_[cnt_hist, cnt_hist[-1:]] / max(cnt_hist.sum(), 1), where="post", color="#DD8452",
             lw=1.5, label="share of chunks")
    top.set_xscale("log")
    top.set_xlim(display[0], display[-1])
    top.set_xlabel("chunk perplexity (log scale)")
    top.set_ylabel(f"share per display bar ({len(display) - 1} bars)")
    top.yaxis.set_major_formatter(PercentFormatter(1.0))
    step = max(land.n_bins // 10, 1)
    for k, e in enumerate(edges[1:-1], start=1):
        major = k % step == 0  # every 10th edge (deciles for 100 bins) darker
        top.axvline(e, color="black", lw=0.9 if major else 0.4, alpha=0.7 if major else 0.25, zorder=0)
    top.axvline(land.mean, color="#C44E52", lw=1.8, ls="--", label=f"mean PPL {land.mean:.3g}")
    handles, labels = top.get_legend_handles_labels()
    handles.append(top.plot([], [], color="black", lw=0.6)[0])
    labels.append(f"bin edges ({land.n_bins} token-weighted quantile bins"
                  + (f"; every {step}th darker)" if step > 1 else ")"))
    top.legend(handles, labels, loc="upper right", fontsize=9, framealpha=0.9)
    top.set_title(title or "Perplexity landscape", fontsize=13)
    top.text(0.01, 0.97, f"{land.n_chunks:,} chunks, {land.n_tokens:,} tokens\n"
             f"PPL mean {land.mean:.4g}, std {land.std:.4g}\nlog-PPL mean {land.log_mean:.4g}, std {land.log_std:.4g}"
             + ("" if land.exact else "\n(merged: grid resolution)"),
             transform=top.transAxes, va="top", fontsize=9,
             bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})

    bins = land.bins
    share = bins.column("tokens").to_numpy().astype(np.float64) / max(land.n_tokens, 1)
    x = np.arange(land.n_bins)
    bottom.bar(x, share, width=0.8, color="#55A868", alpha=0.8, label="token mass in bin")
    bottom.axhline(1 / land.n_bins, color="black", lw=1.2, ls="--", zorder=3, label=f"1/{land.n_bins} (equal mass)")
    bottom.set_xlabel("quantile bin (low PPL -> high PPL)")
    bottom.set_ylabel("share of tokens")
    bottom.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    bottom.set_xlim(-0.5, land.n_bins - 0.5)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    twin2 = bottom.twinx()
    twin2.plot(x, bins.column("ppl_mean").to_numpy(zero_copy_only=False), color="#8172B2", lw=1.5,
               marker="." if land.n_bins <= 50 else None, label="mean PPL in bin")
    twin2.set_yscale("log")
    twin2.set_ylabel("mean PPL in bin (log scale)")
    h1, l1 = bottom.get_legend_handles_labels()
    h2, l2 = twin2.get_legend_handles_labels()
    bottom.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=9, framealpha=0.9)
    bottom.set_title("Token mass and mean PPL per quantile bin", fontsize=11)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path
