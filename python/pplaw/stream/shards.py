"""Reading a directory of scored shards one piece at a time, and the per-chunk keys in numpy.

A *shard* is one scored file (Parquet or JSONL, :func:`pplaw.io.scored_files` order). Each pass reads only
the columns it needs, one Parquet row group (or one JSONL file) at a time, so a pass holds one piece of one
shard in memory whatever the corpus size. Rows are numbered as :func:`pplaw.io.read_scored` numbers them
(files in sorted path order, then in-file order): the ``row`` of an indices file means the same thing
whichever reader wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pplaw._columns import check_ppl_values, check_unique_values
from pplaw.exceptions import InvalidInputError, MissingColumnError
from pplaw.io import PARQUET_SUFFIXES, scored_files

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _mix64_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def seed_salt(seed: int) -> int:
    """The per-seed salt of ``rust/src/hash.rs`` (``mix64(seed + golden)``)."""
    return _mix64_int((int(seed) + _GOLDEN) & _M64)


def chunk_keys(chunk_id: np.ndarray, seed: int) -> np.ndarray:
    """``pplaw._core.chunk_key(seed, id)`` for a whole array (uint64, wrapping arithmetic as in the core)."""
    z = np.asarray(chunk_id).astype(np.uint64, copy=True)
    z += np.uint64(seed_salt(seed))
    z ^= z >> np.uint64(30)
    z *= _C1
    z ^= z >> np.uint64(27)
    z *= _C2
    z ^= z >> np.uint64(31)
    return z


def unit_open(keys: np.ndarray) -> np.ndarray:
    """``((key >> 12) + 0.5) / 2^52``: the core's uniform in (0, 1) from a key."""
    return ((keys >> np.uint64(12)).astype(np.float64) + 0.5) * (1.0 / float(1 << 52))


@dataclass(frozen=True)
class Columns:
    """Which columns a pass reads: PPL, token count and (when every shard has it) the chunk id."""

    ppl: str = "ppl"
    tokens: str = "n_scored"
    chunk_id: str | None = "chunk_id"


@dataclass
class Piece:
    """One piece of one shard: numpy columns and the global row number of its first row."""

    file: Path
    start: int  # global row of the piece's first row
    file_start: int  # row of the piece's first row inside its file
    ppl: np.ndarray
    tokens: np.ndarray
    chunk_id: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ppl)

    def ids(self) -> np.ndarray:
        """The chunk ids, or (without an id column) the global row numbers, as the in-memory API uses."""
        if self.chunk_id is not None:
            return self.chunk_id
        return np.arange(self.start, self.start + len(self.ppl), dtype=np.uint64)


def list_shards(path: str | Path) -> list[Path]:
    files = scored_files(path)
    if not files:
        raise InvalidInputError(f"no scored Parquet/JSONL files under {str(path)!r}")
    return files


def _check_piece(file: Path, table: pa.Table, cols: Columns) -> None:
    where = f"scored shard {str(file)!r}"
    for name in (cols.ppl, cols.tokens):
        col = table.column(name)
        if col.null_count:
            raise InvalidInputError(f"{where}: column {name!r} has {col.null_count} null value(s)")
    ppl = table.column(cols.ppl)
    if not pa.types.is_floating(ppl.type) and not pa.types.is_integer(ppl.type):
        raise InvalidInputError(f"{where}: column {cols.ppl!r} must be numeric, got {ppl.type}")
    check_ppl_values(ppl, f"{where}: column {cols.ppl!r}")
    if pa.types.is_floating(ppl.type):
        bad = pc.sum(pc.invert(pc.is_finite(ppl))).as_py() or 0
        if bad or (pc.min(ppl).as_py() or 1.0) <= 0:
            raise InvalidInputError(f"{where}: column {cols.ppl!r} must hold finite perplexities > 0 "
                                    f"({bad} non-finite value(s), min {pc.min(ppl).as_py()})")
    tok = table.column(cols.tokens)
    if not pa.types.is_integer(tok.type):
        raise InvalidInputError(f"{where}: column {cols.tokens!r} must hold integer token counts, got {tok.type}")
    if len(tok) and pc.min(tok).as_py() <= 0:
        raise InvalidInputError(f"{where}: column {cols.tokens!r} must hold token counts > 0 (a chunk with no "
                                f"scored tokens has no perplexity), min {pc.min(tok).as_py()}")
    if cols.chunk_id and cols.chunk_id in table.column_names:
        cid = table.column(cols.chunk_id)
        if not pa.types.is_integer(cid.type):
            raise InvalidInputError(f"{where}: column {cols.chunk_id!r} must hold integer ids, got {cid.type}")
        ids = cid.to_numpy()
        # strictly increasing ids (what pplaw score writes) are unique without a hash table
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            check_unique_values(cid, f"{where}: column {cols.chunk_id!r}")
        if len(cid) and pc.min(cid).as_py() < 0:
            raise InvalidInputError(f"{where}: column {cols.chunk_id!r} has negative ids")


def has_column(file: Path, name: str) -> bool:
    """Whether a shard has a column (Parquet: from the footer; JSONL: from its first line's keys)."""
    if file.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return name in pq.ParquetFile(file).schema_arrow.names
    import json

    with open(file, encoding="utf-8") as fh:
        line = fh.readline()
    try:
        return name in json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return False


def iter_pieces(file: Path, start: int, cols: Columns, *, check: bool = False) -> Iterator[Piece]:
    """The pieces of one shard (row group by row group), starting at global row ``start``."""
    names = [cols.ppl, cols.tokens] + ([cols.chunk_id] if cols.chunk_id else [])
    if file.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(file, memory_map=True)  # ~3x faster reads from the page cache than buffered
        except (pa.ArrowInvalid, OSError) as err:
            raise InvalidInputError(f"cannot read {str(file)!r} as Parquet: {err}") from err
        _require(file, pf.schema_arrow.names, names)
        tables = (pf.read_row_group(i, columns=names) for i in range(pf.num_row_groups))
    else:
        import pyarrow.json as pj

        try:
            table = pj.read_json(file)
        except (pa.ArrowInvalid, OSError) as err:
            raise InvalidInputError(f"cannot read {str(file)!r} as JSON lines: {err}") from err
        _require(file, table.column_names, names)
        tables = iter([table.select(names)])
    offset = 0
    for table in tables:
        if check:
            _check_piece(file, table, cols)
        n = table.num_rows
        yield Piece(
            file=file, start=start + offset, file_start=offset,
            ppl=table.column(cols.ppl).to_numpy().astype(np.float64, copy=False),
            tokens=table.column(cols.tokens).to_numpy().astype(np.int64, copy=False),
            chunk_id=(table.column(cols.chunk_id).to_numpy().astype(np.uint64, copy=False)
                      if cols.chunk_id else None),
        )
        offset += n


def _require(file: Path, available: list[str], names: list[str]) -> None:
    missing = [c for c in names if c not in available]
    if missing:
        raise MissingColumnError(f"column {missing[0]!r} not found in {str(file)!r}; available columns: "
                                 f"{', '.join(map(repr, available)) or '(none)'}")
