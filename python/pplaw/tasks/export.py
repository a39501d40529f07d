"""``pplaw tasks export``: download a suite's benchmark data from the Hub into a local task data directory.

Each leaf task's splits are read with ``datasets.load_dataset`` from the same Hub dataset (path, config,
split) lm-eval's own task reads, and written as ``<out>/<task>/<split>.jsonl`` - the layout the local
task templates expect. Files are written atomically, so an interrupted export never leaves a truncated
file behind, and finished files are skipped on a re-run (``overwrite=False``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from pplaw._atomic import atomic_write
from pplaw.exceptions import ConfigError, PplawError
from pplaw.tasks import catalog, leaf_tasks, online_name, suites


def export_tasks(names: list[str], out_dir: str | os.PathLike, *, overwrite: bool = False,
                 load: Callable | None = None) -> list[Path]:
    """Export the data of ``names`` (online or local task/group names) to ``out_dir``; returns the files.

    ``load`` defaults to ``datasets.load_dataset`` (injectable for tests and mirrors).
    """
    if load is None:
        from datasets import load_dataset as load
    leaves, _ = catalog()
    out = Path(out_dir)
    todo = []
    for name in names:
        for leaf in leaf_tasks(online_name(name)):
            task = leaves[leaf]
            for local_split, hub_split in task.splits.items():
                todo.append((task, local_split, hub_split))
    written = []
    for task, local_split, hub_split in tqdm(todo, desc="export", unit="split"):
        target = out / task.online / f"{local_split}.jsonl"
        if target.is_file() and not overwrite:
            written.append(target)
            continue
        try:
            ds = load(task.hub_path, task.hub_name, split=hub_split)
        except Exception as err:  # network, auth, a dataset that moved: say which one and why
            raise PplawError(
                f"cannot download {task.hub_path!r} (config {task.hub_name!r}, split {hub_split!r}) for task "
                f"{task.online}: {type(err).__name__}: {err}. `pplaw tasks export` needs the Hugging Face Hub"
            ) from err
        atomic_write(target, lambda tmp: ds.to_json(str(tmp), lines=True, force_ascii=False))
        written.append(target)
    return written


def export_suite(suite: str, out_dir: str | os.PathLike, **kwargs) -> list[Path]:
    """Export every task of a built-in suite (see :func:`export_tasks`)."""
    defined = suites()
    if suite not in defined:
        raise ConfigError(f"unknown suite {suite!r}; suites: {', '.join(sorted(defined))}")
    return export_tasks(list(defined[suite]["tasks"]), out_dir, **kwargs)


__all__ = ["export_tasks", "export_suite"]
