"""Running a pass over every shard: in this process, as Ray tasks (``executor="ray"``) or as a Slurm job
array (``executor="slurm:RECIPE.yaml"``: the YAML's ``slurm:`` section, as ``pplaw score --slurm``).

Each pass maps a pure per-shard function of :mod:`pplaw.stream.passes` over the shards and yields the
results in shard order, one at a time, so the caller can fold them (a grid merge, a histogram sum) or
write them out without holding every shard's result. With Ray, all shards are submitted at once and the
results are fetched in order; Ray bounds the tasks in flight by the cluster's CPUs.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

from pplaw.exceptions import ConfigError

# executor="local" with PPLAW_STREAM_WORKERS=N > 1 spreads a pass of >= 2 shards and >= LOCAL_POOL_MIN_ROWS
# rows over N processes (default 1: in this process; on the shared 2-core machine 2 workers made pass 1
# ~20% faster and the selection passes no faster, the results going back through pickles). Spawned, not
# forked: a forked child would inherit the core's thread pool without its threads.
LOCAL_POOL_MIN_ROWS = 2_000_000
_POOL: Any = None


def local_workers(n_args: int, rows: Sequence[int] | None, sizes: Sequence[int] | None = None) -> int:
    env = os.environ.get("PPLAW_STREAM_WORKERS")
    try:
        n = int(env) if env else 1
    except ValueError as err:
        raise ConfigError(f"PPLAW_STREAM_WORKERS: expected a whole number of processes, got {env!r}") from err
    big = (sum(rows) >= LOCAL_POOL_MIN_ROWS) if rows is not None else (sum(sizes or [0]) >= 32 << 20)
    return max(1, min(n, n_args)) if big and n_args >= 2 and _spawnable() else 1


def _spawnable() -> bool:
    """Spawned workers re-import the main module from its file: a main read from stdin has none."""
    import sys

    f = getattr(sys.modules.get("__main__"), "__file__", None)
    return f is None or os.path.exists(f)


def _pool(n: int) -> Any:
    global _POOL
    if _POOL is None or _POOL._max_workers != n:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if _POOL is not None:
            _POOL.shutdown()
        _POOL = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"))
        import atexit

        atexit.register(_POOL.shutdown)  # before the interpreter tears the modules down under its callbacks
    return _POOL

EXECUTORS = ("local", "ray", "slurm:RECIPE.yaml")


def check_executor(executor: Any) -> str:
    if executor in ("local", "ray") or (isinstance(executor, str) and executor.startswith("slurm:")
                                        and len(executor) > 6):
        return executor
    raise ConfigError(f"executor: expected one of {EXECUTORS}, got {executor!r}")


def map_shards(fn: Callable[..., Any], args: Sequence[tuple], *, executor: str = "local", desc: str = "",
               progress: bool | None = None, rows: Sequence[int] | None = None,
               sizes: Sequence[int] | None = None) -> Iterator[Any]:
    """``fn(*a)`` for each ``a`` in ``args``, in order. ``rows``: rows per shard, for the progress bar (and,
    with ``sizes`` in bytes when rows are not known yet, whether a local process pool pays off)."""
    from tqdm.auto import tqdm

    check_executor(executor)
    total = sum(rows) if rows is not None else len(args)
    show = progress if progress is not None else (len(args) > 1 and total >= 1_000_000)
    unit = "rows" if rows is not None else "shard"
    with tqdm(total=total, desc=desc, unit=unit, disable=not show) as bar:
        if executor == "local":
            workers = local_workers(len(args), rows, sizes)
            if workers > 1:
                futures = [_pool(workers).submit(fn, *a) for a in args]
                for k, f in enumerate(futures):
                    yield f.result()
                    futures[k] = None  # type: ignore[call-overload]
                    bar.update(rows[k] if rows is not None else 1)
                return
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
