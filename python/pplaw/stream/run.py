"""Running a pass over every shard: in this process, as Ray tasks (``executor="ray"``) or as a Slurm job
array (``executor="slurm:RECIPE.yaml"``: the YAML's ``slurm:`` section, as ``pplaw score --slurm``).

Each pass maps a pure per-shard function of :mod:`pplaw.stream.passes` over the shards and yields the
results in shard order, one at a time, so the caller can fold them (a grid merge, a histogram sum) or
write them out without holding every shard's result. With Ray, all shards are submitted at once and the
results are fetched in order; Ray bounds the tasks in flight by the cluster's CPUs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from pplaw.exceptions import ConfigError

EXECUTORS = ("local", "ray", "slurm:RECIPE.yaml")


def check_executor(executor: Any) -> str:
    if executor in ("local", "ray") or (isinstance(executor, str) and executor.startswith("slurm:")
                                        and len(executor) > 6):
        return executor
    raise ConfigError(f"executor: expected one of {EXECUTORS}, got {executor!r}")


def map_shards(fn: Callable[..., Any], args: Sequence[tuple], *, executor: str = "local", desc: str = "",
               progress: bool | None = None, rows: Sequence[int] | None = None) -> Iterator[Any]:
    """``fn(*a)`` for each ``a`` in ``args``, in order. ``rows``: rows per shard, for the progress bar."""
    from tqdm.auto import tqdm

    check_executor(executor)
    total = sum(rows) if rows is not None else len(args)
    show = progress if progress is not None else (len(args) > 1 and total >= 1_000_000)
    unit = "rows" if rows is not None else "shard"
    with tqdm(total=total, desc=desc, unit=unit, disable=not show) as bar:
        if executor == "local":
            for k, a in enumerate(args):
                yield fn(*a)
                bar.update(rows[k] if rows is not None else 1)
            return
        if executor.startswith("slurm:"):
            from pplaw.stream.slurm import slurm_map

            for k, res in enumerate(slurm_map(fn, args, executor[len("slurm:"):], desc)):
                yield res
                bar.update(rows[k] if rows is not None else 1)
            return
        try:
            import ray
        except ImportError as err:
            raise ImportError("executor='ray' needs Ray: pip install 'pplaw[ray]'") from err
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(*a) for a in args]
        for k, ref in enumerate(refs):
            yield ray.get(ref)
            refs[k] = None  # drop the reference: the object store may free the result
            bar.update(rows[k] if rows is not None else 1)
