"""pplaw.ray.score on a local Ray instance equals the single-process scorer."""

from __future__ import annotations

import numpy as np
import pytest

from pplaw.scoring import PerplexityScorer


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="needs the `pplaw[ray]` extra (ray[data])")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_equals_plain(ray_local, llama_path, chunk_rows):
    import pplaw.ray

    items = [{"chunk_id": i, "input_ids": np.asarray(r, dtype=np.int32)} for i, r in enumerate(chunk_rows)]
    ds = ray_local.data.from_items(items, override_num_blocks=4)
    scored = pplaw.ray.score(ds, str(llama_path), concurrency=2, num_cpus=1, batch_size=8,
                             max_tokens_per_batch=512)
    rows = sorted(scored.take_all(), key=lambda r: r["chunk_id"])
    expect = PerplexityScorer(str(llama_path)).score_token_ids(chunk_rows)
    assert [r["chunk_id"] for r in rows] == list(range(len(chunk_rows)))
    np.testing.assert_allclose([r["nll_sum"] for r in rows], expect["nll_sum"], rtol=1e-6)
    np.testing.assert_array_equal([r["n_scored"] for r in rows], expect["n_scored"])


def test_ray_missing_column_is_clear(ray_local, llama_path):
    import pplaw.ray
    from pplaw.exceptions import MissingColumnError

    ds = ray_local.data.from_items([{"body": "x"}])
    with pytest.raises(MissingColumnError, match=r"'input_ids' nor the text column 'text'.*\['body'\]"):
        pplaw.ray.score(ds, str(llama_path))


def test_missing_ray_names_the_extra(monkeypatch):
    import sys

    import pplaw.ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'pplaw\[ray\]'"):
        pplaw.ray.score(object(), "model")
