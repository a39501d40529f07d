"""Type stubs of the Rust extension ``pplaw._core`` (rust/src/py/), checked against it by
``mypy.stubtest`` (tests/test_core_stub.py).

Array arguments accept anything exporting the Arrow PyCapsule interface (``__arrow_c_array__`` or
``__arrow_c_stream__``): pyarrow Array/ChunkedArray, polars Series, nanoarrow, arro3. The Python layer
(:mod:`pplaw._columns`) turns numpy arrays, ``datasets.Dataset`` columns and lists into those first.

``rows`` is an optional logical -> physical row mapping (a ``datasets`` indices mapping): logical row ``i``
reads physical row ``rows[i]``. Errors are raised as :mod:`pplaw.exceptions` classes; the GIL is released
while computing; a Rust panic surfaces as ``pplaw.exceptions.PplawError``, never an abort.
"""

from typing import Any, Literal, Protocol, final

import pyarrow as pa

__all__ = ["LandscapeCore", "GridCore", "build_landscape", "build_grid", "subset_stats", "sample_subset",
           "select_dos", "dos_objective", "realisable_range", "realisable_edges", "chunk_key",
           "__version__"]

__version__: str

class _ArrowArrayLike(Protocol):
    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]: ...

_ArrayLike = _ArrowArrayLike | pa.Array | pa.ChunkedArray | Any
_Space = Literal["ppl", "log_ppl"]
_GridSpecTuple = tuple[float, float, int]  # (log_lo, log_hi, n_cells)

@final
class GridCore:
    """Fixed fine grid over ln PPL with integer counts and fixed-point moment sums: merges exactly,
    associatively and commutatively (bit-identical in any order)."""

    @property
    def n_chunks(self) -> int: ...
    @property
    def n_tokens(self) -> int: ...
    @property
    def spec(self) -> _GridSpecTuple: ...
    def merge(self, other: GridCore) -> GridCore:
        """Raises InvalidInputError when the two grids have different specs."""
    def quantiles(self, n_bins: int) -> list[float]:
        """``n_bins + 1`` token-weighted quantile edges at grid resolution (one cell of error at most)."""
    def summary(self) -> dict[str, Any]: ...
    def cells(self) -> pa.RecordBatch:
        """Non-empty cells: cell, log_ppl_lo, log_ppl_hi, count, tokens."""
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(s: str) -> GridCore:
        """Raises SerializationError on a corrupt document."""

@final
class LandscapeCore:
    """Exact token-weighted quantile bins, per-bin and overall statistics, each chunk's bin, fine grid."""

    @property
    def n_bins(self) -> int: ...
    @property
    def n_chunks(self) -> int: ...
    @property
    def n_tokens(self) -> int: ...
    @property
    def edges(self) -> list[float]: ...
    def summary(self) -> dict[str, Any]:
        """n_chunks, n_tokens, mean, std, log_mean, log_std, ppl_min, ppl_max, weighted."""
    def bin_index(self) -> pa.Array:
        """uint32 bin of each logical row; InvalidInputError when loaded from JSON saved without it."""
    def bins(self) -> pa.RecordBatch:
        """bin, ppl_lo, ppl_hi, count, tokens, ppl_min, ppl_max, ppl_mean, ppl_var, log_ppl_mean, log_ppl_var."""
    def grid(self) -> GridCore: ...
    def to_json(self, include_bin_index: bool = False) -> str: ...
    @staticmethod
    def from_json(s: str) -> LandscapeCore: ...

def build_landscape(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    *,
    n_bins: int = 100,
    rows: _ArrayLike | None = None,
    grid: _GridSpecTuple | None = None,
) -> LandscapeCore: ...
def build_grid(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    *,
    rows: _ArrayLike | None = None,
    log_lo: float | None = None,
    log_hi: float | None = None,
    n_cells: int | None = None,
) -> GridCore: ...
def subset_stats(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    selection: _ArrayLike,
    *,
    rows: _ArrayLike | None = None,
    space: _Space = "ppl",
    weighting: Literal["auto", "chunks", "tokens"] = "auto",
) -> dict[str, Any]:
    """``selection``: integer logical row indices or a boolean mask. Returns count, tokens, mean, std, weighted."""
def sample_subset(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    chunk_id: _ArrayLike | None = None,
    *,
    token_budget: int,
    target_mean: float | None = None,
    target_std: float | None = None,
    space: _Space = "ppl",
    ppl_min: float | None = None,
    ppl_max: float | None = None,
    quantile_min: float | None = None,
    quantile_max: float | None = None,
    rows: _ArrayLike | None = None,
    seed: int = 0,
) -> pa.Array:
    """Sorted uint64 logical row indices; BudgetError / UnreachableTargetError (with ``.realisable``)."""
def select_dos(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    *,
    token_budget: int,
    target_mean: float,
    target_std: float,
    space: _Space = "ppl",
    w_mu: float | None = None,
    w_s: float | None = None,
    chunk_id: _ArrayLike | None = None,
    rows: _ArrayLike | None = None,
    seed: int = 0,
) -> pa.Array:
    """Sorted uint64 logical row indices of the Distance-to-Optimum subset (rust/src/dos.rs)."""
def dos_objective(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    selection: _ArrayLike,
    *,
    target_mean: float,
    target_std: float,
    space: _Space = "ppl",
    w_mu: float | None = None,
    w_s: float | None = None,
    rows: _ArrayLike | None = None,
) -> float: ...
def realisable_range(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    *,
    token_budget: int,
    space: _Space = "ppl",
    ppl_min: float | None = None,
    ppl_max: float | None = None,
    quantile_min: float | None = None,
    quantile_max: float | None = None,
    rows: _ArrayLike | None = None,
) -> dict[str, Any]: ...
def realisable_edges(
    ppl: _ArrayLike,
    tokens: _ArrayLike,
    *,
    token_budget: int,
    space: _Space = "ppl",
    ppl_min: float | None = None,
    ppl_max: float | None = None,
    quantile_min: float | None = None,
    quantile_max: float | None = None,
    rows: _ArrayLike | None = None,
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """(lower, upper) edges of the realisable region, each a batch of (mean, std) points: every minimal
    contiguous window of the sorted order (least spread), every lowest + highest tails split (most spread)."""
def chunk_key(seed: int, chunk_id: int) -> int:
    """The 64-bit random key of a chunk (hash of seed and chunk_id) that sampling orders by."""
