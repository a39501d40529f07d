"""train.executor=slurm (issue 13): the micro sweep as real Slurm jobs (sacct), one cancelled mid-run and
resumed to the same result, `--detach` and collecting; and the same executor through submitit's local
executor, which needs no cluster.

The real-cluster test runs where `sbatch` answers: CI starts a single-node Slurm (.ci/start_slurm.sh, called
by .ci/run as root); elsewhere it is skipped, saying why."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("submitit")

MICRO = Path(__file__).with_name("micro.yaml")
MICRO_RC = 1
SMALL = ["select.seeds=[0]", "baselines.methods=[random]", "plan.sizes=[0.1,0.2]", "fit.bootstrap=0"]


def _sacct(ids: list[str]) -> dict[str, str]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)], check=True,
                         capture_output=True, text=True).stdout
    return {line.split("|")[0]: line.split("|")[1].split()[0] for line in out.splitlines() if "|" in line}


def _listed(job_id: str) -> bool:
    """Whether squeue still lists the job (pending, running, or COMPLETING: its processes not killed yet)."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", job_id], capture_output=True, text=True).stdout
    return job_id in out.split()


def _jobs(stage: Path) -> dict[str, str]:
    return {k: v["job_id"] for k, v in json.loads((stage / "jobs.json").read_text()).items()}


def _losses(out: Path) -> dict[tuple, float]:
    """Domain loss of each finished sweep run, by what it trained on (its plan metadata)."""
    rows = json.loads((out / "sweep" / "runs.json").read_text())
    return {(r["id"], r["D"], r["mu_ppl"], r["sigma_ppl"], r["seed"]): r["domain_loss"] for r in rows
            if r["status"] == "ok"}


def _one_finished_run(out: Path, tmp_path: Path):
    """A finished run of the micro sweep (its folder) and a fresh RunSpec of the same run under ``tmp_path``."""
    from pplaw.pipeline.sweep import RunSpec

    src = next(p for p in sorted((out / "sweep").glob("*/spec.json"))
               if (p.parent / "run_record.json").is_file() and not (p.parent / "failed.json").exists())
    spec = json.loads(src.read_text())
    run = tmp_path / "sweep" / "run"
    return src, RunSpec("run", run, {**spec["cpt"], "output_dir": str(run), "run_id": "run"}, spec["meta"],
                        root=tmp_path)


@pytest.mark.slow
def test_the_micro_sweep_as_real_slurm_jobs_survives_a_scancel(micro_run, model_cache, tmp_path, capsys, slurm_why_not):
    if why := slurm_why_not:
        pytest.skip(why)
    from pplaw.cli.main import main

    args = ["run", str(MICRO), "--out", str(tmp_path), f"cache_dir={model_cache}", *SMALL, "train.executor=slurm",
            "slurm.poll_s=1", "slurm.time_min=30", "train.cpus_per_run=1"]
    # 1. submit and return
    assert main([*args, "--detach"]) == 0
    assert "Slurm jobs now" in capsys.readouterr().out
    sweep = tmp_path / "sweep"
    first = _jobs(sweep)
    assert len(first) >= 10 and not (sweep / "stage.json").exists()

    # 2. cancel one job while its run is training
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline:
        for rid in first:
            try:
                if json.loads((sweep / rid / "run_record.json").read_text()).get("status") == "training":
                    victim = rid
                    break
            except (OSError, ValueError):
                pass
        time.sleep(0.1)
    assert victim, "no run started training within 5 minutes"
    subprocess.run(["scancel", first[victim]], check=True)
    while time.time() < deadline and _sacct([first[victim]]).get(first[victim]) != "CANCELLED":
        time.sleep(0.5)
    assert _sacct([first[victim]])[first[victim]] == "CANCELLED"
    # sacct says CANCELLED at once, but the job's processes run on until Slurm kills them (KillWait; submitit
    # ignores the SIGTERM): squeue lists it COMPLETING meanwhile, and pplaw must not read it as over (a second
    # job would be a second writer in the run's folder). Listed after the call means listed during it.
    from pplaw.pipeline import slurm_executor as SE

    book = json.loads((sweep / "jobs.json").read_text())
    alive_now = SE.live_jobs([SimpleNamespace(id=victim)], book, sweep / SE.LOGS)
    if _listed(first[victim]):
        assert victim in alive_now
    while time.time() < deadline and _listed(first[victim]):
        time.sleep(0.5)
    assert not _listed(first[victim]), "the cancelled job's processes were not killed"

    # 3. run again, detached: the cancelled run is submitted again, no other run gets a second job
    # (a kill can land after the run wrote its evaluated record, in the job's last moments: then the run is
    # finished and rightly not submitted again)
    done_anyway = json.loads((sweep / victim / "run_record.json").read_text()).get("status") == "evaluated"
    assert main([*args, "--detach"]) == 0
    second = _jobs(sweep)
    assert (second[victim] == first[victim]) if done_anyway else (second[victim] != first[victim])
    assert {k: v for k, v in second.items() if k != victim} == {k: v for k, v in first.items() if k != victim}

    # 3b. a local run meanwhile refuses to train runs whose jobs still run (two writers in one folder)
    local_args = [a for a in args if a != "train.executor=slurm"]
    assert main(local_args) != 0
    err = capsys.readouterr().err
    assert "still have Slurm jobs pending or running" in err and "train.executor=slurm" in err, err
    assert _jobs(sweep) == second

    # 4. collect: wait for every job, then fit, select and the final runs (jobs too) to the report
    assert main(args) == 0
    assert (tmp_path / "report.md").is_file()
    rows = json.loads((sweep / "runs.json").read_text())
    assert all(r["status"] == "ok" for r in rows)
    ids = list(_jobs(sweep).values()) + list(_jobs(tmp_path / "final").values())
    states = _sacct(ids)
    # real jobs, all done; a victim that finished its run while being killed keeps its (CANCELLED) job
    expected = {i: "COMPLETED" for i in ids} | ({first[victim]: "CANCELLED"} if done_anyway else {})
    assert states == expected, (states, first, second, _jobs(sweep))

    # 5. the same result as the local micro run for every run that trained on the same subset
    ref, rc, _, _ = micro_run
    assert rc == MICRO_RC
    local, slurm = _losses(ref), _losses(tmp_path)
    same = set(local) & set(slurm)
    assert len(same) >= 5
    for k in same:
        assert slurm[k] == pytest.approx(local[k], rel=1e-6), k


