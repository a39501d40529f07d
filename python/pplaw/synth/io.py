"""Atomic file writes and JSONL helpers for the synthetic world."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from pplaw.exceptions import SerializationError


def atomic_write_text(path: str | Path, content: str) -> None:
    """Write ``content`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SerializationError(f"{str(path)!r} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as err:
                    raise SerializationError(f"{str(path)!r} line {i} is not valid JSON: {err}") from err
    return rows
