"""A small stage runner: cached, atomic, timed stages in a run directory.

Each stage ``name`` owns the folder ``<run_dir>/<name>/`` and a manifest ``<run_dir>/<name>/stage.json``::

    {"stage": name, "key": <hash of the stage's inputs and config>, "status": "done",
     "outputs": {...}, "seconds": 12.3, "started_at": ..., "finished_at": ...}

A stage whose manifest says ``done`` with the same key is skipped and its recorded outputs are returned,
so a killed run resumes at the first unfinished stage. An *atomic* stage builds its folder under a temporary
name and renames it into place when it is finished (a reader never sees half a stage); an *in-place* stage
(scoring, the sweep) writes its items atomically in place and resumes item by item itself. The manifest is
written last, atomically.

pplaw never deletes or replaces a folder it did not write: every stage folder it creates holds a marker
file ``.pplaw_stage``, and a stage folder (or a leftover ``.<name>.partial`` / ``.<name>.old``) without it
that is not empty is refused with :class:`~pplaw.exceptions.RunDirError` naming the path.

:class:`RunLock` is the run directory's lock (``fcntl.flock`` on ``<run>/.pplaw.lock``, which records the
holder's pid): a second ``pplaw run`` on the same directory fails at once with
:class:`~pplaw.exceptions.RunLockedError` and touches nothing.
Keys chain: a stage's key includes the outputs of the stages it reads, so a change upstream reruns what
depends on it and nothing else. Paths inside the run directory count relative to it, so a moved or copied
run directory is resumed, not recomputed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from pplaw.exceptions import RunDirError, RunLockedError, SerializationError
from pplaw.pipeline.recipe import digest
from pplaw.runs import write_json_atomic

MANIFEST = "stage.json"
MARKER = ".pplaw_stage"
RUN_MARKER = ".pplaw_run"
LOCK = ".pplaw.lock"
T = TypeVar("T")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class StageResult:
    name: str
    outputs: dict[str, Any]
    seconds: float
    cached: bool
    key: str
    original_seconds: float | None = None  # a cached stage: how long it took when it ran


@dataclass
class Stages:
    """Runs stages into ``root`` and remembers how long each took (``timings``)."""

    root: Path
    log: Callable[[str], None] = print
    results: list[StageResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, name: str) -> Path:
        return self.root / name

    def manifest(self, name: str) -> dict[str, Any] | None:
        path = self.dir(name) / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SerializationError(f"stage manifest {str(path)!r} is corrupt ({err}); delete the folder "
                                     f"{str(self.dir(name))!r} to redo that stage") from err

    def run(self, name: str, inputs: Any, fn: Callable[[Path], dict[str, Any]], *, mode: str = "atomic",
            load: Callable[[Path, dict[str, Any]], T] | None = None) -> dict[str, Any] | T:
        """Run ``fn(stage_dir) -> outputs`` unless a finished manifest with the same key exists.

        Returns ``outputs``, or with ``load`` the stage's typed value ``load(stage_dir, outputs)``
        (:mod:`pplaw.pipeline.artefacts`): the same whether the stage ran or was up to date.

        ``outputs`` is a JSON-able dict; file names in it are relative to the stage folder (which is a
        temporary folder while ``fn`` runs), so a run directory can be moved.

        ``inputs``: anything JSON-able that determines the stage's result (config sections, upstream
        outputs). ``mode``: ``"atomic"`` (``fn`` fills a temporary folder that replaces the stage folder when
        it returns), ``"inplace"`` (``fn`` writes into the stage folder and resumes its own partial work;
        skipped when up to date) or ``"always"`` (like inplace, but ``fn`` is called on every run: it skips
        its finished items itself, e.g. the sweep's points).
        """
        if mode not in ("atomic", "inplace", "always"):
            raise ValueError(f"mode must be atomic, inplace or always, got {mode!r}")
        key = digest(inputs, self.root)  # paths inside the run directory count relative to it
        final = self.dir(name)
        old = self.manifest(name)
        if mode != "always" and old and old.get("status") == "done" and old.get("key") == key:
            self.log(f"[{name}] up to date (finished {old.get('finished_at')}, took {old.get('seconds', 0):.1f} s)")
            self.results.append(StageResult(name, old["outputs"], 0.0, True, key, old.get("seconds")))
            return old["outputs"] if load is None else load(final, old["outputs"])
        started, t0 = _now(), time.perf_counter()
        self.log(f"[{name}] running")
        if mode != "atomic":
            key_file = final / ".stage_key"
            check_owned(final, name)
            if mode == "inplace" and key_file.is_file() and key_file.read_text().strip() != key:
                shutil.rmtree(final)  # partial work of other inputs: it cannot be resumed
            final.mkdir(parents=True, exist_ok=True)
            mark(final, name)
            (final / MANIFEST).unlink(missing_ok=True)  # not done until fn returns
            key_file.write_text(key)
            outputs = fn(final)
        else:
            work = self.root / f".{name}.partial"
            check_owned(final, name)
            remove_owned(work, name)
            work.mkdir(parents=True)
            mark(work, name)
            outputs = fn(work)
            _swap_in(work, final, name)
        seconds = time.perf_counter() - t0
        manifest = {"stage": name, "key": key, "status": "done", "outputs": outputs, "seconds": seconds,
                    "started_at": started, "finished_at": _now()}
        write_json_atomic(final / MANIFEST, manifest)
        self.log(f"[{name}] done in {seconds:.1f} s")
        self.results.append(StageResult(name, outputs, seconds, False, key))
        return outputs if load is None else load(final, outputs)

    def timings(self) -> list[dict[str, Any]]:
        """One row per stage run in this invocation: stage, seconds, cached (skipped as up to date)."""
        return [{"stage": r.name, "seconds": r.seconds, "cached": r.cached, "original_seconds": r.original_seconds}
                for r in self.results]


def mark(folder: Path, name: str) -> None:
    """Mark ``folder`` as pplaw's own (the stage ``name`` wrote it)."""
    marker = folder / MARKER
    if not marker.is_file():
        marker.write_text(f"pplaw stage {name}\n", encoding="utf-8")


def is_owned(folder: Path) -> bool:
    """Whether ``folder`` may be deleted or replaced by pplaw: it is missing or empty, or holds the marker."""
    if not folder.exists():
        return True
    return folder.is_dir() and ((folder / MARKER).is_file() or not any(folder.iterdir()))


def check_owned(folder: Path, name: str) -> None:
    """Raise :class:`RunDirError` unless pplaw may replace ``folder`` (see :func:`is_owned`)."""
    if not is_owned(folder):
        what = "a file" if folder.exists() and not folder.is_dir() else "a folder"
        raise RunDirError(f"{str(folder)!r} is {what} that pplaw did not write (no {MARKER} marker): pplaw needs "
                          f"that path for its {name!r} stage and never deletes what is not its own; move it away "
                          f"or choose another --out")


def remove_owned(folder: Path, name: str) -> None:
    """Delete ``folder`` if it exists and is pplaw's; refuse (:class:`RunDirError`) otherwise."""
    check_owned(folder, name)
    if folder.is_dir():
        shutil.rmtree(folder)


def _swap_in(work: Path, final: Path, name: str) -> None:
    """Replace ``final`` by ``work``: rename the old folder away first, so one of them is always whole."""
    old = final.with_name(f".{final.name}.old")
    check_owned(final, name)
    remove_owned(old, name)
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)  # it held the marker (checked above)


