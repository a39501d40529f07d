"""The streaming passes as a Slurm job array (``executor="slurm:RECIPE.yaml"``), through submitit.

Task ``i`` of ``T`` runs the pass on the shards ``k`` with ``k % T == i`` (``T`` = the shards, at most
``slurm.array_parallelism``) and returns their results, which this process folds in shard order: the same
per-shard functions as locally, so the same results. The job logs go to ``pplaw-stream-logs/`` next to the
YAML file (a shared filesystem on a cluster, as the shards are). ``slurm.cluster: local`` runs the array as
processes of this machine (submitit's local executor), for a try-out without a cluster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from pplaw.cluster import make_submitit
from pplaw.exceptions import ClusterError


def _run_group(fn: Callable[..., Any], group: list[tuple]) -> list[Any]:
    return [fn(*a) for a in group]


def load_slurm_section(recipe: str) -> Any:
    """The checked ``slurm:`` section of a YAML file (a ``pplaw run`` recipe will do). Read here rather than
    through ``pipeline/slurm_executor.py``: this package does not import the pipeline (only the building block
    ``cluster.py``, the section's definition and checks)."""
    from dataclasses import fields

    from pplaw.config import load_yaml
    from pplaw.exceptions import ConfigError
    from pplaw.cluster import SlurmSection, check_slurm

    data = load_yaml(recipe)
    if not isinstance(data, dict) or not isinstance(data.get("slurm"), dict):
        raise ConfigError(f"executor 'slurm:{recipe}': expected a YAML mapping with a `slurm:` section")
    known = {f.name for f in fields(SlurmSection)}
    unknown = sorted(set(data["slurm"]) - known)
    if unknown:
        raise ConfigError(f"executor 'slurm:{recipe}': unknown slurm key(s) {unknown}; known: {sorted(known)}")
    section = SlurmSection(**data["slurm"])
    try:
        check_slurm(section)
    except ConfigError as err:
        raise ConfigError(f"executor 'slurm:{recipe}': {err}") from err
    return section


def slurm_map(fn: Callable[..., Any], args: Sequence[tuple], recipe: str, desc: str) -> Iterator[Any]:
    slurm = load_slurm_section(recipe)
    tasks = max(1, min(len(args), slurm.array_parallelism))
    folder = Path(recipe).resolve().parent / "pplaw-stream-logs"
    ex = make_submitit(slurm, folder, cpus=slurm.cpus_per_task or 1, gpus=0, max_requeues=1,
                       name=f"pplaw-stream-{desc.split(':')[0] or 'pass'}")
    groups = [list(args[i::tasks]) for i in range(tasks)]
    with ex.batch():
        jobs = [ex.submit(_run_group, fn, g) for g in groups]
    while not all(j.done() for j in jobs):
        time.sleep(min(slurm.poll_s, 1.0) if slurm.cluster == "local" else slurm.poll_s)
    out: list[Any] = [None] * len(args)
    for i, j in enumerate(jobs):
        try:
            res = j.result()
        except Exception as err:  # noqa: BLE001 - re-raised naming the task, its shards and its logs
            first = groups[i][0][0] if groups[i] else "?"
            raise ClusterError(f"{desc}: Slurm task {i} (job {j.job_id}, shards from {first!r}) failed: "
                               f"{type(err).__name__}: {str(err)[:500]}; logs in {folder}") from err
        for k, r in zip(range(i, len(args), tasks), res):
            out[k] = r
    yield from out
