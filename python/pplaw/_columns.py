"""Turn every supported input into the Arrow columns that :mod:`pplaw._core` takes, without copying.

Supported inputs (``data``): ``datasets.Dataset`` (its ``select``/``shuffle``/``filter`` indices mapping is
passed on as ``rows`` instead of being materialised), ``pyarrow.Table``/``RecordBatch``, ``polars.DataFrame``,
``pandas.DataFrame``, a mapping ``{column name: array}`` and any object exporting an Arrow C stream
(``__arrow_c_stream__``). Single arrays (for :func:`as_array`): pyarrow ``Array``/``ChunkedArray``, numpy
arrays, polars/pandas ``Series``, anything exporting ``__arrow_c_array__``/``__arrow_c_stream__``, and
Python sequences.

Zero-copy rules (the Arrow C data interface shares buffers): pyarrow columns are passed as they are; a numpy
array that is contiguous and native-endian is wrapped (``pa.array`` reuses its buffer); polars Series are
imported through the C stream interface. Copies happen only where the buffers cannot be reused: a float32
PPL column is widened to float64 and a Python list is converted. Values (NaN, inf, PPL <= 0, zero
tokens, nulls on the rows a mapping selects) are checked by the core on the logical rows it reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pplaw.exceptions import (
    EmptyInputError,
    InvalidInputError,
    LengthMismatchError,
    MissingColumnError,
    NotBuiltError,
    PplawError,
    UnreachableTargetError,
)

ArrowColumn = pa.Array | pa.ChunkedArray

# Column roles: what each one must hold (used in error messages and in dtype checks).
PPL = "ppl"
TOKENS = "tokens"
CHUNK_ID = "chunk_id"
_EXPECTED = {
    PPL: "a floating-point column (float64; float32/float16 are widened) of per-chunk perplexities",
    TOKENS: "an integer column of per-chunk scored-token counts",
    CHUNK_ID: "an integer column of stable, non-negative per-chunk ids (uint64)",
}
DEFAULT_CHUNK_ID_COLUMN = "chunk_id"


@dataclass(frozen=True)
class Columns:
    """The columns of one input, ready for :mod:`pplaw._core`.

    ``rows`` is the logical -> physical row mapping (a ``datasets`` indices mapping): logical row ``i``
    is physical row ``rows[i]`` of the columns. ``None`` means the identity. ``n_rows`` counts logical rows.
    """

    ppl: ArrowColumn
    tokens: ArrowColumn
    chunk_id: ArrowColumn | None
    rows: ArrowColumn | None
    n_rows: int
    source: str
    names: dict[str, str | None] = field(default_factory=dict)

    def core_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every ``pplaw._core`` function (``rows`` only when present)."""
        return {} if self.rows is None else {"rows": self.rows}

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a core function; its errors name the user's columns instead of the core's argument names."""
        try:
            return fn(*args, **kwargs)
        except PplawError as err:
            message = _rename_columns(str(err), self.names)
            if message == str(err):
                raise
            if isinstance(err, UnreachableTargetError):
                new: PplawError = UnreachableTargetError(message, err.realisable)
            else:
                new = type(err)(message)
            raise new.with_traceback(err.__traceback__) from None


def _rename_columns(message: str, names: dict[str, str | None]) -> str:
    """The core calls its inputs 'ppl', 'tokens', 'chunk_id'; say the user's column names instead."""
    mapping = {f"'{role}'": f"'{name}'" for role, name in names.items() if name and name != role}
    if not mapping:
        return message
    return re.sub("|".join(map(re.escape, mapping)), lambda m: mapping[m.group(0)], message)


def core() -> Any:
    """The Rust extension module, or a clear NotBuiltError when it has not been compiled."""
    try:
        from pplaw import _core
    except ImportError as err:
        if "_core" not in str(err):
            raise
        raise NotBuiltError(
            "the Rust extension pplaw._core is not built; run `make build` (or `make setup`) in the repository"
        ) from err
    return _core


