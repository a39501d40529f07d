"""pplaw.stream with executor="ray" on a real local Ray cluster: the same landscape and the same subsets as
in this process (issue 27)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pplaw._core", reason="the Rust extension is not built (run `make build`)")
ray = pytest.importorskip("ray")

from pplaw.stream import dos_dir, sample_dir, scan_dir  # noqa: E402

from test_streaming import corpus, write_shards  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_tasks_give_the_same_results(ray_cluster, tmp_path):
    table = corpus(30_000, seed=5)
    d = write_shards(table, tmp_path / "chunks", k=5, row_group=2500)
    local, remote = scan_dir(d), scan_dir(d, executor="ray")
    assert local.grid.to_json() == remote.grid.to_json() and local.counts == remote.counts
    budget = int(np.asarray(table.column("n_scored")).sum() * 0.25)
    for kw in ({"quantile_window": (0.3, 0.8)}, {"target_mean": 14.0, "target_std": 6.0, "exact_limit": 0}):
        a = sample_dir(local, token_budget=budget, seed=2, **kw)
        b = sample_dir(remote, token_budget=budget, seed=2, executor="ray", out=tmp_path / "r.parquet",
                       keep_rows=True, **kw)
        np.testing.assert_array_equal(a.rows, b.rows)
        assert a.stats == b.stats
    a = dos_dir(local, token_budget=budget, target_mean=14.0, target_std=6.0, exact_limit=0)
    b = dos_dir(remote, token_budget=budget, target_mean=14.0, target_std=6.0, exact_limit=0, executor="ray")
    np.testing.assert_array_equal(a.rows, b.rows)


def test_the_loops_select_stage_on_ray_draws_the_same_subsets(ray_cluster, tmp_path):
    import pyarrow.parquet as pq

    from pplaw.pipeline.recipe import load_recipe
    from pplaw.pipeline.select import select_subsets

    table = corpus(20_000, seed=6)
    d = write_shards(table, tmp_path / "chunks", k=3)
    budget = int(np.asarray(table.column("n_scored")).sum() * 0.2)
    files = {}
    for ex in ("memory", "ray"):
        recipe = load_recipe(overrides=[("baselines.methods", "[random]"), ("select.seeds", "[1]"),
                                        ("select.executor", ex)])
        items = select_subsets(table, recipe, {"mu": 14.0, "sigma": 6.0, "band": [0.2, 0.6]}, budget,
                               tmp_path / ex, scored_dir=d)
        files[ex] = [pq.read_table(tmp_path / ex / i["indices"]) for i in items]
    assert all(a.equals(b) for a, b in zip(files["memory"], files["ray"]))
