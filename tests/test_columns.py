"""Input conversion (pplaw._columns): every input kind, zero-copy, and the error for each bad input."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow as pa
import pytest

from pplaw import _columns
from pplaw.exceptions import (
    EmptyInputError,
    InvalidInputError,
    LengthMismatchError,
    MissingColumnError,
)

datasets = pytest.importorskip("datasets")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")

N = 64


def _data(n=N):
    rng = np.random.default_rng(0)
    ppl = np.exp(rng.normal(2.0, 0.5, n))
    tokens = rng.integers(1, 100, n).astype(np.int32)
    cid = np.arange(1000, 1000 + n, dtype=np.uint64)
    return ppl, tokens, cid


def _address(col) -> int:
    chunk = col.chunk(0) if isinstance(col, pa.ChunkedArray) else col
    return chunk.buffers()[1].address


def _values(col) -> np.ndarray:
    return col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(zero_copy_only=False)


def _logical(cols: _columns.Columns, col) -> np.ndarray:
    vals = _values(col)
    return vals if cols.rows is None else vals[_values(cols.rows).astype(np.int64)]


@pytest.mark.parametrize("kind", ["arrow_table", "record_batch", "dataset", "polars", "pandas", "mapping"])
def test_table_kinds_give_the_same_columns(kind):
    ppl, tokens, cid = _data()
    table = pa.table({"ppl": ppl, "n_scored": tokens, "chunk_id": cid, "text": ["x"] * N})
    data = {
        "arrow_table": table,
        "record_batch": table.to_batches()[0],
        "dataset": datasets.Dataset(table),
        "polars": pl.from_arrow(table),
        "pandas": table.to_pandas(),
        "mapping": {"ppl": ppl, "n_scored": tokens, "chunk_id": cid},
    }[kind]
    cols = _columns.resolve(data, chunk_id_column="chunk_id")
    assert cols.n_rows == N and cols.rows is None
    np.testing.assert_array_equal(_values(cols.ppl), ppl)
    np.testing.assert_array_equal(_values(cols.tokens), tokens)
    np.testing.assert_array_equal(_values(cols.chunk_id).astype(np.uint64), cid)
    assert pa.types.is_float64(cols.ppl.type) and pa.types.is_integer(cols.tokens.type)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a, id="numpy"),
        pytest.param(lambda a: pa.array(a), id="pyarrow_array"),
        pytest.param(lambda a: pa.chunked_array([a[:10], a[10:]]), id="pyarrow_chunked"),
        pytest.param(lambda a: pl.Series("x", a), id="polars_series"),
        pytest.param(lambda a: pd.Series(a), id="pandas_series"),
        pytest.param(lambda a: a.tolist(), id="list"),
    ],
)
def test_array_kinds(make):
    ppl, tokens, _ = _data()
    cols = _columns.resolve_arrays(make(ppl), make(tokens))
    np.testing.assert_array_equal(_values(cols.ppl), ppl)
    np.testing.assert_array_equal(_values(cols.tokens), tokens)


def test_python_int_list_is_a_valid_ppl_list():
    cols = _columns.resolve_arrays([10, 20, 30], [5, 5, 5])
    assert cols.ppl.type == pa.float64()


@pytest.mark.parametrize("how", ["select", "shuffle", "filter", "shuffle_then_filter"])
def test_dataset_indices_mapping_is_passed_not_materialised(how):
    ppl, tokens, cid = _data()
    ds = datasets.Dataset.from_dict({"ppl": ppl, "n_scored": tokens, "chunk_id": cid})
    if how == "select":
        view = ds.select([5, 3, 60, 7])  # a row selected twice repeats its chunk id: refused (issue 25)
    elif how == "shuffle":
        view = ds.shuffle(seed=1)
    elif how == "filter":
        view = ds.filter(lambda r: r["ppl"] > 7.0)
    else:
        view = ds.shuffle(seed=2).filter(lambda r: r["n_scored"] % 2 == 0)
    assert view._indices is not None
    cols = _columns.resolve(view, chunk_id_column="chunk_id")
    # the physical table is handed over as is: same buffers as ds.data, mapping as `rows`
    assert cols.rows is not None and cols.n_rows == len(view)
    assert _address(cols.ppl) == _address(view.data.table.column("ppl"))
    assert view._indices is not None  # not flattened
    flat = view.flatten_indices()
    np.testing.assert_array_equal(_logical(cols, cols.ppl), np.asarray(flat["ppl"]))
    np.testing.assert_array_equal(_logical(cols, cols.tokens), np.asarray(flat["n_scored"]))
    np.testing.assert_array_equal(_logical(cols, cols.chunk_id), np.asarray(flat["chunk_id"]))


def test_zero_copy_numpy_polars_arrow_dataset():
    ppl, tokens, _ = _data(10_000)
    cols = _columns.resolve_arrays(ppl, tokens)
    assert _address(cols.ppl) == ppl.ctypes.data and _address(cols.tokens) == tokens.ctypes.data
    s = pl.Series("p", ppl)
    assert _address(_columns.as_array(s, "p")) == _address(s.to_arrow())
    arr = pa.array(ppl)
    assert _columns.as_array(arr, "p") is arr
    ds = datasets.Dataset.from_dict({"ppl": ppl, "n_scored": tokens})
    before = _address(ds.data.table.column("ppl"))
    cols = _columns.resolve(ds)
    assert _address(cols.ppl) == before == _address(ds.data.table.column("ppl"))


def test_float32_ppl_is_widened_and_chunk_id_int64_kept():
    ppl, tokens, _ = _data()
    cols = _columns.resolve(
        pa.table({"ppl": ppl.astype(np.float32), "n_scored": tokens, "chunk_id": np.arange(N)}),
        chunk_id_column="chunk_id",
    )
    assert cols.ppl.type == pa.float64()
    assert pa.types.is_integer(cols.chunk_id.type)


def test_default_chunk_id_column_is_optional_but_an_explicit_one_is_not():
    ppl, tokens, _ = _data()
    table = pa.table({"ppl": ppl, "n_scored": tokens})
    assert _columns.resolve(table, chunk_id_column="chunk_id").chunk_id is None
    assert _columns.resolve(table, chunk_id_column=None).chunk_id is None
    with pytest.raises(MissingColumnError, match="'doc_chunk'.*available columns: 'ppl', 'n_scored'"):
        _columns.resolve(table, chunk_id_column="doc_chunk")


def test_missing_column_names_it_and_lists_the_available_ones():
    ppl, tokens, _ = _data()
    for data in (pa.table({"ppl": ppl, "tok": tokens}), datasets.Dataset.from_dict({"ppl": ppl, "tok": tokens}),
                 pl.DataFrame({"ppl": ppl, "tok": tokens}), pd.DataFrame({"ppl": ppl, "tok": tokens})):
        with pytest.raises(MissingColumnError, match=r"'n_scored'.*available columns: 'ppl', 'tok'"):
            _columns.resolve(data)
    with pytest.raises(MissingColumnError, match="'perplexity'"):
        _columns.resolve(pa.table({"ppl": ppl, "n_scored": tokens}), ppl_column="perplexity")


@pytest.mark.parametrize(
    "ppl,tokens,match",
    [
        (["a", "b"], [1, 2], "column 'ppl'.*floating-point"),
        (np.array([1, 2], dtype=np.int64), [1, 2], "column 'ppl'.*floating-point.*int64"),
        ([1.0, 2.0], np.array([1.5, 2.0]), "column 'n_scored'.*integer.*double"),
        ([1.0, 2.0], [True, False], "column 'n_scored'.*integer.*bool"),
    ],
)
def test_wrong_dtype_names_the_column_and_the_expected_type(ppl, tokens, match):
    table = pa.table({"ppl": pa.array(ppl), "n_scored": pa.array(tokens)})
    with pytest.raises(InvalidInputError, match=match):
        _columns.resolve(table)


def test_arrays_errors():
    with pytest.raises(LengthMismatchError, match="ppl=3, tokens=2"):
        _columns.resolve_arrays([1.0, 2.0, 3.0], [1, 2])
    with pytest.raises(EmptyInputError):
        _columns.resolve_arrays(np.array([], dtype=np.float64), np.array([], dtype=np.int64))
    with pytest.raises(InvalidInputError, match="1-D"):
        _columns.resolve_arrays(np.ones((2, 2)), np.ones((2, 2), dtype=np.int64))
    with pytest.raises(InvalidInputError, match="numpy dtype <U1"):
        _columns.resolve_arrays(np.array(["a"]), np.array([1]))
    with pytest.raises(InvalidInputError, match="expected an array"):
        _columns.resolve_arrays(3.0, [1])
    with pytest.raises(InvalidInputError, match="unsupported input"):
        _columns.resolve(42)


def test_nulls_are_an_error_on_used_rows_only():
    table = pa.table({"ppl": pa.array([1.5, None, 2.5]), "n_scored": pa.array([3, 4, 5])})
    with pytest.raises(InvalidInputError, match=r"column 'ppl' has 1 null value\(s\) \(first at row 1\)"):
        _columns.resolve(table)
    # a dataset view that filters the null row away is fine
    ds = datasets.Dataset(table).select([0, 2])
    cols = _columns.resolve(ds)
    np.testing.assert_array_equal(_logical(cols, cols.ppl), [1.5, 2.5])


def test_dataset_dict_and_iterable_dataset_are_refused_clearly():
    ds = datasets.Dataset.from_dict({"ppl": [1.0], "n_scored": [1]})
    with pytest.raises(InvalidInputError, match=r"DatasetDict with splits \['train'\]"):
        _columns.resolve(datasets.DatasetDict({"train": ds}))
    with pytest.raises(InvalidInputError, match="IterableDataset"):
        _columns.resolve(ds.to_iterable_dataset())


def test_empty_dataset_view():
    ds = datasets.Dataset.from_dict({"ppl": [1.0, 2.0], "n_scored": [1, 1]}).select([])
    with pytest.raises(EmptyInputError, match="no rows"):
        _columns.resolve(ds)


def test_selection_kinds():
    assert _columns.as_selection([0, 2], 3).type == pa.uint64()
    assert _columns.as_selection(np.array([True, False, True]), 3).type == pa.bool_()
    assert len(_columns.as_selection([], 3)) == 0
    assert _columns.as_selection(slice(0, 2), 3).to_pylist() == [0, 1]
    with pytest.raises(LengthMismatchError, match="one value per row"):
        _columns.as_selection(np.array([True, False]), 3)
    with pytest.raises(InvalidInputError, match="non-negative"):
        _columns.as_selection([0, -1], 3)
    with pytest.raises(InvalidInputError, match="integers"):
        _columns.as_selection([0.5], 3)


def test_repeated_integer_ids_found_by_a_sort_as_by_arrows_hash_count():
    """The sort-based check (integer ids: 9 bytes an id instead of ~105 for the hash count) gives the hash
    count's answer: how many distinct values repeat, the first repeated one in row order, its count."""
    from pplaw._columns import _repeats_hashed, _repeats_sorted

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 50))
        a = rng.integers(0, int(rng.integers(1, 70)), n).astype(rng.choice([np.int8, np.int32, np.int64, np.uint64]))
        for col in (pa.array(a), pa.chunked_array([a[: n // 2], a[n // 2:]])):
            assert _repeats_sorted(col) == _repeats_hashed(col)
    ids = pa.array(np.array([5, 3, 9, 3, 5, 5, 1], dtype=np.uint64))
    assert _repeats_sorted(ids) == (2, 5, 3)  # 5 comes first in row order, 3 times
    assert _repeats_sorted(pa.array(np.arange(10, dtype=np.int64))) is None  # ascending: one pass, no sort
    assert _repeats_sorted(pa.array(np.arange(10, dtype=np.int64)[::-1].copy())) is None
    import pplaw

    with pytest.raises(InvalidInputError, match=r"has 2 repeated value\(s\), e.g. 5 3 times"):
        pplaw.sample_subset(pa.table({"ppl": np.full(7, 2.0), "n_scored": np.full(7, 8), "chunk_id": ids}),
                            token_budget=8)