# ----------------------------------------------------------------------------------------------------------
# single arrays


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _is_pandas(obj: Any, name: str) -> bool:
    return type(obj).__module__.startswith("pandas") and type(obj).__name__ == name


def as_array(obj: Any, what: str, role: str | None = None) -> ArrowColumn:
    """Convert one array-like to a pyarrow Array/ChunkedArray without copying where buffers allow.

    ``what`` names the argument/column in error messages; ``role`` (``"ppl"``/``"tokens"``/``"chunk_id"``)
    picks the type used for Python sequences.
    """
    if isinstance(obj, (pa.Array, pa.ChunkedArray)):
        return obj
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj, what)
    if _is_pandas(obj, "Series") or _is_pandas(obj, "Index"):
        # numpy-backed pandas data: go through numpy (pandas' own Arrow export turns NaN into null, which
        # would hide a NaN PPL behind a "null" message). Extension arrays (Arrow/masked) use __arrow_array__.
        if isinstance(obj.dtype, np.dtype):
            return _from_numpy(np.asarray(obj), what)
        return pa.array(obj.array)
    if hasattr(obj, "__arrow_c_stream__"):  # polars Series, arro3, nanoarrow...: shared buffers
        return pa.chunked_array(obj)
    if hasattr(obj, "__arrow_c_array__"):
        return pa.array(obj)
    if isinstance(obj, (str, bytes)) or not isinstance(obj, (Sequence, range)) and not hasattr(obj, "__array__"):
        raise InvalidInputError(
            f"{what}: expected an array (pyarrow, numpy, polars, pandas or a list), got {_type_name(obj)}"
        )
    if hasattr(obj, "__array__"):  # torch tensors, array-likes
        return _from_numpy(np.asarray(obj), what)
    # A Python list: choose the Arrow type from the role so [10, 20] is a valid PPL list.
    typ = {PPL: pa.float64(), TOKENS: pa.int64(), CHUNK_ID: pa.uint64()}.get(role or "")
    try:
        return pa.array(list(obj), type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as err:
        raise InvalidInputError(f"{what}: cannot convert the list to {typ or 'an Arrow array'}: {err}") from err


def _from_numpy(arr: np.ndarray, what: str) -> pa.Array:
    if arr.ndim != 1:
        raise InvalidInputError(f"{what}: expected a 1-D array (one value per chunk), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":  # strings/objects/datetimes: refuse before pyarrow guesses a type
        raise InvalidInputError(f"{what}: expected a numeric array, got numpy dtype {arr.dtype}")
    # pa.array wraps a contiguous native-endian numeric buffer as is; anything else is copied once here.
    return pa.array(np.ascontiguousarray(arr))


def check_type(col: ArrowColumn, role: str, what: str) -> ArrowColumn:
    """Check a column's Arrow type for its role. Only a float16/float32 PPL column is cast (a copy)."""
    typ = col.type
    if role == PPL:
        if typ == pa.float64():
            return col
        if pa.types.is_floating(typ):
            return col.cast(pa.float64())
    elif role == TOKENS:
        if pa.types.is_integer(typ):
            return col
    elif role == CHUNK_ID:
        if pa.types.is_integer(typ):  # the core reads any integer width and checks ids are >= 0
            return col
    raise InvalidInputError(f"{what}: expected {_EXPECTED[role]}, got Arrow type {typ}")


def _first_null(col: ArrowColumn) -> int:
    return int(pc.index(pc.is_null(col), True).as_py())


# ----------------------------------------------------------------------------------------------------------
# tables


def _table_columns(data: Any) -> tuple[Any, list[str], ArrowColumn | None, str]:
    """(column getter source, column names, rows mapping, source description) for a table-like input."""
    mod = type(data).__module__
    if mod.startswith("datasets"):
        name = type(data).__name__
        if name in ("DatasetDict", "IterableDatasetDict"):
            raise InvalidInputError(
                f"got a {name} with splits {list(data)}; pass one split, e.g. ds[{next(iter(data), 'train')!r}]"
            )
        if name == "IterableDataset":
            raise InvalidInputError(
                "got a datasets.IterableDataset; the landscape needs every row: materialise it first "
                "(e.g. Dataset.from_generator) or pass the Parquet files"
            )
        if hasattr(data, "_indices") and hasattr(data, "data"):
            # ds.data is the full (physical) Arrow table; ds._indices maps logical rows onto it after
            # select/shuffle/filter. Passing the mapping as `rows` avoids ds.flatten_indices() (a full copy).
            table = data.data.table
            rows = None if data._indices is None else data._indices.column(0)
            return table, table.column_names, rows, "datasets.Dataset"
    if isinstance(data, pa.Table):
        return data, data.column_names, None, "pyarrow.Table"
    if isinstance(data, pa.RecordBatch):
        return data, data.schema.names, None, "pyarrow.RecordBatch"
    if mod.startswith("polars") and type(data).__name__ == "DataFrame":
        return data, list(data.columns), None, "polars.DataFrame"
    if mod.startswith("polars") and type(data).__name__ == "LazyFrame":
        raise InvalidInputError("got a polars.LazyFrame; call .collect() first (the landscape needs every row)")
    if _is_pandas(data, "DataFrame"):
        return data, [str(c) for c in data.columns], None, "pandas.DataFrame"
    if isinstance(data, Mapping):
        return data, [str(k) for k in data], None, "mapping"
    if hasattr(data, "__arrow_c_stream__"):
        try:
            table = pa.table(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
            raise InvalidInputError(f"cannot read {_type_name(data)} as an Arrow table: {err}") from err
        return table, table.column_names, None, _type_name(data)
    raise InvalidInputError(
        f"unsupported input {_type_name(data)}: pass a datasets.Dataset, a pyarrow/polars/pandas table, "
        "a mapping of column name -> array, or use the *_arrays variant with the arrays themselves"
    )


def _get(source: Any, name: str, kind: str) -> Any:
    if kind.startswith("pyarrow"):
        return source.column(name)
    return source[name]


def resolve(
    data: Any,
    *,
    ppl_column: str = "ppl",
    tokens_column: str = "n_scored",
    chunk_id_column: str | None = None,
) -> Columns:
    """Find and check the PPL, token-count and (optional) chunk-id columns of a table-like input.

    ``chunk_id_column``: ``None`` never uses one; the default name ``"chunk_id"`` is used when present;
    any other name must exist.
    """
    source, names, rows, kind = _table_columns(data)

    def need(col_name: str, role: str) -> ArrowColumn:
        if not isinstance(col_name, str) or col_name not in names:
            raise MissingColumnError(
                f"column {col_name!r} ({role}) not found in the {kind}; available columns: "
                f"{', '.join(map(repr, names)) or '(none)'}"
            )
        return as_array(_get(source, col_name, kind), f"column {col_name!r}", role)

    cols = {PPL: need(ppl_column, PPL), TOKENS: need(tokens_column, TOKENS)}
    if chunk_id_column is not None and (chunk_id_column in names or chunk_id_column != DEFAULT_CHUNK_ID_COLUMN):
        cols[CHUNK_ID] = need(chunk_id_column, CHUNK_ID)
    labels = {PPL: ppl_column, TOKENS: tokens_column, CHUNK_ID: chunk_id_column if CHUNK_ID in cols else None}
    return _finish(cols, rows, kind, {r: f"column {labels[r]!r}" for r in cols}, labels)


def resolve_arrays(ppl: Any, tokens: Any, chunk_id: Any = None, rows: Any = None) -> Columns:
    """Like :func:`resolve` for loose arrays (``from_arrays``): checks equal lengths."""
    cols = {PPL: as_array(ppl, "ppl", PPL), TOKENS: as_array(tokens, "tokens", TOKENS)}
    if chunk_id is not None:
        cols[CHUNK_ID] = as_array(chunk_id, "chunk_id", CHUNK_ID)
    lengths = {role: len(col) for role, col in cols.items()}
    if len(set(lengths.values())) > 1:
        raise LengthMismatchError(
            "arrays must have one value per chunk, got lengths "
            + ", ".join(f"{role}={n}" for role, n in lengths.items())
        )
    rows_arr = None
    if rows is not None:
        rows_arr = as_array(rows, "rows", CHUNK_ID)
        if not pa.types.is_integer(rows_arr.type):
            raise InvalidInputError(f"rows: expected an integer row mapping, got Arrow type {rows_arr.type}")
    labels = {PPL: "ppl", TOKENS: "tokens", CHUNK_ID: "chunk_id" if chunk_id is not None else None}
    return _finish(cols, rows_arr, "arrays", {r: r for r in cols}, labels)


def _finish(
    cols: dict[str, ArrowColumn],
    rows: ArrowColumn | None,
    kind: str,
    what: dict[str, str],
    labels: dict[str, str | None],
) -> Columns:
    cols = {role: check_type(col, role, what[role]) for role, col in cols.items()}
    if rows is not None and rows.type != pa.uint64():
        rows = rows.cast(pa.uint64())
    if rows is None:
        # With a mapping, only the rows it selects matter (a filter may have dropped the nulls): the core
        # checks exactly those. Without one, any null is an error; say so here, with the count.
        for role, col in cols.items():
            if col.null_count:
                raise InvalidInputError(
                    f"{what[role]} has {col.null_count} null value(s) (first at row {_first_null(col)}); "
                    f"expected {_EXPECTED[role]} with a value for every chunk"
                )
    n_rows = len(rows) if rows is not None else len(cols[PPL])
    if n_rows == 0:
        raise EmptyInputError(f"the {kind} has no rows: a landscape or a subset needs at least one chunk")
    # the same value checks as the command line's readers (pplaw.io.read_scored), on the rows that are used
    # (a mapping that points past the columns is left to the core, whose error says so)
    try:
        used = cols if rows is None else {role: col.take(rows) for role, col in cols.items() if role != TOKENS}
    except (pa.ArrowIndexError, IndexError):
        used = {}
    if PPL in used:
        check_ppl_values(used[PPL], what[PPL])
    if CHUNK_ID in used:
        check_unique_values(used[CHUNK_ID], what[CHUNK_ID], nulls=rows is None)
    return Columns(
        ppl=cols[PPL],
        tokens=cols[TOKENS],
        chunk_id=cols.get(CHUNK_ID),
        rows=rows,
        n_rows=n_rows,
        source=kind,
        names=labels,
    )


PPL_ROUNDOFF = 1e-3  # a perplexity below 1 - this is no rounding of exp(mean NLL >= 0): the column is not a PPL


def check_ppl_values(col: ArrowColumn, what: str) -> int:
    """Refuse a PPL column (``what``: "column 'ppl'") with values below 1: a perplexity is ``exp(mean NLL)
    >= 1``, so such a column is a log-PPL, a loss or something else, and every bin, window and fit built on it
    would be silently wrong. Values within :data:`PPL_ROUNDOFF` under 1 (float round-off of a near-perfect
    prediction) pass. Returns how many values are below 1. One check for the API and the command line."""
    if not pa.types.is_floating(col.type) or len(col) == 0:
        return 0
    n = int(pc.sum(pc.less(col, 1.0)).as_py() or 0)
    # NaN, inf and PPL <= 0 are the core's to name (with the row); here: a positive value that is no PPL
    bad = int(pc.sum(pc.and_(pc.greater(col, 0.0), pc.less(col, 1.0 - PPL_ROUNDOFF))).as_py() or 0)
    if bad:
        low = pc.min(pc.filter(col, pc.greater(col, 0.0))).as_py()
        raise InvalidInputError(
            f"{what} has {bad} value(s) below 1 (min {low:.4g}); a perplexity is exp(mean NLL) "
            f">= 1, so this is not a PPL column (a log-PPL? then exponentiate it; a loss? then PPL = exp(loss))")
    return n


def check_unique_values(col: ArrowColumn, what: str, *, nulls: bool = True) -> None:
    """Refuse repeated (and, with ``nulls``, null) values in an id column (``what``: "column 'chunk_id'"):
    repeated chunk ids make sampling ignore its seed and the landscape count chunks twice. One check for the
    API and the command line."""
    if nulls and col.null_count:
        raise InvalidInputError(f"{what} has {col.null_count} null value(s) (first at row {_first_null(col)}); "
                                f"every row needs an id")
    values = col.drop_null() if col.null_count else col
    found = _repeats_sorted(values) if pa.types.is_integer(values.type) else _repeats_hashed(values)
    if found is not None:
        n, ex, times = found
        raise InvalidInputError(f"{what} has {n} repeated value(s), e.g. {ex!r} {times} times (a copied shard, or "
                                f"repeated document ids?); ids must be unique")


def _repeats_hashed(values: ArrowColumn) -> tuple[int, Any, int] | None:
    """``(distinct repeated values, the first in row order, its count)`` or None, by Arrow's hash count."""
    counts = pc.value_counts(values)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if not len(dup):
        return None
    ex = dup[0].as_py()
    return len(dup), ex["values"], ex["counts"]


def _repeats_sorted(values: ArrowColumn) -> tuple[int, Any, int] | None:
    """:func:`_repeats_hashed` for integer ids, by a sort: Arrow's hash count of 10^7 ids took 2-4 s and ~1 GB
    of peak memory (105 bytes an id), a sort 0.8 s and 9 bytes an id; ids already ascending (as ``pplaw score``
    writes them within a shard) need one comparison pass. Same answer, same example (the first repeated
    value in row order)."""
    a = values.to_numpy() if isinstance(values, pa.Array) else np.asarray(values)  # (n,) zero-copy: one chunk
    if len(a) < 2 or bool(np.all(a[1:] > a[:-1])):
        return None
    s = np.sort(a)
    same = s[1:] == s[:-1]  # (n - 1,)
    if not same.any():
        return None
    rep = np.unique(s[1:][same])
    ex = a[int(np.flatnonzero(np.isin(a, rep))[0])]
    return len(rep), ex.item(), int(np.count_nonzero(a == ex))


def as_selection(selection: Any, n_rows: int) -> pa.Array:
    """Row indices (any integer array-like) -> UInt64Array, or a boolean mask -> BooleanArray."""
    if isinstance(selection, slice):
        selection = range(*selection.indices(n_rows))
    arr = as_array(selection, "selection")  # lists: pyarrow infers int64 or bool
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type) and len(arr) == 0:  # an empty list: no rows selected
        return pa.array([], type=pa.uint64())
    if arr.null_count:
        raise InvalidInputError(f"selection: has {arr.null_count} null value(s)")
    if pa.types.is_boolean(arr.type):
        if len(arr) != n_rows:
            raise LengthMismatchError(f"selection: a boolean mask needs one value per row ({n_rows}), got {len(arr)}")
        return arr
    if not pa.types.is_integer(arr.type):
        raise InvalidInputError(f"selection: expected row indices (integers) or a boolean mask, got {arr.type}")
    if len(arr) and pa.types.is_signed_integer(arr.type) and pc.min(arr).as_py() < 0:
        raise InvalidInputError(f"selection: row indices must be non-negative, found {pc.min(arr).as_py()}")
    return arr.cast(pa.uint64()) if arr.type != pa.uint64() else arr