def test_a_run_through_submitits_local_executor_trains_the_same_run(micro_run, tmp_path):
    """No cluster needed: slurm.cluster=local runs the same job (pickled RunJob) as a local process."""
    from pplaw import runs
    from pplaw.cluster import SlurmSection
    from pplaw.pipeline.slurm_executor import SlurmExecutor, read_jobs

    src, s = _one_finished_run(micro_run[0], tmp_path)
    run = s.dir
    ex = SlurmExecutor(SlurmSection(cluster="local", poll_s=0.5, time_min=10), cpus=1, gpus=0, max_requeues=1,
                       threads=1, launcher="inprocess", accelerate_config=None)
    results = {}
    ex.run([s], lambda sp, r: results.__setitem__(sp.id, r))
    assert results == {"run": {"id": "run", "status": "ok"}}
    assert read_jobs(tmp_path / "sweep")["run"]["cluster"] == "local"
    assert (tmp_path / "sweep" / "slurm").is_dir()  # submitit's logs and pickles
    new, old = runs.read_record(run)["eval"]["domain"]["loss"], runs.read_record(src.parent)["eval"]["domain"]["loss"]
    assert new == pytest.approx(old, rel=1e-6)


def test_a_run_that_fails_in_its_job_is_a_failed_run(tmp_path):
    """A job whose run fails (options that are no run) ends as that run's failed.json and a 'failed' result."""
    from pplaw.cluster import SlurmSection
    from pplaw.pipeline.slurm_executor import SlurmExecutor
    from pplaw.pipeline.sweep import FAILED, RunSpec

    stage = tmp_path / "sweep"
    stage.mkdir()
    good = RunSpec("r", stage / "r", {"output_dir": str(stage / "r")}, {}, root=tmp_path)
    ex = SlurmExecutor(SlurmSection(cluster="local", poll_s=0.5), cpus=1, gpus=0, max_requeues=0, threads=1,
                       launcher="inprocess", accelerate_config=None)
    results = {}
    ex.run([good], lambda sp, r: results.__setitem__(sp.id, r))
    assert results["r"]["status"] == "failed"  # the options are not a run: train_one records why
    assert json.loads((good.dir / FAILED).read_text())["error"]


def test_detach_needs_the_slurm_executor(tmp_path):
    from pplaw.exceptions import ConfigError
    from pplaw.pipeline import load_recipe, run_pipeline

    with pytest.raises(ConfigError, match="--detach needs train.executor=slurm"):
        run_pipeline(load_recipe(MICRO), tmp_path / "out", detach=True)
    local = load_recipe(MICRO, [("train.executor", "slurm"), ("slurm.cluster", "local")])
    with pytest.raises(ConfigError, match="slurm.cluster='local'"):
        run_pipeline(local, tmp_path / "out", detach=True)
    assert not (tmp_path / "out").exists()


def test_a_preempted_slurm_job_is_requeued_and_finishes_its_run(micro_run, tmp_path, slurm_why_not):
    """Preemption as Slurm signals it (SIGTERM, then USR2: submitit's own `_interrupt` test hook): submitit
    calls RunJob.checkpoint and requeues the job, which trains the run again in its folder to the same loss."""
    if why := slurm_why_not:
        pytest.skip(why)
    from pplaw import runs
    from pplaw.cluster import SlurmSection
    from pplaw.cluster import make_submitit
    from pplaw.pipeline.slurm_executor import RunJob

    src, s = _one_finished_run(micro_run[0], tmp_path)
    run = s.dir
    ex = make_submitit(SlurmSection(time_min=10), tmp_path / "slurm", cpus=1, gpus=0, max_requeues=2,
                       name="pplaw-preempt")
    job = ex.submit(RunJob(s, "inprocess", None, 1))
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if json.loads((run / "run_record.json").read_text()).get("status") == "training":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    job._interrupt()  # preemption: SIGTERM then USR2
    # Slurm holds a requeued job for about 2 minutes (Reason=BeginTime); the test need not wait for that
    while time.time() < deadline:
        show = subprocess.run(["scontrol", "show", "job", str(job.job_id)], capture_output=True, text=True).stdout
        if "Restarts=1" in show and "JobState=PENDING" in show:
            subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], check=True)
            break
        if job.paths.result_pickle.exists():
            break
        time.sleep(0.2)
    while time.time() < deadline and not job.paths.result_pickle.exists():
        time.sleep(0.5)  # (not job.result(): submitit's watcher may have cached the FAILED of the requeue)
    assert job.result() == {"id": "run", "status": "ok"}
    hist = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "JobID,State", "-j", str(job.job_id)],
                          check=True, capture_output=True, text=True).stdout
    assert "REQUEUED" in hist or "PREEMPTED" in hist, hist  # the job ran twice under one id
    new, old = runs.read_record(run)["eval"]["domain"]["loss"], runs.read_record(src.parent)["eval"]["domain"]["loss"]
    assert new == pytest.approx(old, rel=1e-6)
