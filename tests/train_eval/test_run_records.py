"""Run records: atomic JSON, schema checks, and the table `pplaw fit` reads."""

from __future__ import annotations

import json

import pytest

from pplaw import runs
from pplaw.exceptions import EmptyInputError, InvalidInputError, SerializationError


def _record(root, run_id, mu, D, R, loss, status="evaluated", acc=0.4):
    rec = runs.new_record(run_id, root / run_id, {"cpt": {"replay_ratio": R}})
    rec["status"] = status
    rec["subset"] = {"mu": mu, "sigma": mu / 4, "tokens": D, "R": R, "R_actual": R, "space": "ppl"}
    rec["training"] = {"seed": 1, "tokens_domain": D, "tokens_total": int(D / (1 - R)), "steps": 10}
    rec["model"] = {"n_params": 1000}
    rec["eval"] = {"domain": {"loss": loss, "ppl": 2.0}, "general": {"loss": loss + 1, "ppl": 3.0}}
    rec["benchmarks"] = {"tasks": {"pubmedqa_local": {"acc": acc, "acc_stderr": 0.02, "acc_norm": acc,
                                                      "acc_norm_stderr": float("nan"), "n_samples": 500}},
                         "suites": {"medical": {"tasks": ["pubmedqa_local"], "avg": acc, "acc_norm_avg": acc}}}
    rec["wall_times"] = {"train_s": 1.5}
    runs.save_record(root / run_id, rec)
    return rec


def test_records_load_into_a_table(tmp_path):
    _record(tmp_path, "b", 20.0, 1000, 0.1, 2.5)
    _record(tmp_path / "nested", "a", 10.0, 2000, 0.0, 2.0, acc=0.6)
    _record(tmp_path, "killed", 5.0, 10, 0.0, 9.0, status="training")
    df = runs.load_runs(tmp_path)
    assert list(df["run_id"]) == ["a", "b"]  # sorted; the unfinished run is left out
    for col in ("run_id", "mu", "sigma", "D", "R", "seed", "domain_loss", "general_loss", "N",
                "bench.pubmedqa_local.acc", "bench.pubmedqa_local.acc_stderr", "bench.medical.avg", "time.train_s"):
        assert col in df.columns, col
    assert df["D"].tolist() == [2000, 1000] and df["R"].tolist() == [0.0, 0.1]
    assert df["domain_loss"].tolist() == [2.0, 2.5] and df["bench.medical.avg"].tolist() == [0.6, 0.4]
    assert df["bench.pubmedqa_local.acc_norm_stderr"].isna().all()  # NaN is stored as null, read back as NaN
    assert len(runs.load_runs(tmp_path, include_incomplete=True)) == 3
    assert "NaN" not in (tmp_path / "b" / runs.RECORD_NAME).read_text()


def test_atomic_update_and_bad_records(tmp_path):
    _record(tmp_path, "r", 1.0, 1, 0.0, 1.0)
    runs.update_record(tmp_path / "r", status="evaluated", eval={"domain": {"loss": 0.5}})
    assert runs.read_record(tmp_path / "r")["eval"]["domain"]["loss"] == 0.5
    assert [p.name for p in (tmp_path / "r").iterdir()] == [runs.RECORD_NAME]  # no temp files left
    with pytest.raises(InvalidInputError, match="unknown section"):
        runs.update_record(tmp_path / "r", evals={})

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / runs.RECORD_NAME).write_text('{"schema_version": 1, "run_id": "x", ')
    with pytest.raises(SerializationError, match="x/run_record.json"):
        runs.load_runs(tmp_path)
    (tmp_path / "x" / runs.RECORD_NAME).write_text(json.dumps({"schema_version": 99, "run_id": "x"}))
    with pytest.raises(SerializationError, match="schema_version 99"):
        runs.read_record(tmp_path / "x")
    (tmp_path / "x" / runs.RECORD_NAME).unlink()
    _record(tmp_path / "dup", "r", 1.0, 1, 0.0, 1.0)
    with pytest.raises(InvalidInputError, match="run_id"):
        runs.load_runs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyInputError, match="no finished run records"):
        runs.load_runs(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match="not a directory"):
        runs.load_runs(tmp_path / "nope")
