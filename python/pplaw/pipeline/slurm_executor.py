"""``train.executor: slurm``: each run a Slurm job, submitted through submitit; ``pplaw score`` as a job array.

A stage's unfinished runs go out as one job array (``executor.batch()``) with the ``slurm:`` section's
options; each job runs :func:`~pplaw.pipeline.sweep.train_one` on its run's folder (under
``train.launcher: accelerate`` that is ``accelerate launch -m pplaw.cli.train`` on the job's GPUs).
submitit's logs and pickles go to ``<stage>/slurm/<job id>/``, and the job id of every run to
``<stage>/jobs.json``. On preemption or at its time limit a job is requeued by submitit (:class:`RunJob`'s
``checkpoint``), up to ``train.max_retries`` times, and the run resumes from its last checkpoint.

``pplaw run`` waits for the jobs (one ``sacct`` call per ``slurm.poll_s`` for all of them), or with
``--detach`` submits and returns. Run again, it skips finished runs, waits for the jobs of ``jobs.json`` that
are still pending or running (never submitting a second job for a run) and submits only what is missing: runs
whose job ended without finishing them (cancelled, failed, lost) are submitted again.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pplaw.exceptions import ClusterError, ConfigError
from pplaw.pipeline import sweep as SW
from pplaw.cluster import SlurmSection, make_submitit
from pplaw.pipeline.sweep import RunSpec
from pplaw.runs import write_json_atomic

JOBS = "jobs.json"
LOGS = "slurm"
# states in which a job may still finish its run (sacct's names); any other state means it is over
ALIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
         "SUSPENDED", "RESIZING", "PREEMPTED", "SIGNALING", "STAGE_OUT"}
UNKNOWN_GRACE_S = 300.0  # a job sacct does not know yet (just submitted) counts as alive this long


class RunJob:
    """What a job executes: one run. submitit calls :meth:`checkpoint` on preemption or timeout and requeues
    the job with what it returns (the same run: training resumes from the run's newest checkpoint)."""

    def __init__(self, spec: RunSpec, launcher: str, accelerate_config: str | None, threads: int) -> None:
        self.spec, self.launcher, self.accelerate_config, self.threads = spec, launcher, accelerate_config, threads

    def __call__(self) -> dict[str, Any]:
        return SW.train_pinned(self.spec, self.launcher, self.accelerate_config, self.threads)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(self.spec, self.launcher, self.accelerate_config,
                                                         self.threads))


def job_state(job: Any) -> str:
    """sacct's state of a job, from submitit's watcher cache (refreshed by :func:`refresh`)."""
    return str(job.watcher.get_state(job.job_id, mode="cache")).upper().split()[0]


SACCT_TRIES = 5  # a busy slurmdbd can fail a call: ask again before reading every state as UNKNOWN


def refresh(jobs: list[Any], *, strict: bool = False) -> bool:
    """One ``sacct`` call for all the jobs: submitit's own refresh backs off to minutes between calls.
    (Local jobs are processes: nothing to ask.) Returns whether sacct answered. submitit swallows a failed
    call and leaves every state UNKNOWN, which reads as "just submitted" to :func:`live_jobs`; so a failed
    call is retried, and with ``strict`` (deciding which jobs are over) a sacct that never answers raises."""
    import submitit

    if not jobs or not isinstance(jobs[0], submitit.SlurmJob):
        return True
    w = jobs[0].watcher
    for attempt in range(SACCT_TRIES):
        # the watcher never asks again about a job it once saw ended; but a preempted job can show FAILED for
        # a moment before Slurm requeues it, so every look asks afresh
        w.clear()
        for j in jobs:
            w.register_job(j.job_id)
        w.update()
        if getattr(w, "_output", b"answered"):  # cleared to b"" above: still empty when sacct failed
            return True
        time.sleep(1.0 + attempt)
    if strict:
        raise ClusterError(f"sacct did not answer in {SACCT_TRIES} tries, so pplaw cannot tell which Slurm jobs "
                           "of jobs.json still run (and must not submit a second job for a run): check "
                           "`sacct` (slurmdbd) and run the same command again")
    return False


def still_listed(jobs: list[Any]) -> set[str]:
    """Ids of the jobs that sacct reads as ended but ``squeue`` still lists: a cancelled job is CANCELLED in
    sacct at once, while its processes run on until Slurm kills them (``KillWait``, 30 s by default; submitit
    ignores the SIGTERM that comes first) and squeue shows it COMPLETING. Such a job can still write into its
    run's folder, so it is not over. (One squeue call; if squeue cannot answer, sacct's word stands.)"""
    import submitit

    ended = [str(j.job_id) for j in jobs if isinstance(j, submitit.SlurmJob) and job_state(j) not in ALIVE]
    if not ended or shutil.which("squeue") is None:
        return set()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ended)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    # rc 1 "Invalid job id specified": none of them is known to the controller any more (all gone)
    return {line.strip() for line in out.stdout.splitlines() if line.strip()} & set(ended)