def claim_run_dir(root: str | os.PathLike) -> Path:
    """Make ``root`` a pplaw run directory: created if missing, and marked (``.pplaw_run``).

    Refused (:class:`RunDirError`, naming the path) when ``root`` is a file, or a folder that is neither
    empty nor a pplaw run directory (its marker): pplaw would write its
    stage folders and reports among files that are not its own."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunDirError(f"--out {str(root)!r} is a file, not a folder; choose a folder for the run")
    if root.is_dir() and any(root.iterdir()) and not (root / RUN_MARKER).is_file():
        raise RunDirError(f"--out {str(root)!r} is a folder that is not empty and not a pplaw run directory (no "
                          f"{RUN_MARKER} marker): pplaw will not write its stages among files it did not write; "
                          f"choose a new or empty folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not (root / RUN_MARKER).is_file():
            (root / RUN_MARKER).write_text("pplaw run directory\n", encoding="utf-8")
    except OSError as err:
        raise RunDirError(f"cannot write the run directory {str(root)!r}: {err.strerror or err}") from err
    return root


class RunLock:
    """An exclusive lock on a run directory: ``fcntl.flock`` on ``<run>/.pplaw.lock``, released on exit
    (or when the process dies: the kernel drops a dead process' locks, so a kill -9 leaves no stale lock).

    The lock file records the holder's pid and start time; a second holder fails at once with
    :class:`RunLockedError` naming them. Use as ``with RunLock(run_dir): ...``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK
        self._fh: Any = None

    def acquire(self) -> RunLock:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise RunLockedError(f"run directory {str(self.root)!r} is in use by another pplaw run ({holder}); "
                                 f"wait for it to finish (or stop it) and run again") from err
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {_now()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
