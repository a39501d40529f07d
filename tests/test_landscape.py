"""pplaw.Landscape: exact edges/bins/statistics vs a numpy brute force, every input kind, the datasets
indices mapping, zero-copy, shard merging, persistence, the plot and every bad-input error."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import math

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pplaw._core", reason="the Rust extension is not built (run `make build`)")

from pplaw import Landscape  # noqa: E402
from pplaw.exceptions import (  # noqa: E402
    EmptyInputError,
    InvalidInputError,
    LengthMismatchError,
    MissingColumnError,
    SerializationError,
)

datasets = pytest.importorskip("datasets")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")


def corpus(n, *, equal=False, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    ppl = np.maximum(1.0, np.exp(rng.normal(2.5, 0.8, n)))  # a PPL is >= 1 (issue 25)
    if ties:
        ppl[::5] = np.maximum(np.round(ppl[::5]), 1.0)  # repeated values exercise the tie rules
    tokens = np.full(n, 512, dtype=np.int64) if equal else rng.integers(1, 2048, n).astype(np.int64)
    return ppl, tokens


def brute_edges(ppl, tokens, n_bins):
    """Token-weighted quantiles by argsort + cumsum (the definition in pplaw.landscape)."""
    order = np.argsort(ppl, kind="stable")
    s, c = ppl[order], np.cumsum(tokens[order])
    total = int(c[-1])
    return np.array([s[np.searchsorted(c * n_bins, k * total, side="left")] for k in range(n_bins + 1)])


def brute_bins(ppl, tokens, edges):
    n_bins = len(edges) - 1
    k = np.clip(np.searchsorted(edges, ppl, side="right") - 1, 0, n_bins - 1)
    weighted = tokens.min() != tokens.max()
    w = tokens.astype(float) if weighted else np.ones(len(ppl))
    rows = []
    for b in range(n_bins):
        m = k == b
        if not m.any():
            rows.append((0, 0, *[math.nan] * 6))
            continue
        stats = []
        for x in (ppl[m], np.log(ppl[m])):
            mean = np.average(x, weights=w[m])
            stats += [mean, np.average((x - mean) ** 2, weights=w[m])]
        rows.append((int(m.sum()), int(tokens[m].sum()), ppl[m].min(), ppl[m].max(), *stats))
    return k, np.array(rows, dtype=float), weighted


@pytest.mark.parametrize("n,n_bins,equal", [(1, 4, True), (97, 10, False), (5000, 100, True), (20000, 37, False)])
def test_edges_bins_and_stats_match_numpy_brute_force(n, n_bins, equal):
    ppl, tokens = corpus(n, equal=equal, seed=n)
    land = Landscape.from_arrays(ppl, tokens, n_bins=n_bins)
    edges = brute_edges(ppl, tokens, n_bins)
    np.testing.assert_array_equal(land.quantiles, edges)
    k, expect, weighted = brute_bins(ppl, tokens, edges)
    assert land.weighted == weighted
    np.testing.assert_array_equal(land.bin_index, k)
    bins = land.bins
    assert bins.column_names == ["bin", "ppl_lo", "ppl_hi", "count", "tokens", "ppl_min", "ppl_max", "ppl_mean",
                                 "ppl_var", "log_ppl_mean", "log_ppl_var"]
    got = np.column_stack([bins.column(c).to_numpy(zero_copy_only=False).astype(float) for c in
                           ("count", "tokens", "ppl_min", "ppl_max", "ppl_mean", "ppl_var", "log_ppl_mean",
                            "log_ppl_var")])
    np.testing.assert_array_equal(got[:, :4], expect[:, :4])
    np.testing.assert_allclose(got[:, 4:], expect[:, 4:], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(bins.column("ppl_lo").to_numpy(), edges[:-1])
    np.testing.assert_array_equal(bins.column("ppl_hi").to_numpy(), edges[1:])
    # overall statistics under the same weighting rule
    w = tokens.astype(float) if weighted else np.ones(n)
    mean = np.average(ppl, weights=w)
    assert land.n_chunks == n and land.n_tokens == int(tokens.sum())
    assert land.mean == pytest.approx(mean, rel=1e-12)
    assert land.std == pytest.approx(math.sqrt(np.average((ppl - mean) ** 2, weights=w)), rel=1e-9, abs=1e-12)
    lmean = np.average(np.log(ppl), weights=w)
    assert land.log_mean == pytest.approx(lmean, rel=1e-12)
    assert land.log_std == pytest.approx(math.sqrt(np.average((np.log(ppl) - lmean) ** 2, weights=w)),
                                         rel=1e-9, abs=1e-12)


def _reference(n=3000):
    ppl, tokens = corpus(n, seed=3)
    return ppl, tokens, np.arange(n, dtype=np.uint64) * 7 + 11


@pytest.mark.parametrize("kind", ["pyarrow_arrays", "chunked", "table", "dataset", "numpy", "polars_series",
                                  "polars_frame", "pandas_frame", "pandas_series", "tuple"])
def test_every_input_kind_gives_the_same_landscape(kind):
    ppl, tokens, _ = _reference()
    ref = Landscape.from_arrays(ppl, tokens, n_bins=20)
    table = pa.table({"ppl": ppl, "n_scored": tokens})
    if kind == "pyarrow_arrays":
        land = Landscape.from_arrays(pa.array(ppl), pa.array(tokens), n_bins=20)
    elif kind == "chunked":
        land = Landscape.from_arrays(pa.chunked_array([ppl[:1000], ppl[1000:]]),
                                     pa.chunked_array([tokens[:77], tokens[77:]]), n_bins=20)
    elif kind == "table":
        land = Landscape.from_arrow(table, n_bins=20)
    elif kind == "dataset":
        land = Landscape.from_dataset(datasets.Dataset(table), n_bins=20)
    elif kind == "numpy":
        land = Landscape.from_arrays(ppl, tokens.astype(np.uint16), n_bins=20)
    elif kind == "polars_series":
        land = Landscape.from_arrays(pl.Series(ppl), pl.Series(tokens), n_bins=20)
    elif kind == "polars_frame":
        land = Landscape.from_arrow(pl.from_arrow(table), n_bins=20)
    elif kind == "pandas_frame":
        land = Landscape.from_dataset(table.to_pandas(), n_bins=20)
    elif kind == "pandas_series":
        land = Landscape.from_arrays(pd.Series(ppl), pd.Series(tokens), n_bins=20)
    else:
        land = Landscape.from_arrow((pa.array(ppl), pa.array(tokens)), n_bins=20)
    np.testing.assert_array_equal(land.quantiles, ref.quantiles)
    np.testing.assert_array_equal(land.bin_index, ref.bin_index)
    assert land.bins.equals(ref.bins)
    assert land.summary == ref.summary


@pytest.mark.parametrize("how", ["select", "shuffle", "filter", "shuffle_select_filter"])
def test_dataset_views_match_a_flattened_copy(how):
    ppl, tokens, cid = _reference()
    ds = datasets.Dataset.from_dict({"ppl": ppl, "n_scored": tokens, "chunk_id": cid, "text": ["t"] * len(ppl)})
    if how == "select":
        view = ds.select(np.arange(0, len(ds), 3)[::-1])
    elif how == "shuffle":
        view = ds.shuffle(seed=4)
    elif how == "filter":
        view = ds.filter(lambda r: r["ppl"] < 20, keep_in_memory=True)
    else:
        view = ds.shuffle(seed=5).select(range(2000)).filter(lambda r: r["n_scored"] > 300, keep_in_memory=True)
    address = view.data.table.column("ppl").chunk(0).buffers()[1].address
    land = Landscape.from_dataset(view, n_bins=16)
    assert view._indices is not None, "the view must not have been flattened"
    assert view.data.table.column("ppl").chunk(0).buffers()[1].address == address
    flat = view.flatten_indices()
    ref = Landscape.from_dataset(flat, n_bins=16)
    assert land.n_chunks == len(view)
    np.testing.assert_array_equal(land.quantiles, ref.quantiles)
    np.testing.assert_array_equal(land.bin_index, ref.bin_index)  # logical row order
    assert land.bins.equals(ref.bins)


def _peak_rss_delta(fn):
    """Run fn and return (result, peak RSS growth in bytes) using the kernel's high-water mark."""
    def hwm():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to the current RSS
        f.write("5")
    before = rss()
    out = fn()
    return out, hwm() - before


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to measure peak RSS")
def test_no_copy_of_the_ppl_column_rss():
    n = 4_000_000  # 32 MB of float64 PPL
    rng = np.random.default_rng(0)
    ppl = np.maximum(1.0, np.exp(rng.normal(2.5, 0.8, n)))  # a PPL is >= 1 (issue 25)
    tokens = np.full(n, 512, dtype=np.int32)
    ds_table = pa.table({"ppl": ppl, "n_scored": tokens})
    Landscape.from_arrays(ppl[:1000], tokens[:1000])  # warm up thread pools and allocator
    land, delta = _peak_rss_delta(lambda: Landscape.from_arrow(ds_table, n_bins=100))
    # The landscape keeps a uint32 bin index per chunk (4 bytes/row = 16 MB); a copy of the PPL column
    # would add another 32 MB on top.
    column = ppl.nbytes
    assert delta < 0.5 * column + n * 4 + 8 * 2**20, f"peak RSS grew by {delta / 2**20:.1f} MiB"
    assert land.n_chunks == n