ENDED_GRACE_S = 30.0  # an ended state without a result must last this long (a requeue may follow it)
# a job that wrote its result still runs for a moment (submitit's teardown, Slurm's epilog) before sacct says
# COMPLETED; it is waited for this long at most, so that a stage ends with no job of it still on the cluster
FINISHING_GRACE_S = 120.0


def _is_over(job: Any, cluster: str, ended_since: dict[str, float], listed: set[str] | frozenset = frozenset()
             ) -> bool:
    """Whether ``job`` is over; ``listed``: the ids :func:`still_listed` found still on the nodes."""
    key = str(job.job_id)
    if cluster == "local":
        return job.paths.result_pickle.exists() or job.done()
    alive = job_state(job) in ALIVE | {"UNKNOWN"} or key in listed
    if job.paths.result_pickle.exists():
        if not alive:
            return True
        first = ended_since.setdefault(key + ":result", time.time())
        return time.time() - first >= FINISHING_GRACE_S
    if alive:
        ended_since.pop(key, None)
        return False
    first = ended_since.setdefault(key, time.time())
    return time.time() - first >= ENDED_GRACE_S


@dataclass
class SlurmExecutor:
    """Runs a stage's unfinished runs as Slurm jobs (see the module docstring)."""

    slurm: SlurmSection
    cpus: int
    gpus: int
    max_requeues: int
    threads: int
    launcher: str
    accelerate_config: str | None
    detach: bool = False

    def run(self, todo: list[RunSpec], finish: Callable[[RunSpec, dict[str, Any]], None]) -> None:
        stage = todo[0].dir.parent
        folder = stage / LOGS
        book = read_jobs(stage)
        jobs = self._attach(todo, book, folder)
        new = [s for s in todo if s.id not in jobs]
        if new:
            for s in new:
                SW.prepare_dir(s)  # spec.json before the job starts: the run folder says what it is at once
            ex = make_submitit(self.slurm, folder, cpus=self.cpus, gpus=self.gpus, max_requeues=self.max_requeues,
                               name=f"pplaw-{stage.name}")
            with ex.batch():  # one job array for the whole stage
                subs = [ex.submit(RunJob(s, self.launcher, self.accelerate_config, self.threads)) for s in new]
            now = time.time()
            for s, j in zip(new, subs):
                jobs[s.id] = j
                book[s.id] = {"job_id": str(j.job_id), "key": s.key, "cluster": self.slurm.cluster,
                              "submitted_at": now}
            write_jobs(stage, book)
        if self.detach:  # (run_pipeline allows it with slurm.cluster=slurm only: local jobs die with us)
            return  # the jobs run on; the next `pplaw run` collects them (jobs.json)
        self._wait(todo, jobs, finish)

    def _attach(self, todo: list[RunSpec], book: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Run id -> its job of ``jobs.json`` that may still finish it (pending, running, requeued); one sacct
        call for all. A live job of another spec of the run (the recipe changed) is cancelled: its folder is
        about to be replaced, and it must not write into the new run's."""
        if self.slurm.cluster != "slurm":
            return {}  # local jobs are processes of the driver that submitted them: not ours to wait for
        alive = {}
        for rid, (spec, entry, job) in live_jobs(todo, book, folder).items():
            if entry.get("key") == spec.key:
                alive[rid] = job
            else:
                job.cancel(check=False)
        return alive

    def _wait(self, todo: list[RunSpec], jobs: dict[str, Any], finish: Callable[[RunSpec, dict], None]) -> None:
        pending = {s.id: s for s in todo}
        ended_since: dict[str, float] = {}
        while pending:
            refresh([jobs[i] for i in pending])
            listed = still_listed([jobs[i] for i in pending]) if self.slurm.cluster == "slurm" else set()
            for rid in list(pending):
                job, spec = jobs[rid], pending[rid]
                if not _is_over(job, self.slurm.cluster, ended_since, listed):
                    continue
                del pending[rid]
                finish(spec, self._outcome(spec, job))
            if pending:
                time.sleep(self.slurm.poll_s)

    def _outcome(self, spec: RunSpec, job: Any) -> dict[str, Any]:
        try:
            return job.result()
        except Exception as err:  # noqa: BLE001 - cancelled, killed, node lost: the run is failed, not the sweep
            state = job_state(job) if self.slurm.cluster == "slurm" else "ended"
            return SW.record_failure(spec, type(err).__name__,
                                     f"Slurm job {job.job_id} ended ({state}) without finishing the run; logs in "
                                     f"{job.paths.stdout.parent}: {str(err)[:1500]}")


def live_jobs(todo: list[RunSpec], book: dict[str, Any], folder: Path) -> dict[str, tuple[RunSpec, dict, Any]]:
    """Run id -> (spec, its ``jobs.json`` entry, its submitit job) for the runs of ``todo`` whose Slurm job may
    still finish them (pending, running, requeued, still being killed after a scancel, or just submitted and
    not yet known to sacct); one sacct call for all (and one squeue call for the ended ones). Jobs that are
    over are left out: their runs, unfinished, are submitted again."""
    import submitit

    known = {s.id: (s, book[s.id]) for s in todo if book.get(s.id, {}).get("cluster") == "slurm"}
    if not known:
        return {}
    jobs = {rid: submitit.SlurmJob(folder=str(folder / "%j"), job_id=str(e["job_id"]))
            for rid, (_, e) in known.items()}
    refresh(list(jobs.values()), strict=True)
    listed = still_listed(list(jobs.values()))  # cancelled in sacct, but its processes not killed yet
    alive = {}
    for rid, job in jobs.items():
        spec, entry = known[rid]
        state = job_state(job)
        young = time.time() - float(entry.get("submitted_at", 0)) < UNKNOWN_GRACE_S
        if state in ALIVE or str(job.job_id) in listed or (state == "UNKNOWN" and young):
            alive[rid] = (spec, entry, job)
    return alive


def refuse_if_jobs_alive(todo: list[RunSpec], executor: str) -> None:
    """Before another executor trains ``todo``: a run whose Slurm job (``pplaw run --detach``) is still pending
    or running would get a second writer in its folder. Raise a ConfigError naming the jobs instead."""
    if not todo:
        return
    stage = todo[0].dir.parent
    book = read_jobs(stage)
    if not any(book.get(s.id, {}).get("cluster") == "slurm" for s in todo):
        return
    if shutil.which("sacct") is None or importlib.util.find_spec("submitit") is None:
        ids = sorted(str(book[s.id]["job_id"]) for s in todo if book.get(s.id, {}).get("cluster") == "slurm")
        raise ConfigError(
            f"train.executor={executor}: {stage / JOBS} lists Slurm jobs for runs not finished yet "
            f"({', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}), and this machine cannot ask Slurm whether "
            f"they still run (no sacct/submitit). Collect them with train.executor=slurm on the login node, or "
            f"delete {stage / JOBS} once you are sure they are gone")
    alive = live_jobs(todo, book, stage / LOGS)
    if alive:
        ids = sorted(str(e["job_id"]) for _, e, _ in alive.values())
        raise ConfigError(
            f"train.executor={executor}: {len(alive)} run(s) of {stage} still have Slurm jobs pending or running "
            f"({', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}; submitted by `pplaw run --detach`): training "
            f"them here too would give their folders two writers. Collect them with train.executor=slurm, or "
            f"scancel them first")


def read_jobs(stage: Path) -> dict[str, Any]:
    """``<stage>/jobs.json``: run id -> {job_id, key, cluster, submitted_at} (empty when missing)."""
    path = Path(stage) / JOBS
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # unreadable: its jobs are not waited for; their runs, if unfinished, are submitted again


def write_jobs(stage: Path, book: dict[str, Any]) -> None:
    write_json_atomic(Path(stage) / JOBS, book)


# ----------------------------------------------------------------------------------------------------------
# pplaw score as a job array over its shards


def load_slurm(path: str | Path) -> SlurmSection:
    """The ``slurm:`` section of a YAML file (a run recipe, or a file holding only that section), checked."""
    from pplaw.config import load_yaml
    from pplaw.pipeline.recipe import from_dict

    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("slurm"), dict):
        raise ConfigError(f"--slurm {str(path)!r}: expected a YAML mapping with a `slurm:` section")
    try:
        section = from_dict(SlurmSection, data["slurm"], "slurm")  # checks its values (SlurmSection.__post_init__)
    except ConfigError as err:
        raise ConfigError(f"--slurm {str(path)!r}: {err}") from err
    return section


