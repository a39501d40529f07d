"""Filter predicates over scored chunks, for ``datasets.Dataset.filter`` (batched, picklable, cheap).

    scored.filter(pplaw.ppl_between(5, 80), batched=True, num_proc=4)        # 5 <= ppl <= 80
    scored.filter(land.band(0.35, 0.70), batched=True)                       # the 35%..70% quantile band
    scored.filter(pplaw.in_band(land, 0.35, 0.70, keep=0.5, seed=1), batched=True)

What data-juicer's ``perplexity_filter`` offers (a ``min_ppl``/``max_ppl`` range on each sample's
perplexity) is :func:`ppl_between`. Beyond it:

- **quantiles of the landscape** (:func:`in_band`, :meth:`pplaw.Landscape.band`): the bounds are the PPL
  values at quantiles ``q_lo``/``q_hi`` of the corpus, token-weighted by default (``weight="chunks"`` for
  quantiles over chunks). ``band(k1/n, k2/n)`` of an ``n``-bin exact landscape keeps exactly bins ``k1 ..
  k2-1`` (``edges[k1] <= ppl < edges[k2]``, the top bin closed), the landscape's own bins; other quantiles
  come from its fine grid (a relative PPL error of at most ``land.grid_resolution["quantile_rel_error"]``).
- **a seeded fraction**: ``keep=f, seed=s`` keeps each in-range chunk with probability ``f``, decided by
  the documented key hash of ``(seed, chunk_id)`` (the one the samplers use, ``pplaw._core.chunk_key``):
  the same chunks whatever the row order, the shuffle, the shard split or ``num_proc``.

A predicate is a small object holding numbers only, so it pickles to worker processes (``num_proc``) and
``datasets`` fingerprints it by its bounds (a re-run with the same bounds hits the cache). It takes a batch
(a dict of columns, lists or arrays, or an Arrow table with ``with_format("arrow")``), the PPL column alone
(``input_columns="ppl"``), or one row (``batched=False``), and returns a boolean per row.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from pplaw.exceptions import InvalidInputError, MissingColumnError

# the quantile of an arbitrary q is taken from the fine grid at q as a fraction k/n with n at most this
QUANTILE_DENOMINATOR = 100_000
WEIGHTS = ("tokens", "chunks")

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), 0x9E3779B97F4A7C15


def _mix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of ``rust/src/hash.rs`` on uint64 arrays (numpy wraps like Rust's wrapping_*)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def chunk_keys(seed: int, chunk_id: Any) -> np.ndarray:
    """``pplaw._core.chunk_key(seed, id)`` for an array of chunk ids, vectorised (uint64)."""
    with np.errstate(over="ignore"):
        salt = _mix64(np.array([(seed + _GOLDEN) % 2**64], dtype=np.uint64))[0]
        return _mix64(np.asarray(chunk_id, dtype=np.uint64) + salt)


def _unit(keys: np.ndarray) -> np.ndarray:
    """The core's ``unit_open``: a uniform number in (0, 1) from the top 52 bits of a key."""
    return ((keys >> np.uint64(12)).astype(np.float64) + 0.5) * (1.0 / 2**52)


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidInputError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


