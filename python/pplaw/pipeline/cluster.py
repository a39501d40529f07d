"""The recipe's ``slurm:`` section: how the sweep's and final runs (``train.executor: slurm``) and
``pplaw score --slurm`` are submitted to Slurm through submitit.

A leaf of :mod:`pplaw.pipeline` (it imports no other pipeline module), so that :mod:`~pplaw.pipeline.recipe`
(which holds it as ``RunRecipe.slurm``), the executors and the score command can all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pplaw.exceptions import ConfigError

EXECUTORS = ("local", "ray", "slurm")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class SlurmSection:
    """Slurm jobs (``train.executor: slurm``, ``pplaw score --slurm``), submitted with submitit: one job per
    run, all of a stage's runs as one job array."""

    partition: str | None = _f(None, "sbatch --partition (null: the cluster's default).")
    account: str | None = _f(None, "sbatch --account.")
    qos: str | None = _f(None, "sbatch --qos.")
    time_min: int = _f(240, "Time limit of each job in minutes (sbatch --time). A run that reaches it is requeued "
                            "and resumes from its last checkpoint (train.args.save_steps), up to "
                            "train.max_retries times.")
    gpus_per_node: int | None = _f(None, "GPUs of each job (sbatch --gpus-per-node; null: train.gpus_per_run). "
                                         "With train.launcher=accelerate the job runs `accelerate launch` on them.")
    cpus_per_task: int | None = _f(None, "CPU cores of each job (sbatch --cpus-per-task; null: train.cpus_per_run).")
    mem_gb: float | None = _f(None, "Memory of each job in GB (sbatch --mem; null: the partition's default).")
    additional_parameters: dict = _f({}, "Any other sbatch option, without the dashes: {constraint: a100, "
                                         "exclude: 'node[1-3]', mail_type: FAIL}.")
    setup: list[str] = _f([], "Shell lines each job runs before the run (module load ..., source .venv/bin/activate).")
    array_parallelism: int = _f(64, "Jobs of an array that may run at once (sbatch --array=...%N).")
    poll_s: float = _f(15.0, "Seconds between two looks at the jobs' states (one sacct call for all of them).")
    cluster: str = _f("slurm", "'slurm' (sbatch) or 'local' (submitit's local executor: the same jobs as processes "
                               "of this machine, for a try-out without a cluster).", choices=["slurm", "local"])


@dataclass
class ScoreClusterOptions:
    """``pplaw score``'s cluster options: score the shards as a Slurm job array."""

    slurm: str | None = _f(None, "A YAML file with a `slurm:` section (a `pplaw run` recipe will do): score as a "
                                 "Slurm job array with those options (its gpus_per_node, cpus_per_task per task).")
    slurm_tasks: int = _f(8, "Tasks of the job array (--slurm): task i scores the shards k with k % tasks == i.")

    def __post_init__(self) -> None:
        if not (isinstance(self.slurm_tasks, int) and self.slurm_tasks >= 1):
            raise ConfigError(f"pplaw score: --slurm_tasks must be an integer >= 1, got {self.slurm_tasks!r}")


def check_slurm(s: SlurmSection, key: str = "slurm") -> None:
    """Value checks of a slurm section; each error names the recipe key (``slurm.time_min``)."""
    for name in ("partition", "account", "qos"):
        v = getattr(s, name)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise ConfigError(f"{key}.{name} must be a non-empty string or null, got {v!r}")
    if not (isinstance(s.time_min, int) and not isinstance(s.time_min, bool) and s.time_min >= 1):
        raise ConfigError(f"{key}.time_min must be an integer number of minutes >= 1, got {s.time_min!r}")
    for name, low in (("gpus_per_node", 0), ("cpus_per_task", 1)):
        v = getattr(s, name)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
            raise ConfigError(f"{key}.{name} must be an integer >= {low} or null, got {v!r}")
    if s.mem_gb is not None and not (isinstance(s.mem_gb, (int, float)) and math.isfinite(s.mem_gb) and s.mem_gb > 0):
        raise ConfigError(f"{key}.mem_gb must be a number of GB > 0 or null, got {s.mem_gb!r}")
    if not isinstance(s.additional_parameters, dict) or \
            any(not isinstance(k, str) or not k or k.startswith("-") for k in s.additional_parameters):
        raise ConfigError(f"{key}.additional_parameters must map sbatch option names without dashes (constraint, "
                          f"exclude, ...) to values, got {s.additional_parameters!r}")
    if any(not isinstance(line, str) for line in s.setup):
        raise ConfigError(f"{key}.setup must be a list of shell lines (strings), got {s.setup!r}")
    if not (isinstance(s.array_parallelism, int) and s.array_parallelism >= 1):
        raise ConfigError(f"{key}.array_parallelism must be an integer >= 1, got {s.array_parallelism!r}")
    if not (isinstance(s.poll_s, (int, float)) and math.isfinite(s.poll_s) and s.poll_s > 0):
        raise ConfigError(f"{key}.poll_s must be a number of seconds > 0, got {s.poll_s!r}")
    if s.cluster not in ("slurm", "local"):
        raise ConfigError(f"{key}.cluster must be 'slurm' or 'local', got {s.cluster!r}")


def check_executor(t: Any, slurm: SlurmSection) -> None:
    """``train.executor`` and the train options it reads (``t``: the recipe's train section), and the slurm
    section whatever the executor (a typo there should not wait for the day it is switched on)."""
    if t.executor not in EXECUTORS:
        raise ConfigError(f"train.executor must be one of {list(EXECUTORS)}, got {t.executor!r}")
    for key, low in (("cpus_per_run", 1), ("gpus_per_run", 0), ("max_retries", 0)):
        v = getattr(t, key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
            raise ConfigError(f"train.{key} must be an integer >= {low}, got {v!r}")
    if t.ray_address is not None and (not isinstance(t.ray_address, str) or not t.ray_address.strip()):
        raise ConfigError(f"train.ray_address must be a Ray address ('auto', 'ray://head:10001') or null, got "
                          f"{t.ray_address!r}")
    check_slurm(slurm, "slurm")