def _score_part(cfg: Any, part: tuple[int, int]) -> dict[str, Any]:
    from pplaw.score.job import run_score

    return run_score(cfg, part=part)


def score_array(cfg: Any, slurm: SlurmSection, tasks: int, *, cpus: int = 1, gpus: int = 0,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """``pplaw score`` over a Slurm job array: task i of ``tasks`` scores shards k with ``k % tasks == i`` (each
    shard written atomically, finished shards skipped, as in one process); when every task has ended, the
    summary is computed here from the shards. A shard a failed task left out is scored by running again."""
    from pplaw.score.job import run_score

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ex = make_submitit(slurm, out / LOGS, cpus=cpus, gpus=gpus, max_requeues=3, name="pplaw-score")
    with ex.batch():
        jobs = [ex.submit(_score_part, cfg, (i, tasks)) for i in range(tasks)]
    log(f"pplaw score: submitted {tasks} job(s) ({', '.join(str(j.job_id) for j in jobs)}); logs in {out / LOGS}")
    ended_since: dict[str, float] = {}
    while True:
        refresh(jobs)
        if all([_is_over(j, slurm.cluster, ended_since) for j in jobs]):
            break
        time.sleep(slurm.poll_s)
    failed = []
    for i, j in enumerate(jobs):
        try:
            j.result()
        except Exception as err:  # noqa: BLE001 - reported together below
            failed.append(f"task {i} (job {j.job_id}): {type(err).__name__}: {str(err)[:500]}")
    if failed:
        raise RuntimeError("pplaw score: some Slurm tasks did not finish; run the same command again to score the "
                           "shards they left:\n  " + "\n  ".join(failed))
    return run_score(cfg, summarise_only=True)