class PplFilter:
    """Keep chunks with ``lo <= ppl <= hi`` (``hi_open``: ``ppl < hi``), optionally a seeded fraction of them.

    Build one with :func:`ppl_between` or :func:`in_band`; ``describe()`` says what it keeps (for a dataset
    card or a log)."""

    def __init__(self, lo: float | None, hi: float | None, *, hi_open: bool = False, keep: float | None = None,
                 seed: int = 0, ppl_column: str = "ppl", chunk_id_column: str = "chunk_id",
                 band: tuple[float, float] | None = None, weight: str | None = None):
        self.lo = None if lo is None else _finite(lo, "lo")
        self.hi = None if hi is None else _finite(hi, "hi")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise InvalidInputError(f"lo must be <= hi, got lo={self.lo}, hi={self.hi}")
        if keep is not None:
            keep = _finite(keep, "keep")
            if not 0 < keep <= 1:
                raise InvalidInputError(f"keep: the fraction of in-range chunks to keep must be in (0, 1], got {keep}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise InvalidInputError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
        for name, col in (("ppl_column", ppl_column), ("chunk_id_column", chunk_id_column)):
            if not isinstance(col, str) or not col:
                raise InvalidInputError(f"{name}: expected a column name, got {col!r}")
        self.hi_open, self.keep, self.seed = bool(hi_open), keep, int(seed)
        self.ppl_column, self.chunk_id_column = ppl_column, chunk_id_column
        self.band, self.weight = band, weight

    # ------------------------------------------------------------------------------------------------------

    def mask(self, ppl: Any, chunk_id: Any = None) -> np.ndarray:
        """The boolean mask of ``ppl`` (any array-like) this filter keeps."""
        x = np.asarray(ppl, dtype=np.float64)
        ok = np.isfinite(x)
        if self.lo is not None:
            ok &= x >= self.lo
        if self.hi is not None:
            ok &= (x < self.hi) if self.hi_open else (x <= self.hi)
        if self.keep is not None and self.keep < 1:
            if chunk_id is None:
                raise MissingColumnError(
                    f"keep={self.keep} draws by (seed, chunk_id): the batch has no column {self.chunk_id_column!r}; "
                    f"filter without input_columns (or with input_columns=[{self.ppl_column!r}, "
                    f"{self.chunk_id_column!r}]), or drop keep")
            ok &= _unit(chunk_keys(self.seed, chunk_id)) < self.keep
        return ok

    def __call__(self, batch: Any, *rest: Any) -> Any:
        names = _names(batch)
        if names is not None:
            if self.ppl_column not in names:
                raise MissingColumnError(f"column {self.ppl_column!r} (chunk perplexity) not in the batch; columns: "
                                         f"{', '.join(map(repr, names))} (score the dataset first, or set ppl_column)")
            ppl = _values(batch[self.ppl_column])
            cid = _values(batch[self.chunk_id_column]) if self.chunk_id_column in names else None
        else:  # input_columns=[ppl] or [ppl, chunk_id]: the columns themselves, positionally
            ppl, cid = _values(batch), (_values(rest[0]) if rest else None)
        if np.ndim(ppl) == 0:  # batched=False: one row
            return bool(self.mask(np.atleast_1d(ppl), None if cid is None else np.atleast_1d(cid))[0])
        return self.mask(ppl, cid).tolist()

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:.6g}"
        hi = "inf" if self.hi is None else f"{self.hi:.6g}"
        text = f"{lo} <= {self.ppl_column} {'<' if self.hi_open else '<='} {hi}"
        if self.band is not None:
            text += f" ({self.weight}-weighted quantiles {self.band[0]:g}..{self.band[1]:g} of the landscape)"
        if self.keep is not None and self.keep < 1:
            text += f", keeping {self.keep:g} of those by hash of (seed={self.seed}, {self.chunk_id_column})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "hi_open": self.hi_open, "keep": self.keep, "seed": self.seed,
                "ppl_column": self.ppl_column, "band": None if self.band is None else list(self.band),
                "weight": self.weight}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PplFilter) and self.to_dict() == other.to_dict() \
            and self.chunk_id_column == other.chunk_id_column

    __hash__ = None  # mutable attributes: not a dict key

    def __repr__(self) -> str:
        return f"PplFilter({self.describe()})"


def _names(batch: Any) -> list[str] | None:
    """The column names of a batch (a dict, an Arrow table, a pandas/polars frame), None for a bare column."""
    if isinstance(batch, Mapping):
        return list(batch.keys())
    if hasattr(batch, "column_names"):  # pyarrow
        return list(batch.column_names)
    if hasattr(batch, "columns") and not hasattr(batch, "dtype"):  # a pandas/polars frame, not a Series
        return [str(c) for c in batch.columns]
    return None


def _values(col: Any) -> Any:
    """A batch column as something numpy reads without a Python loop where possible (Arrow -> numpy)."""
    if hasattr(col, "to_numpy") and type(col).__module__.startswith("pyarrow"):
        return col.to_numpy(zero_copy_only=False)
    return col


