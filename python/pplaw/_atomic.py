"""Atomic file writes and JSON-safe conversion: the one place pplaw writes a file a reader may be reading.

Every artefact (run records, stage manifests, fits, landscapes, scored shards, plots, task files) is written
to a temporary file in the destination's directory and renamed over it (``os.replace``), so a reader (or a
resumed run) never sees a half-written file. The temporary file is created by ``mkstemp`` (mode 0600); it
is given the usual ``0666 & ~umask`` mode before the rename, so results are readable like any other file.

A leaf module: it imports nothing from pplaw.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # read once at import: os.umask is process-wide, not thread-safe


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy of ``obj``: numpy/torch scalars and arrays become Python numbers and lists, non-finite
    floats become ``None`` (strict JSON has no NaN), paths become strings, dict keys strings; anything else
    is written as its ``repr``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (str, int)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return jsonable(obj.item())  # a torch (or other array library's) scalar
    return repr(obj)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], *, suffix: str = ".tmp",
                 fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    The directory is created if missing; on any error (or interrupt) the temporary file is removed and
    ``path`` is left as it was. ``fsync``: flush the file to disk before the rename (run records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=fsync)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, fsync: bool = False) -> Path:
    """Write ``jsonable(obj)`` as strict JSON (non-finite numbers are null) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n", fsync=fsync)


def atomic_write_lines(path: str | os.PathLike, rows: Any) -> Path:
    """Write ``rows`` (dicts) as JSON lines to ``path`` atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.tmp|\.png|\.partial)$")  # mkstemp names of atomic_write


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an interrupted :func:`atomic_write` left in ``folder`` (not
    recursive); returns them. Call it only while no other process writes there (under the run lock)."""
    d = Path(folder)
    removed = []
    if d.is_dir():
        for f in d.iterdir():
            if f.is_file() and _TEMP.match(f.name):
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120, **kwargs: Any) -> Path:
    """Save a matplotlib figure as PNG atomically (``kwargs`` go to ``savefig``; default tight bounding box)."""
    kwargs.setdefault("bbox_inches", "tight")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, **kwargs), suffix=".png")


__all__ = ["jsonable", "atomic_write", "remove_stale_temporaries", "atomic_write_text", "atomic_write_json", "atomic_write_lines",
           "save_figure"]
