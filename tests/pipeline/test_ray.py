"""train.executor=ray on a real local Ray cluster (issue 13): the micro run gives the same numbers as locally,
a run whose worker is killed mid-run is retried to the same result, and the shared-path and resource checks
fail early naming what is wrong."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pplaw.exceptions import ConfigError, RunDirError

ray = pytest.importorskip("ray")

MICRO = Path(__file__).with_name("micro.yaml")
MICRO_RC = 1  # the micro recipe's smallest size fails on purpose (conftest / test_run.py)
CPUS = os.cpu_count() or 2


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster on this machine (raylet, GCS, worker processes), shut down after the module."""
    ray.init(num_cpus=max(2, CPUS), include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _numbers(x, path=""):
    """The summary's numbers and strings by path, without timings and paths (which differ by nature)."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k in ("timings", "total_seconds") or "seconds" in k or k.endswith("_s") or k in ("report", "out"):
                continue
            out.update(_numbers(v, f"{path}.{k}"))
        return out
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(_numbers(v, f"{path}[{i}]"))
        return out
    if isinstance(x, str) and ("/" in x or "\\" in x):
        return {}
    return {path: x}


def _executor(tmp_path: Path, **kw):
    from pplaw.pipeline.ray_executor import RayExecutor

    opts = dict(address=None, cpus=1, gpus=0, max_retries=2, threads=CPUS, launcher="inprocess",
                accelerate_config=None, run_dir=tmp_path)
    return RayExecutor(**{**opts, **kw})


def _finished_spec(micro_out: Path, tmp_path: Path):
    """A finished sweep run of the micro run, re-targeted to a fresh folder under ``tmp_path``."""
    from pplaw.pipeline.sweep import RunSpec

    src = next(p for p in sorted((micro_out / "sweep").glob("*/spec.json"))
               if (p.parent / "run_record.json").is_file() and not (p.parent / "failed.json").exists())
    spec = json.loads(src.read_text())
    run = tmp_path / "sweep" / "run"
    cpt = {**spec["cpt"], "output_dir": str(run), "run_id": "run"}
    return src.parent, RunSpec("run", run, cpt, spec["meta"], root=tmp_path)


@pytest.mark.slow
def test_the_micro_run_on_ray_gives_the_same_summary(micro_run, ray_cluster, model_cache, tmp_path):
    from pplaw.cli.main import main

    ref, rc, _, _ = micro_run
    assert rc == MICRO_RC
    # the same torch threads per run as the local run (one worker: all cores), so the numbers can match
    assert main(["run", str(MICRO), "--out", str(tmp_path), f"cache_dir={model_cache}", "train.executor=ray",
                 f"train.cpus_per_run={CPUS}"]) == MICRO_RC
    a = _numbers(json.loads((ref / "summary.json").read_text()))
    b = _numbers(json.loads((tmp_path / "summary.json").read_text()))
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float):
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k
        else:
            assert b[k] == a[k], k
    rows = {r["id"]: r for r in json.loads((tmp_path / "sweep" / "runs.json").read_text())}
    assert sum(r["status"] == "ok" for r in rows.values()) >= 10


def test_a_killed_ray_worker_is_retried_to_the_same_result(micro_run, ray_cluster, tmp_path):
    from pplaw import runs

    # nested, so that Ray ships it by value (a test module is not importable on a worker)
    def _dies_once(spec, launcher, accelerate_config, threads):
        """A task body that kills its own Ray worker process (SIGKILL) once training has started, on the first
        attempt only; the retry trains the run for real."""
        import subprocess
        import sys

        from pplaw.pipeline.sweep import train_pinned

        first = spec.dir.parent / ".attempt1"
        spec.dir.parent.mkdir(parents=True, exist_ok=True)
        if not first.exists():
            first.write_text(str(os.getpid()))
            # a watcher process (not a thread: torch imports can starve one under load) SIGKILLs this worker
            # as soon as the run's record says it is training
            watch = (f"import json, os, time\nrec = {str(spec.dir / 'run_record.json')!r}\n"
                     f"t = time.time() + 120\nwhile time.time() < t:\n"
                     f"    try:\n        if json.load(open(rec)).get('status') == 'training': break\n"
                     f"    except (OSError, ValueError): pass\n    time.sleep(0.01)\n"
                     f"os.kill({os.getpid()}, 9)\n")
            subprocess.Popen([sys.executable, "-c", watch])
        else:
            (spec.dir.parent / ".attempt2").write_text(str(os.getpid()))
        return train_pinned(spec, launcher, accelerate_config, threads)

    src, spec = _finished_spec(micro_run[0], tmp_path)
    results = {}
    ex = _executor(tmp_path, task=_dies_once)
    ex.run([spec], lambda s, r: results.__setitem__(s.id, r))
    assert results == {"run": {"id": "run", "status": "ok"}}, results
    first, second = (spec.dir.parent / ".attempt1").read_text(), (spec.dir.parent / ".attempt2").read_text()
    assert first != second  # a new worker process ran the retry
    new = runs.read_record(spec.dir)["eval"]["domain"]["loss"]
    assert new == pytest.approx(runs.read_record(src)["eval"]["domain"]["loss"], rel=1e-6)


def test_a_ray_task_that_keeps_dying_is_a_failed_run_not_a_crash(ray_cluster, tmp_path):
    from pplaw.pipeline.sweep import FAILED, RunSpec

    def always_dies(spec, *a):
        os.kill(os.getpid(), 9)

    spec = RunSpec("r", tmp_path / "sweep" / "r", {"output_dir": str(tmp_path / "sweep" / "r")}, {}, root=tmp_path)
    spec.dir.mkdir(parents=True)
    results = {}
    _executor(tmp_path, task=always_dies, max_retries=1).run([spec], lambda s, r: results.__setitem__(s.id, r))
    assert results["r"]["status"] == "failed" and "train.max_retries" in results["r"]["error"]
    assert json.loads((spec.dir / FAILED).read_text())["error_type"]


def test_a_run_directory_the_workers_cannot_reach_fails_early_naming_it(ray_cluster, tmp_path):
    from pplaw.pipeline import ray_executor as RE

    elsewhere = tmp_path / "not_shared"
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # a worker that sees another folder at that path (what a node-local disk looks like)
    ex = _executor(run_dir, probe=lambda root, token, node: RE._probe(str(elsewhere), token, node))
    with pytest.raises(RunDirError, match=str(run_dir.resolve())):
        ex.check_shared(ray)
    assert not list(run_dir.iterdir())  # the probe files are gone
    _executor(run_dir).check_shared(ray)  # the real probe on a real (shared) folder passes
    assert not list(run_dir.iterdir())


def test_more_cpus_per_run_than_any_node_has_is_a_config_error(ray_cluster, tmp_path):
    with pytest.raises(ConfigError, match="train.cpus_per_run=1000"):
        _executor(tmp_path, cpus=1000)._check_resources(ray)
    with pytest.raises(ConfigError, match="train.gpus_per_run=64"):
        _executor(tmp_path, gpus=64)._check_resources(ray)


@pytest.mark.slow  # measured 36-55 s on 2 cores (--durations, 2026-12-06)
def test_runs_finished_locally_are_not_redone_on_ray(micro_run, ray_cluster, model_cache, tmp_path):
    """The finished-run rule does not depend on the executor: a local run directory resumed with
    train.executor=ray trains nothing again (only the micro recipe's failing runs are retried, as Ray tasks)."""
    from pplaw.cli.main import main

    ref = micro_run[0]
    moved = tmp_path / "moved"
    shutil.copytree(ref, moved)
    records = {p.relative_to(moved): p.read_bytes() for p in moved.glob("*/*/run_record.json")}
    assert main(["run", str(MICRO), "--out", str(moved), f"cache_dir={model_cache}",
                 "train.executor=ray"]) == MICRO_RC
    assert {p.relative_to(moved): p.read_bytes() for p in moved.glob("*/*/run_record.json")} == records