def test_merge_of_shards_equals_the_whole_within_one_grid_cell():
    ppl, tokens = corpus(30000, seed=9)
    whole = Landscape.from_arrays(ppl, tokens, n_bins=50)
    cuts = [0, 7000, 19000, 30000]
    shards = [Landscape.from_arrays(ppl[a:b], tokens[a:b], n_bins=50) for a, b in zip(cuts, cuts[1:])]
    ab_c = shards[0].merge(shards[1]).merge(shards[2])
    c_ab = shards[2].merge(shards[0].merge(shards[1]))
    assert not ab_c.exact
    assert ab_c.to_json() == c_ab.to_json()  # exact and order-independent
    assert ab_c.n_chunks == whole.n_chunks and ab_c.n_tokens == whole.n_tokens
    for name in ("mean", "std", "log_mean", "log_std"):
        assert getattr(ab_c, name) == pytest.approx(getattr(whole, name), rel=1e-9)
    res = whole.grid_resolution
    assert res["quantile_rel_error"] == pytest.approx(math.expm1(res["cell_width"] / 2))
    one_cell = math.expm1(res["cell_width"])
    np.testing.assert_array_less(np.abs(ab_c.quantiles / whole.quantiles - 1), one_cell + 1e-12)
    # bins of the merged landscape: totals exact, token mass per bin within the cells straddling edges
    bins = ab_c.bins
    assert int(np.sum(bins.column("count").to_numpy())) == whole.n_chunks
    assert int(np.sum(bins.column("tokens").to_numpy())) == whole.n_tokens
    np.testing.assert_allclose(bins.column("ppl_mean").to_numpy(), whole.bins.column("ppl_mean").to_numpy(),
                               rtol=2 * one_cell)
    with pytest.raises(InvalidInputError, match="no per-chunk bin index"):
        ab_c.bin_index


