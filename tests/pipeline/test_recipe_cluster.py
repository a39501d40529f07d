"""Recipe validation of the cluster options (issue 13): train.executor and its resources, the slurm section;
every error names the recipe key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from pplaw.exceptions import ConfigError
from pplaw.pipeline.recipe import describe, load_recipe

MICRO = Path(__file__).with_name("micro.yaml")


def _load(**overrides: str):
    return load_recipe(MICRO, list(overrides.items()))


def test_defaults_are_local_and_the_options_override_from_the_command_line():
    r = _load()
    assert r.train.executor == "local" and r.slurm.time_min == 240 and r.slurm.cluster == "slurm"
    r = _load(**{"train.executor": "ray", "train.gpus_per_run": "2", "train.ray_address": "auto",
                 "slurm.partition": "gpu", "slurm.additional_parameters": "{constraint: h100}",
                 "slurm.setup": "['module load cuda']"})
    assert (r.train.executor, r.train.gpus_per_run, r.train.ray_address) == ("ray", 2, "auto")
    assert r.slurm.partition == "gpu" and r.slurm.additional_parameters == {"constraint": "h100"}
    assert r.slurm.setup == ["module load cuda"]
    assert _load(**{"train.executor": "slurm", "slurm.mem_gb": "16"}).slurm.mem_gb == 16.0


@pytest.mark.parametrize("key, value, match", [
    ("train.executor", "dask", r"train.executor: expected one of \['local', 'ray', 'slurm'\], got 'dask'"),
    ("train.cpus_per_run", "0", r"train.cpus_per_run must be an integer >= 1, got 0"),
    ("train.gpus_per_run", "-1", r"train.gpus_per_run must be an integer >= 0"),
    ("train.gpus_per_run", "0.5", r"train.gpus_per_run: expected int, got float"),
    ("train.max_retries", "-2", r"train.max_retries must be an integer >= 0"),
    ("train.ray_address", "''", r"train.ray_address must be a Ray address"),
    ("slurm.time_min", "soon", r"slurm.time_min: expected int, got str 'soon'"),
    ("slurm.time_min", "0", r"slurm.time_min must be an integer number of minutes >= 1"),
    ("slurm.gpus_per_node", "-1", r"slurm.gpus_per_node must be an integer >= 0 or null"),
    ("slurm.cpus_per_task", "0", r"slurm.cpus_per_task must be an integer >= 1 or null"),
    ("slurm.mem_gb", "-4", r"slurm.mem_gb must be a number of GB > 0 or null"),
    ("slurm.mem_gb", "lots", r"slurm.mem_gb: expected float, got str 'lots'"),
    ("slurm.partition", "''", r"slurm.partition must be a non-empty string or null"),
    ("slurm.additional_parameters", "{--constraint: h100}", r"slurm.additional_parameters must map sbatch option"),
    ("slurm.additional_parameters", "[a, b]", r"slurm.additional_parameters: expected dict"),
    ("slurm.setup", "[1, 2]", r"slurm.setup\[0\]: expected str"),
    ("slurm.array_parallelism", "0", r"slurm.array_parallelism must be an integer >= 1"),
    ("slurm.poll_s", "0", r"slurm.poll_s must be a number of seconds > 0"),
    ("slurm.cluster", "pbs", r"slurm.cluster: expected one of \['slurm', 'local'\]"),
    ("slurm.partiton", "gpu", r"unknown key\(s\) in slurm: slurm.partiton; valid keys there: partition"),
])
def test_a_bad_cluster_option_names_its_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        _load(**{key: value})


def test_help_lists_the_cluster_options():
    text = "\n".join(describe())
    for key in ("train.executor", "train.ray_address", "train.cpus_per_run", "train.gpus_per_run",
                "train.max_retries", "slurm.partition", "slurm.account", "slurm.qos", "slurm.time_min",
                "slurm.gpus_per_node", "slurm.cpus_per_task", "slurm.mem_gb", "slurm.additional_parameters",
                "slurm.setup", "slurm.cluster"):
        assert f"  {key} = " in text, key


def test_a_missing_engine_or_sbatch_fails_before_any_work(monkeypatch, tmp_path):
    import shutil

    from pplaw.pipeline.executors import make_executor

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs `sbatch` on PATH"):
        make_executor(_load(**{"train.executor": "slurm"}), tmp_path)
    ex = make_executor(_load(**{"train.executor": "slurm", "slurm.cluster": "local"}), tmp_path)
    assert ex is not None and ex.slurm.cluster == "local"
    assert make_executor(_load(), tmp_path) is None  # local: run_all's own pool
    ray_ex = make_executor(_load(**{"train.executor": "ray", "train.cpus_per_run": "3"}), tmp_path)
    assert (ray_ex.cpus, ray_ex.threads) == (3, 3)


def test_the_cli_parses_detach_apart_from_the_overrides():
    from pplaw.cli.run import parse_argv, split_detach

    argv, detach = split_detach(["r.yaml", "--detach", "train.executor=slurm", "--out", "x"])
    assert detach and parse_argv(argv) == ("r.yaml", "x", [("train.executor", "slurm")])


class _FakeJob:
    """What _is_over reads of a submitit SlurmJob: its id, sacct's state (through the watcher) and whether the
    result pickle was written."""

    def __init__(self, state: str, result: bool, tmp: Path) -> None:
        import types

        self.job_id = "42"
        self.watcher = types.SimpleNamespace(get_state=lambda job_id, mode: state)
        pickle = tmp / "42_result.pkl"
        if result:
            pickle.write_bytes(b"x")
        self.paths = types.SimpleNamespace(result_pickle=pickle)


def test_a_job_that_wrote_its_result_is_waited_for_until_slurm_says_it_ended(tmp_path, monkeypatch):
    """The stage ends only when no job of it is left on the cluster (sacct COMPLETED, not RUNNING), so a
    re-run or a user's sacct never sees a stage's job still running after `pplaw run` returned."""
    from pplaw.pipeline import slurm_executor as SE

    seen: dict[str, float] = {}
    assert not SE._is_over(_FakeJob("RUNNING", True, tmp_path), "slurm", seen)
    assert SE._is_over(_FakeJob("COMPLETED", True, tmp_path), "slurm", seen)
    # a job stuck in a live state after writing its result is let go after a grace period, not waited for forever
    clock = [1000.0]
    monkeypatch.setattr(SE.time, "time", lambda: clock[0])
    seen = {}
    assert not SE._is_over(_FakeJob("COMPLETING", True, tmp_path), "slurm", seen)
    clock[0] += SE.FINISHING_GRACE_S + 1
    assert SE._is_over(_FakeJob("COMPLETING", True, tmp_path), "slurm", seen)
    # no result and a live state: not over; an ended state without a result must last ENDED_GRACE_S (requeues)
    seen = {}
    (tmp_path / "42_result.pkl").unlink()
    assert not SE._is_over(_FakeJob("RUNNING", False, tmp_path), "slurm", seen)
    assert not SE._is_over(_FakeJob("FAILED", False, tmp_path), "slurm", seen)
    clock[0] += SE.ENDED_GRACE_S + 1
    assert SE._is_over(_FakeJob("FAILED", False, tmp_path), "slurm", seen)


def test_a_local_run_refuses_runs_whose_detached_slurm_jobs_may_still_run(tmp_path, monkeypatch):
    """After `pplaw run --detach`, a run with another executor must not train runs that have live Slurm jobs:
    the error names the jobs and how to collect them; runs without a job entry are not blocked."""
    import json
    import types

    from pplaw.pipeline import slurm_executor as SE

    stage = tmp_path / "sweep"
    stage.mkdir()
    runs = [types.SimpleNamespace(id=f"r{i}", dir=stage / f"r{i}", keys=["k"]) for i in range(2)]
    SE.refuse_if_jobs_alive(runs, "local")  # no jobs.json: nothing to refuse
    (stage / "jobs.json").write_text(json.dumps({"r0": {"job_id": "77", "key": "k", "cluster": "slurm",
                                                        "submitted_at": 0}}))
    monkeypatch.setattr(SE, "live_jobs", lambda todo, book, folder: {"r0": (todo[0], book["r0"], None)})
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    with pytest.raises(ConfigError, match=r"train.executor=local: 1 run\(s\) of .*sweep still have Slurm jobs "
                                          r"pending or running \(77;.*Collect them with train.executor=slurm"):
        SE.refuse_if_jobs_alive(runs, "local")
    SE.refuse_if_jobs_alive(runs[1:], "local")  # r1 has no job: free to train
    monkeypatch.setattr(SE, "live_jobs", lambda todo, book, folder: {})
    SE.refuse_if_jobs_alive(runs, "ray")  # its job is over: the run is free to train again
    monkeypatch.setattr("shutil.which", lambda name: None)  # no Slurm client here: cannot tell, so refuse
    with pytest.raises(ConfigError, match=r"cannot ask Slurm whether they still run.*delete .*jobs.json"):
        SE.refuse_if_jobs_alive(runs, "local")


def test_a_failing_sacct_is_asked_again_and_never_read_as_just_submitted(tmp_path, monkeypatch):
    """submitit swallows a failed sacct call and leaves every state UNKNOWN, which live_jobs reads as "just
    submitted": the call is retried, and where it decides which jobs are over a sacct that never answers raises
    instead of guessing (a guess kept a cancelled job "alive" under load, and its run was never resubmitted)."""
    submitit = pytest.importorskip("submitit")
    from pplaw.pipeline import slurm_executor as SE

    job = submitit.SlurmJob(folder=str(tmp_path / "%j"), job_id="9")
    w = job.watcher
    calls = []

    def update(ok_after):
        def fake():
            calls.append(1)
            w._output = b"JobID|State|NodeList\n9|RUNNING|vm\n" if len(calls) > ok_after else b""
        return fake

    monkeypatch.setattr(SE.time, "sleep", lambda s: None)
    monkeypatch.setattr(w, "update", update(2))
    assert SE.refresh([job], strict=True) and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(w, "update", update(99))
    assert SE.refresh([job]) is False and len(calls) == SE.SACCT_TRIES
    with pytest.raises(SE.ClusterError, match="sacct did not answer"):
        SE.refresh([job], strict=True)
