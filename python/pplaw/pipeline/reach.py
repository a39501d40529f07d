"""Is the cluster a recipe names there? Bounded-time checks before any work, so that a wrong address or
partition is one error naming it, not a hang (``ray.init`` retries a silent address for minutes) or a failure
after the corpus is scored and the plan made (``sbatch`` refusing an unknown partition).

- :func:`check_ray_address`: ``train.ray_address`` ``host:port`` must accept a TCP connection within the
  timeout; ``ray://host:port`` (Ray Client) also needs ``ray[client]`` installed;
- :func:`check_slurm_partition`: ``slurm.partition`` must be listed by ``sinfo -p PART -h``.

A leaf of :mod:`pplaw.pipeline`: imports nothing of pplaw but :mod:`pplaw.exceptions`, so ``pplaw score
--slurm`` can use it without loading the recipe.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
from typing import Any

from pplaw.exceptions import ConfigError

TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001  # ray://host without a port
RAY_GCS_PORT = 6379  # host without a port


def _host_port(address: str, default_port: int, key: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    if not port.isdigit():
        raise ConfigError(f"{key} {address!r}: expected host:port (a port number after the colon)")
    return host.strip("[]"), int(port)


def check_ray_address(address: str | None, key: str = "train.ray_address", timeout: float = TIMEOUT_S) -> None:
    """Refuse (ConfigError naming ``key``, the address and what was tried) a Ray address that nothing answers
    at within ``timeout`` seconds, or a Ray Client address (``ray://``) without ``ray[client]``. ``None``,
    ``'auto'`` and ``'local'`` are Ray's own discovery and are left to it."""
    if not address or address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    if client and any(importlib.util.find_spec(m) is None for m in ("grpc", "ray")):  # what ray[client] adds
        raise ConfigError(f"{key} {address!r} is a Ray Client address (ray://), which needs Ray Client: "
                          f"pip install 'ray[client]' (or give the cluster's GCS address host:6379 from a node of it)")
    host, port = _host_port(address[len("ray://"):] if client else address,
                            RAY_CLIENT_PORT if client else RAY_GCS_PORT, key)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise ConfigError(f"{key} {address!r}: nothing answers at {host}:{port} (a TCP connection, tried for "
                          f"{timeout:g} s: {err.strerror or err}); start the cluster (`ray start --head` on its "
                          f"head node) or correct the address") from None


def check_slurm_partition(partition: str | None, key: str = "slurm.partition", timeout: float = 10.0,
                          run: Any = subprocess.run) -> None:
    """Refuse a partition that ``sinfo -p PART -h`` does not list (ConfigError naming ``key`` and the
    partitions there are). Nothing to check without a partition (the cluster's default) or without sinfo."""
    if not partition or shutil.which("sinfo") is None:
        return
    cmd = ["sinfo", "-p", partition, "-h", "-o", "%P"]
    try:
        out = run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{key} {partition!r}: `{' '.join(cmd)}` did not answer in {timeout:g} s (is the Slurm "
                          f"controller up?)") from None
    if out.returncode == 0 and out.stdout.strip():
        return
    try:
        every = run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=timeout).stdout.split()
    except subprocess.TimeoutExpired:
        every = []
    known = ", ".join(sorted({p.rstrip("*") for p in every})) or "none listed"
    why = f" ({out.stderr.strip()})" if out.stderr.strip() else ""
    raise ConfigError(f"{key} {partition!r}: `{' '.join(cmd)}` lists no such partition{why}; the partitions "
                      f"here: {known}")


__all__ = ["check_ray_address", "check_slurm_partition"]
