"""JSONL helpers for the synthetic world (written atomically, :mod:`pplaw._atomic`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from pplaw._atomic import atomic_write_text
from pplaw.exceptions import SerializationError


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
