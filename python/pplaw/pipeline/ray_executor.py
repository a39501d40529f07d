"""``train.executor: ray``: each run is a Ray task (Ray core) with the CPUs and GPUs it needs.

The driver joins the cluster at ``train.ray_address`` (``ray.init(address=...)``; null starts a cluster on
this machine, or uses the one this process already started), checks that every node can read and write the
run directory, submits one task per unfinished run and gathers the results as they finish. A task whose
worker process or node dies is retried by Ray (``max_retries``); the retry runs
:func:`~pplaw.pipeline.sweep.train_one` again on the same folder, which resumes or restarts the run there.
A task that Ray gives up on is recorded in the run's ``failed.json`` like any other failed run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pplaw.exceptions import ConfigError, RunDirError
from pplaw.pipeline import sweep as SW
from pplaw.pipeline.sweep import RunSpec

PROBE = ".pplaw_ray_probe"


def _probe(root: str, token: str, node: str) -> str | None:
    """On one node: read the driver's token from the run directory and write one back; None when it worked,
    else what went wrong (a path that is not shared reads no token, or another one)."""
    import socket

    path = Path(root)
    try:
        seen = (path / PROBE).read_text(encoding="utf-8").strip()
    except OSError as err:
        return f"cannot read {str(path / PROBE)!r} there ({err.strerror or err}) on host {socket.gethostname()}"
    if seen != token:
        return f"{str(path)!r} there is another folder than the driver's (host {socket.gethostname()})"
    try:
        (path / f"{PROBE}.{node}").write_text(token, encoding="utf-8")
    except OSError as err:
        return f"cannot write into {str(path)!r} there ({err.strerror or err}) on host {socket.gethostname()}"
    return None


@dataclass
class RayExecutor:
    """Runs a stage's unfinished runs as Ray tasks (see the module docstring)."""

    address: str | None
    cpus: int
    gpus: int
    max_retries: int
    threads: int
    launcher: str
    accelerate_config: str | None
    run_dir: Path
    task: Callable[..., dict[str, Any]] = SW.train_pinned  # the task body (a test swaps in one that kills itself)
    probe: Callable[[str, str, str], str | None] = _probe  # the shared-path probe (a test fakes a node-local disk)

    def run(self, todo: list[RunSpec], finish: Callable[[RunSpec, dict[str, Any]], None]) -> None:
        import ray

        own = not ray.is_initialized()
        if own:
            # log_to_driver off: each run's output is in its train.log, the driver shows one progress bar
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
        try:
            self._check_resources(ray)
            self.check_shared(ray)
            remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries,
                                retry_exceptions=False)(self.task)
            refs = {remote.options(name=f"pplaw:{s.id}").remote(s, self.launcher, self.accelerate_config,
                                                                 self.threads): s for s in todo}
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    spec = refs[ref]
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as err:  # retries spent: worker/node lost, task cancelled
                        res = SW.record_failure(spec, type(err).__name__,
                                                f"Ray task lost after {self.max_retries} retries "
                                                f"(train.max_retries): {str(err)[:2000]}")
                    finish(spec, res)
        finally:
            if own:
                ray.shutdown()

    def _check_resources(self, ray: Any) -> None:
        """A task no node can hold would wait for ever: say which recipe key asks too much."""
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpu = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
        gpu = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
        if self.cpus > cpu:
            raise ConfigError(f"train.cpus_per_run={self.cpus}, but the largest node of the Ray cluster has {cpu:g} "
                              f"CPUs: no run could ever be scheduled")
        if self.gpus > gpu:
            raise ConfigError(f"train.gpus_per_run={self.gpus}, but the largest node of the Ray cluster has {gpu:g} "
                              f"GPUs: no run could ever be scheduled")

    def check_shared(self, ray: Any) -> None:
        """Every alive node can read what the driver wrote into the run directory and write there: a tiny task
        pinned to each node; :class:`RunDirError` naming the path (and the node) otherwise."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        root = self.run_dir.resolve()
        token = secrets.token_hex(8)
        (root / PROBE).write_text(token, encoding="utf-8")
        probe = ray.remote(num_cpus=0, max_retries=0)(self.probe)
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        try:
            refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
                    .remote(str(root), token, n) for n in nodes]
            for node, err in zip(nodes, ray.get(refs, timeout=300)):
                if err is None and not (root / f"{PROBE}.{node}").is_file():
                    err = "its file did not appear in the driver's folder (not a shared file system)"
                if err is not None:
                    raise RunDirError(f"train.executor=ray: the run directory {str(root)!r} is not reachable from "
                                      f"Ray node {node[:12]}: {err}. Put the run directory (--out) on a file "
                                      f"system that every node mounts at the same path.")
        finally:
            for p in root.glob(PROBE + "*"):
                p.unlink(missing_ok=True)
