"""A small stage runner: cached, atomic, timed stages in a run directory.

Each stage ``name`` owns the folder ``<run_dir>/<name>/`` and a manifest ``<run_dir>/<name>/stage.json``::

    {"stage": name, "key": <hash of the stage's inputs and config>, "status": "done",
     "outputs": {...}, "seconds": 12.3, "started_at": ..., "finished_at": ...}

A stage whose manifest says ``done`` with the same key is skipped and its recorded outputs are returned,
so a killed run resumes at the first unfinished stage. An *atomic* stage builds its folder under a temporary
name and renames it into place when it is finished (a reader never sees half a stage); an *in-place* stage
(scoring, the sweep) writes its items atomically in place and resumes item by item itself. The manifest is
written last, atomically.
Keys chain: a stage's key includes the outputs of the stages it reads, so a change upstream reruns what
depends on it and nothing else.
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

from pplaw.exceptions import SerializationError
from pplaw.pipeline.recipe import digest
from pplaw.runs import write_json_atomic

MANIFEST = "stage.json"
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
        key = digest(inputs)
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
            if mode == "inplace" and key_file.is_file() and key_file.read_text().strip() != key:
                shutil.rmtree(final)  # partial work of other inputs: it cannot be resumed
            final.mkdir(parents=True, exist_ok=True)
            (final / MANIFEST).unlink(missing_ok=True)  # not done until fn returns
            key_file.write_text(key)
            outputs = fn(final)
        else:
            work = self.root / f".{name}.partial"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            outputs = fn(work)
            _swap_in(work, final)
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


def _swap_in(work: Path, final: Path) -> None:
    """Replace ``final`` by ``work``: rename the old folder away first, so one of them is always whole."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)