# ----------------------------------------------------------------------------------------------------------
# constructors


def ppl_between(lo: float | None = None, hi: float | None = None, *, keep: float | None = None, seed: int = 0,
                ppl_column: str = "ppl", chunk_id_column: str = "chunk_id") -> PplFilter:
    """A predicate keeping chunks with ``lo <= ppl <= hi`` (either end may be None: open), data-juicer's
    ``min_ppl``/``max_ppl``; ``keep``/``seed``: a seeded fraction of them (see the module doc).

    ``ds.filter(pplaw.ppl_between(5, 80), batched=True, num_proc=4)``."""
    if lo is None and hi is None and keep is None:
        raise InvalidInputError("ppl_between: give lo, hi or both (or keep=); without them it keeps everything")
    return PplFilter(lo, hi, keep=keep, seed=seed, ppl_column=ppl_column, chunk_id_column=chunk_id_column)


def in_band(land: Any, q_lo: float, q_hi: float, *, weight: str = "tokens", keep: float | None = None,
            seed: int = 0, ppl_column: str | None = None, chunk_id_column: str = "chunk_id") -> PplFilter:
    """A predicate keeping the chunks between quantiles ``q_lo`` and ``q_hi`` of the landscape ``land``
    (``0 <= q_lo < q_hi <= 1``): ``ppl_at(q_lo) <= ppl < ppl_at(q_hi)``, closed at the top when ``q_hi == 1``.

    ``weight``: ``"tokens"`` (the landscape's own token-weighted quantiles) or ``"chunks"``. ``ppl_column``
    defaults to the column the landscape was built from."""
    q_lo, q_hi = _finite(q_lo, "q_lo"), _finite(q_hi, "q_hi")
    if not 0 <= q_lo < q_hi <= 1:
        raise InvalidInputError(f"band: expected 0 <= q_lo < q_hi <= 1, got ({q_lo}, {q_hi})")
    if weight not in WEIGHTS:
        raise InvalidInputError(f"weight: expected one of {WEIGHTS}, got {weight!r}")
    lo = quantile_ppl(land, q_lo, weight=weight) if q_lo > 0 else None
    hi = quantile_ppl(land, q_hi, weight=weight) if q_hi < 1 else None
    col = ppl_column or (getattr(land, "columns", None) or {}).get("ppl") or "ppl"
    return PplFilter(lo, hi, hi_open=hi is not None, keep=keep, seed=seed, ppl_column=col,
                     chunk_id_column=chunk_id_column, band=(q_lo, q_hi), weight=weight)


def quantile_ppl(land: Any, q: float, *, weight: str = "tokens") -> float:
    """The PPL at quantile ``q`` of a :class:`~pplaw.Landscape`: the smallest PPL ``x`` such that chunks with
    ``ppl <= x`` hold at least ``q`` of the tokens (of the chunks, ``weight="chunks"``).

    Exact (a PPL of the data) for ``weight="tokens"`` at a multiple of ``1 / land.n_bins`` of an exact
    landscape; otherwise from the fine grid (``land.grid_resolution``), with ``q`` as a fraction of
    denominator at most :data:`QUANTILE_DENOMINATOR`."""
    q = _finite(q, "q")
    if not 0 <= q <= 1:
        raise InvalidInputError(f"q: a quantile must be in [0, 1], got {q}")
    if weight not in WEIGHTS:
        raise InvalidInputError(f"weight: expected one of {WEIGHTS}, got {weight!r}")
    if weight == "tokens":
        k = q * land.n_bins
        if land.exact and abs(k - round(k)) < 1e-9:
            return float(land.quantiles[int(round(k))])
        f = Fraction(q).limit_denominator(QUANTILE_DENOMINATOR)
        return float(land.grid().quantiles(f.denominator)[f.numerator])
    mid, count, _ = land.histogram()  # non-empty grid cells, in PPL order
    cum = np.cumsum(count)
    i = int(np.searchsorted(cum, q * cum[-1] * (1 - 1e-12), side="left"))
    return float(mid[min(i, len(mid) - 1)])
