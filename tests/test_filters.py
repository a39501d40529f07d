"""Filter predicates (pplaw.filters) on real datasets objects, and the selections as Dataset views."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import pplaw
from pplaw import _core
from pplaw.exceptions import InvalidInputError, MissingColumnError
from pplaw.filters import PplFilter, chunk_keys, in_band, ppl_between, quantile_ppl

datasets = pytest.importorskip("datasets")


def scored(n=4000, seed=0, equal=False):
    rng = np.random.default_rng(seed)
    ppl = np.exp(rng.normal(2.5, 0.6, n))
    tok = np.full(n, 256) if equal else rng.integers(50, 900, n)
    # chunk ids that are not the row numbers, so a test cannot pass by confusing the two
    return datasets.Dataset.from_dict({"ppl": ppl, "n_scored": tok, "chunk_id": rng.permutation(n) * 7 + 3,
                                       "text": [f"chunk {i}" for i in range(n)]})


@pytest.fixture(scope="module")
def ds():
    return scored()


def _same_rows(a, b):
    """Whether two datasets share their physical rows (the same Arrow buffers: nothing was copied)."""
    return a.data.table.column("ppl").chunk(0).buffers()[1].address == \
        b.data.table.column("ppl").chunk(0).buffers()[1].address


def _col(d, name):
    return np.asarray(d.with_format("numpy")[name])


def test_ppl_between_matches_numpy_on_a_shuffled_selected_view_with_two_processes(ds):
    view = ds.shuffle(seed=4).select(range(500, 3500))
    out = view.filter(pplaw.ppl_between(8.0, 20.0), batched=True, num_proc=2)
    ppl = _col(view, "ppl")
    want = _col(view, "chunk_id")[(ppl >= 8.0) & (ppl <= 20.0)]
    np.testing.assert_array_equal(_col(out, "chunk_id"), want)
    assert out.column_names == ds.column_names
    # open ends, data-juicer's max_ppl alone
    only_max = view.filter(ppl_between(hi=10.0), batched=True)
    assert len(only_max) == int((ppl <= 10.0).sum())


def test_every_call_form_gives_the_same_rows(ds):
    pred = ppl_between(9.0, 15.0)
    ppl = _col(ds, "ppl")
    want = int(((ppl >= 9) & (ppl <= 15)).sum())
    assert len(ds.filter(pred, batched=True)) == want
    assert len(ds.filter(pred)) == want  # one row at a time
    assert len(ds.filter(pred, batched=True, input_columns="ppl")) == want
    assert len(ds.with_format("arrow").filter(pred, batched=True)) == want
    assert len(ds.with_format("numpy").filter(pred, batched=True)) == want
    assert sum(pred(ds.to_pandas())) == want


def test_band_keeps_exactly_the_landscape_bins(ds):
    land = pplaw.Landscape.from_dataset(ds, n_bins=20)
    view = ds.shuffle(seed=1).select(range(3000))
    out = view.filter(land.band(0.35, 0.70), batched=True, num_proc=2)
    # the landscape's bin_index is in ds's row order; map each kept chunk back to its row
    row_of = {int(c): i for i, c in enumerate(_col(ds, "chunk_id"))}
    kept_bins = land.bin_index[[row_of[int(c)] for c in _col(out, "chunk_id")]]
    assert set(kept_bins.tolist()) <= set(range(7, 14))
    view_bins = land.bin_index[[row_of[int(c)] for c in _col(view, "chunk_id")]]
    assert len(out) == int(np.isin(view_bins, range(7, 14)).sum())
    # the top band is closed: the largest chunk is in, and the two halves cover the corpus
    top, bottom = ds.filter(land.band(0.5, 1.0), batched=True), ds.filter(land.band(0.0, 0.5), batched=True)
    assert len(top) + len(bottom) == len(ds) and max(_col(top, "ppl")) == max(_col(ds, "ppl"))


def test_band_is_token_weighted_and_can_be_chunk_weighted(ds):
    land = pplaw.Landscape.from_dataset(ds, n_bins=100)
    ppl, tok = _col(ds, "ppl"), _col(ds, "n_scored")
    mid = ds.filter(land.band(0.2, 0.8), batched=True)
    share = _col(mid, "n_scored").sum() / tok.sum()
    assert share == pytest.approx(0.6, abs=0.01)  # token mass, not a count of chunks
    by_chunks = ds.filter(in_band(land, 0.2, 0.8, weight="chunks"), batched=True)
    assert len(by_chunks) / len(ds) == pytest.approx(0.6, abs=0.01)
    # a quantile off the bin grid comes from the fine grid: within its resolution of the numpy reference
    order = np.argsort(ppl)
    cum = np.cumsum(tok[order]) / tok.sum()
    ref = ppl[order][np.searchsorted(cum, 0.3333)]
    assert quantile_ppl(land, 0.3333) == pytest.approx(ref, rel=5e-3)
    assert land.ppl_at(0.35) == land.quantiles[35]  # on the bin grid: the exact edge


def test_seeded_fraction_is_reproducible_and_independent_of_order(ds):
    pred = ppl_between(5.0, 40.0, keep=0.5, seed=11)
    a = set(_col(ds.filter(pred, batched=True), "chunk_id").tolist())
    b = set(_col(ds.shuffle(seed=9).filter(pred, batched=True, num_proc=2), "chunk_id").tolist())
    assert a == b
    ppl = _col(ds, "ppl")
    n_in = int(((ppl >= 5) & (ppl <= 40)).sum())
    assert 0.45 < len(a) / n_in < 0.55
    other = set(_col(ds.filter(ppl_between(5.0, 40.0, keep=0.5, seed=12), batched=True), "chunk_id").tolist())
    assert other != a
    # the draw is the documented key hash of the core
    ids = [0, 5, 2**40 + 3, 2**64 - 1]
    assert chunk_keys(11, ids).tolist() == [_core.chunk_key(11, i) for i in ids]
    with pytest.raises(MissingColumnError, match="chunk_id"):
        ds.filter(pred, batched=True, input_columns="ppl")


def test_predicates_pickle_and_fingerprint_by_their_bounds(ds):
    from datasets.fingerprint import Hasher

    pred = ppl_between(3.0, 30.0, keep=0.7, seed=2)
    clone = pickle.loads(pickle.dumps(pred))
    assert clone == pred and clone(ds[:50]) == pred(ds[:50])
    assert Hasher.hash(ppl_between(3.0, 30.0)) == Hasher.hash(ppl_between(3.0, 30.0))
    assert Hasher.hash(ppl_between(3.0, 30.0)) != Hasher.hash(ppl_between(3.0, 31.0))
    f1 = ds.filter(ppl_between(3.0, 30.0), batched=True)
    f2 = ds.filter(ppl_between(3.0, 30.0), batched=True)
    assert f1._fingerprint == f2._fingerprint
    assert "quantiles 0.1..0.9" in in_band(pplaw.Landscape.from_dataset(ds), 0.1, 0.9).describe()


def test_bad_arguments_name_themselves(ds):
    land = pplaw.Landscape.from_dataset(ds, n_bins=10)
    with pytest.raises(InvalidInputError, match="lo must be <= hi"):
        ppl_between(10, 5)
    with pytest.raises(InvalidInputError, match="give lo, hi"):
        ppl_between()
    with pytest.raises(InvalidInputError, match="keep"):
        ppl_between(1, 2, keep=0)
    with pytest.raises(InvalidInputError, match="q_lo < q_hi"):
        land.band(0.7, 0.3)
    with pytest.raises(InvalidInputError, match="weight"):
        land.band(0.1, 0.3, weight="bytes")
    with pytest.raises(MissingColumnError, match="'score'"):
        ds.filter(PplFilter(1.0, 2.0, ppl_column="score"), batched=True)


def test_selections_are_views_with_a_chained_fingerprint(ds):
    view = ds.shuffle(seed=2).select(range(3500))
    a = pplaw.select_dos(view, token_budget=200_000, target_mean=12.0, target_std=4.0, seed=1)
    b = pplaw.select_dos(view, token_budget=200_000, target_mean=12.0, target_std=4.0, seed=1)
    c = pplaw.select_dos(view, token_budget=200_000, target_mean=12.0, target_std=4.0, seed=2)
    assert isinstance(a, datasets.Dataset) and a.column_names == ds.column_names
    assert a._indices is not None and _same_rows(a, view)  # an indices mapping, the rows not copied
    assert a._fingerprint == b._fingerprint != view._fingerprint
    assert a._fingerprint != c._fingerprint
    other_parent = pplaw.select_dos(ds, token_budget=200_000, target_mean=12.0, target_std=4.0, seed=1)
    assert other_parent._fingerprint != a._fingerprint
    s = pplaw.sample_subset(view, token_budget=150_000, quantile_window=(0.2, 0.6), seed=3)
    assert s._indices is not None and _same_rows(s, view)
    assert s._fingerprint == pplaw.sample_subset(view, token_budget=150_000, quantile_window=(0.2, 0.6),
                                                 seed=3)._fingerprint
    # the view filters and maps like any dataset (the fingerprint chain goes on)
    f = s.filter(ppl_between(hi=15.0), batched=True, num_proc=2)
    assert len(f) == int((_col(s, "ppl") <= 15.0).sum()) and f._fingerprint != s._fingerprint