def test_merge_needs_the_same_grid():
    ppl, tokens = corpus(500)
    a = Landscape.from_arrays(ppl, tokens)
    b = Landscape.from_arrays(ppl, tokens, grid={"log_lo": 0.0, "log_hi": 10.0, "n_cells": 1000})
    with pytest.raises(InvalidInputError, match="grid"):
        a.merge(b)
    with pytest.raises(InvalidInputError, match="expected a Landscape"):
        a.merge(42)


def test_save_load_round_trip(tmp_path):
    ppl, tokens = corpus(2000)
    land = Landscape.from_arrays(ppl, tokens, n_bins=25)
    back = Landscape.load(land.save(tmp_path / "l.json"))
    np.testing.assert_array_equal(back.quantiles, land.quantiles)
    assert back.bins.equals(land.bins) and back.summary == land.summary
    with pytest.raises(InvalidInputError, match="saved without per-chunk bin indices"):
        back.bin_index
    full = Landscape.load(land.save(tmp_path / "full.json", include_bin_index=True))
    np.testing.assert_array_equal(full.bin_index, land.bin_index)
    merged = land.merge(Landscape.from_arrays(ppl[:10], tokens[:10], n_bins=25))
    again = Landscape.load(merged.save(tmp_path / "m.json"))
    assert again.to_json() == merged.to_json()
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize(
    "content,match",
    [
        ("not json{", "invalid JSON"),
        ("[1, 2]", "not a pplaw landscape"),
        ('{"format": "pplaw.Landscape", "version": 99}', "version 99"),
        ('{"format": "pplaw.Landscape", "version": 1, "exact": true, "landscape": {"format": "x"}}', "bad.json"),
    ],
)
def test_load_bad_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SerializationError, match=match) as err:
        Landscape.load(path)
    assert "bad.json" in str(err.value)


