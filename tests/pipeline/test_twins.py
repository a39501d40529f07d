"""Identical runs are trained once: the final comparison's DOS and best-sweep runs when DOS takes the best sweep
regime (same options, same subset rows, same seed) share one training; anything different is its own run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pplaw import runs
from pplaw.pipeline import sweep as SW


def _indices(path, rows):
    pq.write_table(pa.table({"row": np.asarray(rows, dtype=np.int64)}), path)
    return str(path)


def _spec(tmp_path, rid, rows, seed=0):
    d = tmp_path / "final" / rid
    d.parent.mkdir(parents=True, exist_ok=True)
    idx = _indices(tmp_path / f"{rid}.parquet", rows)
    cpt = {"run_id": rid, "output_dir": str(d), "domain_indices": idx, "seed": seed, "budget_tokens": 100}
    return SW.RunSpec(rid, d, cpt, {"method": rid.split("_s")[0], "seed": seed}, root=tmp_path)


def _fake_train(calls):
    def train(spec, launcher="inprocess", accelerate_config=None, in_worker=False):
        SW.prepare_dir(spec)
        calls.append(spec.id)
        loss = 1.0 + 0.1 * len(calls)
        runs.write_json_atomic(spec.dir / runs.RECORD_NAME, {"schema_version": runs.SCHEMA_VERSION, "run_id": spec.id,
                                                             "status": "evaluated", "eval": {"domain_loss": loss}})
        return {"id": spec.id, "status": "ok"}
    return train


def test_identical_runs_train_once_and_both_report_the_result(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(SW, "train_one", _fake_train(calls))
    specs = [_spec(tmp_path, "dos_s0", [3, 1, 2]), _spec(tmp_path, "best_sweep_s0", [3, 1, 2]),
             _spec(tmp_path, "random_s0", [1, 2, 3]),  # same rows, another order: another run
             _spec(tmp_path, "dos_s1", [3, 1, 2], seed=1)]  # another seed: another run
    res = SW.run_all(specs, workers=1, threads=1)
    assert calls == ["dos_s0", "random_s0", "dos_s1"]
    assert res["best_sweep_s0"] == {"id": "best_sweep_s0", "status": "ok", "twin_of": "dos_s0"}
    assert SW.is_finished(specs[1])
    twin = json.loads((specs[1].dir / SW.TWIN).read_text())
    assert twin["twin_of"] == "dos_s0"
    rec = runs.read_record(specs[1].dir)
    assert {**rec, "run_id": "dos_s0"} == {**runs.read_record(specs[0].dir), "twin_of": "dos_s0"}
    # a re-run trains nothing; a new twin of a finished run adopts it without training
    late = _spec(tmp_path, "lowest_ppl_s0", [3, 1, 2])
    res = SW.run_all(specs + [late], workers=1, threads=1)
    assert calls == ["dos_s0", "random_s0", "dos_s1"] and res["lowest_ppl_s0"]["twin_of"] == "dos_s0"
    assert all(res[s.id]["status"] == "skipped" for s in specs)


def test_a_twin_of_a_failed_run_fails_with_the_reason(tmp_path, monkeypatch):
    def fail(spec, launcher="inprocess", accelerate_config=None, in_worker=False):
        SW.prepare_dir(spec)
        return SW.record_failure(spec, "RuntimeError", "out of memory")

    monkeypatch.setattr(SW, "train_one", fail)
    specs = [_spec(tmp_path, "dos_s0", [0, 1]), _spec(tmp_path, "best_sweep_s0", [0, 1])]
    res = SW.run_all(specs, workers=1, threads=1)
    assert res["dos_s0"]["status"] == "failed"
    assert res["best_sweep_s0"]["status"] == "failed" and "identical run dos_s0" in res["best_sweep_s0"]["error"]
    info = json.loads((specs[1].dir / SW.FAILED).read_text())
    assert info["error_type"] == "RuntimeError" and "out of memory" in info["error"]
    assert not SW.is_finished(specs[1])
