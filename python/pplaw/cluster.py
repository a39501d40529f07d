"""The recipe's ``slurm:`` section: how the sweep's and final runs (``train.executor: slurm``) and
``pplaw score --slurm`` are submitted to Slurm through submitit.

A leaf of :mod:`pplaw.pipeline` (it imports no other pipeline module), so that :mod:`~pplaw.pipeline.recipe`
(which holds it as ``RunRecipe.slurm``), the executors and the score command can all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pplaw._checks import integer, nonempty_str, number, one_of, require
from pplaw.config import option
from pplaw.exceptions import ConfigError

EXECUTORS = ("local", "ray", "slurm")


@dataclass
class SlurmSection:
    """Slurm jobs (``train.executor: slurm``, ``pplaw score --slurm``), submitted with submitit: one job per
    run, all of a stage's runs as one job array."""

    partition: str | None = option(None, "sbatch --partition (null: the cluster's default).")
    account: str | None = option(None, "sbatch --account.")
    qos: str | None = option(None, "sbatch --qos.")
    time_min: int = option(240, "Time limit of each job in minutes (sbatch --time). A run that reaches it is requeued "
                                "and resumes from its last checkpoint (train.args.save_steps), up to "
                                "train.max_retries times.")
    gpus_per_node: int | None = option(None, "GPUs of each job (sbatch --gpus-per-node; null: train.gpus_per_run). "
                                             "With train.launcher=accelerate the job runs `accelerate launch` on them.")
    cpus_per_task: int | None = option(None, "CPU cores of each job (sbatch --cpus-per-task; null: "
                                       "train.cpus_per_run).")
    mem_gb: float | None = option(None, "Memory of each job in GB (sbatch --mem; null: the partition's default).")
    additional_parameters: dict = option({}, "Any other sbatch option, without the dashes: {constraint: a100, "
                                             "exclude: 'node[1-3]', mail_type: FAIL}.")
    setup: list[str] = option([], "Shell lines each job runs before the run (module load ..., source "
                              ".venv/bin/activate).")
    array_parallelism: int = option(64, "Jobs of an array that may run at once (sbatch --array=...%N).")
    poll_s: float = option(15.0, "Seconds between two looks at the jobs' states (one sacct call for all of them).")
    cluster: str = option("slurm", "'slurm' (sbatch) or 'local' (submitit's local executor: the same jobs as processes "
                                   "of this machine, for a try-out without a cluster).", choices=["slurm", "local"])

    def __post_init__(self) -> None:
        check_slurm(self)


@dataclass
class ScoreClusterOptions:
    """``pplaw score``'s cluster options: score the shards as a Slurm job array."""

    slurm: str | None = option(None, "A YAML file with a `slurm:` section (a `pplaw run` recipe will do): score as a "
                                     "Slurm job array with those options (its gpus_per_node, cpus_per_task per task).")
    slurm_tasks: int = option(8, "Tasks of the job array (--slurm): task i scores the shards k with k % tasks == i.")

    def __post_init__(self) -> None:
        integer(self.slurm_tasks, "pplaw score: --slurm_tasks", 1)


def check_slurm(s: SlurmSection, key: str = "slurm") -> None:
    """Value checks of a slurm section; each error names the recipe key (``slurm.time_min``)."""
    for name in ("partition", "account", "qos"):
        nonempty_str(getattr(s, name), f"{key}.{name}")
    integer(s.time_min, f"{key}.time_min", 1, unit=" number of minutes")
    integer(s.gpus_per_node, f"{key}.gpus_per_node", 0, optional=True)
    integer(s.cpus_per_task, f"{key}.cpus_per_task", 1, optional=True)
    number(s.mem_gb, f"{key}.mem_gb", what="a number of GB", optional=True)
    params = s.additional_parameters
    require(isinstance(params, dict) and all(isinstance(k, str) and k and not k.startswith("-") for k in params),
            f"{key}.additional_parameters", "map sbatch option names without dashes (constraint, exclude, ...) to "
            "values", params)
    require(all(isinstance(line, str) for line in s.setup), f"{key}.setup", "be a list of shell lines (strings)",
            s.setup)
    integer(s.array_parallelism, f"{key}.array_parallelism", 1)
    number(s.poll_s, f"{key}.poll_s", what="a number of seconds")
    one_of(s.cluster, f"{key}.cluster", ("slurm", "local"), what="'slurm' or 'local'")


def check_executor(t: Any) -> None:
    """``train.executor`` and the train options it reads (``t``: the recipe's train section). The slurm section
    checks itself whatever the executor (a typo there should not wait for the day it is switched on)."""
    one_of(t.executor, "train.executor", EXECUTORS)
    for key, low in (("cpus_per_run", 1), ("gpus_per_run", 0), ("max_retries", 0)):
        integer(getattr(t, key), f"train.{key}", low)
    nonempty_str(t.ray_address, "train.ray_address", what="a Ray address ('auto', 'ray://head:10001')")


def make_submitit(slurm: SlurmSection, folder: Path, *, cpus: int, gpus: int, max_requeues: int, name: str) -> Any:
    """A submitit executor with the slurm section's options (``slurm.cluster: local``: the local executor); used
    by the pipeline's Slurm executor and by :mod:`pplaw.stream`'s Slurm passes."""
    try:
        import submitit
    except ImportError as err:
        raise ConfigError("running on Slurm needs submitit: pip install 'pplaw[cluster]'") from err
    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=slurm.cluster,
                               **{f"{slurm.cluster}_max_num_timeout": max_requeues})
    params: dict[str, Any] = {"timeout_min": slurm.time_min, "cpus_per_task": cpus, "gpus_per_node": gpus or None,
                              "mem_gb": slurm.mem_gb, "name": name}
    if slurm.cluster == "slurm":
        params.update(slurm_partition=slurm.partition, slurm_account=slurm.account, slurm_qos=slurm.qos,
                      slurm_setup=list(slurm.setup) or None, slurm_array_parallelism=slurm.array_parallelism,
                      slurm_additional_parameters=dict(slurm.additional_parameters) or None)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex
