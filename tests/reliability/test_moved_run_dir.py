"""Issue 14, item 8: a moved or copied run directory keeps its keys: nothing is recomputed."""

from __future__ import annotations

import shutil

from pplaw.train.cpt import _check_same_run
from pplaw.pipeline.recipe import digest, located
from pplaw.pipeline.stages import Stages
from pplaw.pipeline.sweep import RunSpec, is_finished, prepare_dir


def test_paths_inside_the_run_directory_count_relative_to_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    assert located({"p": str(a / "world" / "m"), "q": [str(a)], "r": "/other/x", "s": str(tmp_path / "ab")}, a) == \
        {"p": "<run>/world/m", "q": ["<run>"], "r": "/other/x", "s": str(tmp_path / "ab")}
    assert digest({"p": str(a / "x")}, a) == digest({"p": str(b / "x")}, b)
    assert digest({"p": str(a / "x")}, a) != digest({"p": str(a / "y")}, a)


def test_a_moved_run_directory_skips_its_finished_stages(tmp_path):
    calls = []

    def fn(d):
        calls.append(d)
        return {"n": len(calls)}

    a = tmp_path / "a"
    Stages(a, log=lambda m: None).run("s", {"model": str(a / "world" / "model")}, fn)
    Stages(a, log=lambda m: None).run("t", {"data": str(a / "score" / "chunks")}, fn, mode="inplace")
    b = tmp_path / "moved" / "b"
    b.parent.mkdir()
    shutil.move(a, b)
    st = Stages(b, log=lambda m: None)
    assert st.run("s", {"model": str(b / "world" / "model")}, fn) == {"n": 1}
    assert st.run("t", {"data": str(b / "score" / "chunks")}, fn, mode="inplace") == {"n": 2}
    assert len(calls) == 2 and all(r.cached for r in st.results)


def test_a_stage_key_of_absolute_paths_is_not_taken_for_the_relative_one(tmp_path):
    """Keys count paths inside the run directory relative to it, and only that key means "up to date"."""
    st = Stages(tmp_path, log=lambda m: None)
    st.run("s", {"p": str(tmp_path / "x")}, lambda d: {"v": 1})
    import json

    m = json.loads((tmp_path / "s" / "stage.json").read_text())
    m["key"] = digest({"p": str(tmp_path / "x")})  # the same inputs keyed with absolute paths
    (tmp_path / "s" / "stage.json").write_text(json.dumps(m))
    assert st.run("s", {"p": str(tmp_path / "x")}, lambda d: {"v": 2}) == {"v": 2}


def test_a_moved_sweep_run_is_still_finished(tmp_path):
    a = tmp_path / "a"
    spec = RunSpec("p0", a / "sweep" / "p0", {"domain_data": str(a / "score" / "chunks"), "lr": 1e-3}, {"D": 5},
                   root=a)
    prepare_dir(spec)
    from pplaw import runs

    rec = runs.new_record("p0", spec.dir, {})
    rec["status"] = "evaluated"
    runs.save_record(spec.dir, rec)
    assert is_finished(spec)
    b = tmp_path / "b"
    shutil.move(a, b)
    moved = RunSpec("p0", b / "sweep" / "p0", {"domain_data": str(b / "score" / "chunks"), "lr": 1e-3}, {"D": 5},
                    root=b)
    assert moved.key == spec.key and is_finished(moved)


def test_resuming_a_moved_unfinished_run_is_not_refused(tmp_path):
    old = {"cpt": {"domain_data": "/x/run1/score/chunks", "domain_indices": "/x/run1/plan/points/p0.parquet",
                   "budget_tokens": 10}, "training_args": {"learning_rate": 1e-3}}
    new = {"cpt": {"domain_data": str(tmp_path / "run2" / "score" / "chunks"),
                   "domain_indices": str(tmp_path / "run2" / "plan" / "points" / "p0.parquet"), "budget_tokens": 10},
           "training_args": {"learning_rate": 1e-3}}
    _check_same_run(old, new, tmp_path / "run2" / "sweep" / "p0", "/x/run1/sweep/p0")
    import pytest

    from pplaw.exceptions import ConfigError

    other = {**new, "cpt": {**new["cpt"], "domain_data": str(tmp_path / "other" / "chunks")}}
    with pytest.raises(ConfigError, match="domain_data"):
        _check_same_run(old, other, tmp_path / "run2" / "sweep" / "p0", "/x/run1/sweep/p0")
