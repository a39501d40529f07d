"""Where the sweep's and the final runs execute (``train.executor``): ``local`` (this machine, the default:
:func:`pplaw.pipeline.sweep.run_all` itself, in this process or a worker pool), ``ray``
(:mod:`pplaw.pipeline.ray_executor`: each run a Ray task) or ``slurm`` (:mod:`pplaw.pipeline.slurm_executor`:
each run a Slurm job through submitit).

Every executor runs the same :func:`~pplaw.pipeline.sweep.train_one` on a run's folder, so the run directory
layout, ``spec.json``, the finished-run rule and ``failed.json`` do not depend on it: a run finished under
one executor is skipped under any other, and a failed one is retried by the next ``pplaw run``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from pplaw.exceptions import ConfigError

from pplaw.pipeline.recipe import RunRecipe
from pplaw.pipeline.sweep import Executor, is_finished


def make_executor(recipe: RunRecipe, run_dir: Path, *, detach: bool = False) -> Executor | None:
    """The executor of ``recipe.train.executor`` (None: local). ``detach``: Slurm jobs are submitted and left
    running (``pplaw run --detach``); the next ``pplaw run`` collects them."""
    t = recipe.train
    _check_available(recipe)
    threads = t.threads_per_worker or t.cpus_per_run
    if t.executor == "ray":
        from pplaw.pipeline.ray_executor import RayExecutor

        return RayExecutor(address=t.ray_address, cpus=t.cpus_per_run, gpus=t.gpus_per_run,
                           max_retries=t.max_retries, threads=threads, launcher=t.launcher,
                           accelerate_config=t.accelerate_config, run_dir=Path(run_dir))
    if t.executor == "slurm":
        from pplaw.pipeline.slurm_executor import SlurmExecutor

        s = recipe.slurm
        return SlurmExecutor(s, cpus=s.cpus_per_task or t.cpus_per_run,
                             gpus=s.gpus_per_node if s.gpus_per_node is not None else t.gpus_per_run,
                             max_requeues=t.max_retries, threads=threads, launcher=t.launcher,
                             accelerate_config=t.accelerate_config, detach=detach)
    return None


def refuse_if_jobs_alive(specs: list, executor: Executor | None) -> None:
    """Under any executor but Slurm: fail (ConfigError) when runs still to train have Slurm jobs of an earlier
    ``pplaw run --detach`` pending or running; the Slurm executor itself waits for such jobs instead."""
    from pplaw.pipeline.slurm_executor import SlurmExecutor, refuse_if_jobs_alive as refuse

    if isinstance(executor, SlurmExecutor):
        return
    todo = [s for s in specs if not is_finished(s)]
    refuse(todo, "ray" if executor is not None else "local")


def _check_available(recipe: RunRecipe) -> None:
    """Fail before any work when the executor's engine is missing here (not after scoring and planning)."""
    t = recipe.train
    if t.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("train.executor=ray needs Ray: pip install 'pplaw[cluster]' (or 'ray[data]')")
    if t.executor == "slurm":
        if importlib.util.find_spec("submitit") is None:
            raise ConfigError("train.executor=slurm needs submitit: pip install 'pplaw[cluster]' (or 'submitit')")
        if recipe.slurm.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("train.executor=slurm with slurm.cluster=slurm needs `sbatch` on PATH (run pplaw on "
                              "a Slurm login node); slurm.cluster=local runs the same jobs on this machine")