def test_load_truncated_and_missing(tmp_path):
    ppl, tokens = corpus(100)
    text = Landscape.from_arrays(ppl, tokens).to_json()
    (tmp_path / "t.json").write_text(text[: len(text) // 2])
    with pytest.raises(SerializationError, match="t.json"):
        Landscape.load(tmp_path / "t.json")
    with pytest.raises(SerializationError, match="does not exist"):
        Landscape.load(tmp_path / "nope.json")


def test_plot_writes_a_valid_png(tmp_path):
    ppl, tokens = corpus(5000)
    land = Landscape.from_arrays(ppl, tokens)
    path = land.plot(tmp_path / "landscape.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800 and height > 600
    # merged landscapes and a single-value corpus plot too
    land.merge(land).plot(tmp_path / "m.png")
    Landscape.from_arrays([5.0, 5.0], [3, 3], n_bins=3).plot(tmp_path / "one.png")
    assert (tmp_path / "m.png").stat().st_size > 1000 and (tmp_path / "one.png").stat().st_size > 1000


def test_repr_is_informative():
    land = Landscape.from_arrays([2.0, 4.0, 8.0], [10, 10, 10], n_bins=2)
    text = repr(land)
    assert "3 chunks" in text and "30 tokens" in text and "2 bins" in text and "exact" in text
    assert "unweighted" in text and "mean=4.667" in text


@pytest.mark.parametrize(
    "ppl,tokens,error,match",
    [
        ([1.0, float("nan")], [1, 1], InvalidInputError, r"'ppl'.*row 1.*NaN"),
        ([1.0, float("inf")], [1, 1], InvalidInputError, r"'ppl'.*row 1.*inf"),
        ([1.0, 0.0], [1, 1], InvalidInputError, r"'ppl'.*> 0.*row 1"),
        ([1.0, -2.0], [1, 1], InvalidInputError, r"'ppl'.*row 1.*-2"),
        ([1.0, 2.0], [1, 0], InvalidInputError, r"'tokens'.*> 0.*row 1"),
        ([1.0, 2.0], [1, -4], InvalidInputError, r"'tokens'.*-4"),
        ([1.0, 2.0, 3.0], [1, 1], LengthMismatchError, "ppl=3, tokens=2"),
        ([], [], EmptyInputError, "no rows"),
    ],
)
def test_bad_input_errors(ppl, tokens, error, match):
    with pytest.raises(error, match=match):
        Landscape.from_arrays(np.array(ppl, dtype=np.float64), np.array(tokens, dtype=np.int64))


def test_bad_input_in_a_table_names_the_users_column():
    table = pa.table({"perplexity": [1.0, float("nan")], "len": [3, 3]})
    with pytest.raises(InvalidInputError, match=r"'perplexity'.*row 1"):
        Landscape.from_arrow(table, ppl_column="perplexity", tokens_column="len")
    table = pa.table({"perplexity": [1.0, 2.0], "len": [3, 0]})
    with pytest.raises(InvalidInputError, match=r"'len'.*row 1"):
        Landscape.from_arrow(table, ppl_column="perplexity", tokens_column="len")
    with pytest.raises(MissingColumnError, match=r"'n_scored'.*available columns: 'perplexity', 'len'"):
        Landscape.from_arrow(table, ppl_column="perplexity")
    with pytest.raises(InvalidInputError, match="n_bins"):
        Landscape.from_arrow(table, ppl_column="perplexity", tokens_column="len", n_bins=0)


def test_errors_never_abort_the_process():
    # a Rust panic must surface as a Python exception; out-of-range row mappings are a typical trigger
    with pytest.raises(InvalidInputError, match="out of range"):
        Landscape.from_arrays([1.0, 2.0], [1, 1], rows=pa.array([0, 5], type=pa.uint64()))
