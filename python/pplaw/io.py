"""Reading and writing pplaw's data files: scored chunks, tables, and the indices files that select a subset.

- **scored chunks** (``pplaw score`` output, or any Parquet/JSONL with ``ppl``/``n_scored`` columns):
  :func:`scored_files` lists the files behind a path (sorted: the row order every index refers to),
  :func:`read_scored` reads the needed columns of all of them into one Arrow table;
- **tables**: :func:`write_table` (Parquet or CSV by suffix, atomically);
- **indices files** (``pplaw sample`` and the pipeline's plan/select stages write them; a CPT run's
  ``domain_indices`` reads them): :func:`write_indices` / :func:`read_indices`. One row per selected chunk:
  ``row`` (position in the scored chunks), ``chunk_id`` when known, ``file``/``file_row`` for a multi-file
  input, and the chunk's PPL and token count.

Used by the command line (``pplaw landscape``, ``pplaw sample``), the CPT data loader and the pipeline.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from pplaw._columns import check_ppl_values, check_unique_values
from pplaw._atomic import atomic_write
from pplaw.exceptions import EmptyInputError, InvalidInputError, MissingColumnError

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Show a progress bar from this many rows (or more than one file) on: small inputs read in a blink.
PROGRESS_MIN_ROWS = 1_000_000


# ----------------------------------------------------------------------------------------------------------
# reading scored chunks


def scored_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet/JSONL files behind ``path`` (a file, or a directory searched recursively, sorted)."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"input {str(p)!r} does not exist")
    if p.is_file():
        if p.suffix.lower() not in PARQUET_SUFFIXES + JSONL_SUFFIXES:
            raise InvalidInputError(
                f"input {str(p)!r}: expected a Parquet ({', '.join(PARQUET_SUFFIXES)}) or JSONL "
                f"({', '.join(JSONL_SUFFIXES)}) file"
            )
        return [p]
    found = sorted(
        f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PARQUET_SUFFIXES + JSONL_SUFFIXES
    )
    listed = _listed_shards(p)
    if listed is not None:  # a `pplaw score` output: exactly the shards its summary lists
        missing = [f for f in listed if not f.is_file()]
        if missing:
            raise InvalidInputError(f"scored directory {str(p)!r}: shard {str(missing[0])!r} listed in "
                                    f"{SCORE_SUMMARY} is missing")
        extra = sorted(set(found) - set(listed))
        if extra:
            warnings.warn(f"{str(p)!r}: ignoring {len(extra)} file(s) that {SCORE_SUMMARY} does not list: "
                          f"{', '.join(str(f.relative_to(p)) for f in extra[:5])}{' ...' if len(extra) > 5 else ''}",
                          stacklevel=2)
        return listed
    files = found
    if not files:
        raise EmptyInputError(f"input directory {str(p)!r} holds no Parquet or JSONL files")
    return files


SCORE_SUMMARY = "summary.yaml"  # written by `pplaw score` when every shard is done: it lists them
SCORE_MANIFEST = "manifest.yaml"


def _listed_shards(p: Path) -> list[Path] | None:
    """The shards a finished ``pplaw score`` output lists (in order), or None for a plain folder of files.

    A ``pplaw score`` folder whose scoring has not finished (a manifest, no summary) is an error: its
    shards are not all there."""
    import yaml

    summary, manifest = p / SCORE_SUMMARY, p / SCORE_MANIFEST
    if summary.is_file():
        try:
            shards = (yaml.safe_load(summary.read_text(encoding="utf-8")) or {}).get("shards")
        except (OSError, yaml.YAMLError, AttributeError) as err:
            raise InvalidInputError(f"cannot read {str(summary)!r}: {err}") from err
        if isinstance(shards, list) and shards and all(isinstance(s, str) for s in shards):
            return [p / s for s in shards]
        return None
    if manifest.is_file():
        try:
            scored = "scorer_fingerprint" in (yaml.safe_load(manifest.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, TypeError):
            scored = False
        if scored:
            raise InvalidInputError(f"{str(p)!r} is a `pplaw score` output whose scoring has not finished (no "
                                    f"{SCORE_SUMMARY}); run the same `pplaw score` again to finish it")
    return None


def jsonl_problem(path: str | os.PathLike, max_lines: int | None = None) -> str | None:
    """What is wrong with a JSON-lines file, naming the line (``"empty"``, ``"line 3: ..."``), or None."""
    import json

    p = Path(path)
    n = 0
    with open(p, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if max_lines is not None and n > max_lines:
                break
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as err:
                return f"line {n} is not valid JSON ({err})"
            if not isinstance(obj, dict):
                return f"line {n} is not a JSON object (one {{...}} per line), but {type(obj).__name__}"
    if n == 0 or p.stat().st_size == 0:
        return "the file is empty"
    return None


def check_unique_ids(table: pa.Table, column: str, where: str) -> None:
    """Refuse null or repeated values in ``column`` of ``table`` (:class:`InvalidInputError` naming ``where``,
    the column and an example): :func:`pplaw._columns.check_unique_values`, the API's check."""
    if column in table.column_names:
        check_unique_values(table.column(column), f"{where}: column {column!r}")


def _pick(schema: pa.Schema, file: Path, required: list[str], optional: list[str]) -> list[str]:
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise MissingColumnError(
            f"column {missing[0]!r} not found in {str(file)!r}; available columns: "
            f"{', '.join(map(repr, schema.names)) or '(none)'}"
        )
    return required + [c for c in optional if c in schema.names and c not in required]


def _read_parquet(file: Path, required: list[str], optional: list[str], bar: Callable[[int], None]) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except (pa.ArrowInvalid, OSError) as err:
        raise InvalidInputError(f"cannot read {str(file)!r} as Parquet: {err}") from err
    columns = _pick(pf.schema_arrow, file, required, optional)
    parts = []
    for i in range(pf.num_row_groups):  # row group by row group, so a long file moves the bar
        part = pf.read_row_group(i, columns=columns)
        bar(part.num_rows)
        parts.append(part)
    return pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table().select(columns)


def _read_jsonl(file: Path, required: list[str], optional: list[str], bar: Callable[[int], None]) -> pa.Table:
    import pyarrow.json as pj

    try:
        reader = pj.open_json(file)
        batches = []
        for batch in reader:
            bar(batch.num_rows)
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except (pa.ArrowInvalid, OSError) as err:
        raise InvalidInputError(f"cannot read {str(file)!r} as JSON lines (one object per line): {err}") from err
    return table.select(_pick(table.schema, file, required, optional))


def read_scored(
    path: str | os.PathLike, required: list[str], optional: list[str] = (), *, progress: bool | None = None,
    ppl_column: str = "ppl",
) -> tuple[pa.Table, list[Path], list[int]]:
    """Read only the needed columns of every scored file behind ``path`` into one table.

    Returns ``(table, files, rows_per_file)``; rows keep the file order then the in-file order, which is
    what row indices written by ``pplaw sample`` refer to. ``optional`` columns are kept when every file
    has them.
    """
    from tqdm.auto import tqdm

    files = scored_files(path)
    # chunk_id is read even when the caller does not need it: every reader (`pplaw landscape` as `pplaw
    # sample`) refuses a copied shard, instead of the landscape counting its chunks twice
    want = list(optional)
    optional = [*want, "chunk_id"] if "chunk_id" not in (*required, *want) else want
    total = _count_rows(files)
    show = progress if progress is not None else (len(files) > 1 or (total or 0) >= PROGRESS_MIN_ROWS)
    tables, counts = [], []
    with tqdm(total=total, unit="rows", desc=f"reading {len(files)} file(s)", disable=not show) as bar:
        for file in files:
            reader = _read_parquet if file.suffix.lower() in PARQUET_SUFFIXES else _read_jsonl
            table = reader(file, list(required), list(optional), bar.update)
            tables.append(table)
            counts.append(table.num_rows)
    # keep an optional column only when all files have it; unify types (int32 in one file, int64 in another)
    common = [c for c in tables[0].column_names if all(c in t.column_names for t in tables)]
    try:
        table = pa.concat_tables([t.select(common) for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise InvalidInputError(f"scored files under {str(path)!r} have incompatible column types: {err}") from err
    if table.num_rows == 0:
        raise EmptyInputError(f"input {str(path)!r} has no rows")
    check_unique_ids(table, "chunk_id", f"scored chunks {str(path)!r}")
    check_ppl_at_least_one(table, ppl_column, f"scored chunks {str(path)!r}")
    if "chunk_id" in table.column_names and "chunk_id" not in (*required, *want):
        table = table.drop_columns(["chunk_id"])
    return table, files, counts


def check_ppl_at_least_one(table: pa.Table, column: str, where: str) -> int:
    """Refuse a PPL ``column`` with values below 1 (:func:`pplaw._columns.check_ppl_values`, the API's
    check); returns how many values are below 1."""
    if column not in table.column_names:
        return 0
    return check_ppl_values(table.column(column), f"{where}: column {column!r}")


def _count_rows(files: list[Path]) -> int | None:
    """Total rows when cheap to know (Parquet footers); None when a JSONL file is involved."""
    import pyarrow.parquet as pq

    total = 0
    for file in files:
        if file.suffix.lower() not in PARQUET_SUFFIXES:
            return None
        try:
            total += pq.ParquetFile(file).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as err:
            raise InvalidInputError(f"cannot read {str(file)!r} as Parquet: {err}") from err
    return total


# ----------------------------------------------------------------------------------------------------------
# writers


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    """Parquet or CSV by suffix, atomically."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv

        atomic_write(path, lambda tmp: pcsv.write_csv(table, tmp))
    else:
        import pyarrow.parquet as pq

        atomic_write(path, lambda tmp: pq.write_table(table, tmp))


# ----------------------------------------------------------------------------------------------------------
# indices files


def write_indices(table: pa.Table, idx: Any, path: str | os.PathLike, *, chunk_id_column: str | None = "chunk_id",
                  stats_columns: Sequence[str] = ("ppl", "n_scored"), files: Sequence[Path] | None = None,
                  counts: Sequence[int] | None = None) -> None:
    """Write the rows ``idx`` of ``table`` as an indices file (Parquet, atomically): ``row``, then
    ``chunk_id_column`` when the table has it, ``file``/``file_row`` when ``files`` (with their row
    ``counts``, as :func:`read_scored` returns them) name more than one file, then ``stats_columns``
    (those the table has)."""
    sel = pa.array(np.asarray(idx, dtype=np.uint64), type=pa.uint64())
    cols = {"row": sel}
    if chunk_id_column and chunk_id_column in table.column_names:
        cols[chunk_id_column] = table.column(chunk_id_column).take(sel)
    if files is not None and len(files) > 1:
        idx = np.asarray(idx)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.uint64)
        file_no = np.searchsorted(np.cumsum(counts), idx, side="right")
        names = pa.array([str(f) for f in files])
        cols["file"] = pa.DictionaryArray.from_arrays(pa.array(file_no, type=pa.int32()), names)
        cols["file_row"] = pa.array(idx - starts[file_no], type=pa.uint64())
    for c in stats_columns:
        if c in table.column_names:
            cols[c] = table.column(c).take(sel)
    write_table(pa.table(cols), path)


def read_indices(path: str | os.PathLike, column: str | None = "auto", dataset: Any = None) -> tuple[np.ndarray, Any]:
    """Row positions of a subset, from an indices file (:func:`write_indices`); returns (rows, table).

    ``column="auto"`` takes the first of ``index`` / ``row`` (``pplaw sample`` writes ``row``: positions in
    its input, which must be ``domain_data``); without either, a ``chunk_id`` column is matched against
    the ``dataset``'s ``chunk_id`` column, which does not depend on row order. With a ``dataset`` (a
    ``datasets.Dataset`` or Arrow table) the rows are checked to lie inside it.
    """
    import pyarrow.parquet as pq

    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"domain_indices file {str(p)!r} does not exist (expected a Parquet file from `pplaw sample`)")
    table = pq.read_table(p)
    n = None if dataset is None else len(dataset)
    if column == "auto":
        column = next((c for c in ("index", "row") if c in table.column_names), None)
    if column is not None and column in table.column_names:
        idx = table.column(column).to_numpy(zero_copy_only=False)
    elif (column is None and dataset is not None and "chunk_id" in table.column_names
          and "chunk_id" in dataset.column_names):
        wanted = table.column("chunk_id").to_numpy(zero_copy_only=False)
        ids = np.asarray(dataset.with_format("numpy")["chunk_id"])
        order = np.argsort(ids, kind="stable")
        pos = np.minimum(np.searchsorted(ids[order], wanted), max(n - 1, 0))
        ok = ids[order][pos] == wanted if n else np.zeros(len(wanted), bool)
        if not ok.all():
            raise InvalidInputError(f"domain_indices {str(p)!r}: {int((~ok).sum())} chunk_id(s) are not in domain_data, "
                                    f"e.g. {wanted[~ok][:5].tolist()}")
        idx = order[pos]
    else:
        raise MissingColumnError(
            f"domain_indices {str(p)!r} has no column {column or 'index/row'!r} of row positions"
            + ("" if column else " and no 'chunk_id' column matching domain_data")
            + f"; columns found: {table.column_names}")
    if len(idx) == 0:
        raise EmptyInputError(f"domain_indices {str(p)!r} selects no rows: the subset is empty")
    if not np.issubdtype(idx.dtype, np.integer):
        raise InvalidInputError(f"domain_indices {str(p)!r}: column {column!r} must hold integers, got {idx.dtype}")
    bad = (idx < 0) | (idx >= n) if n is not None else idx < 0
    if bad.any():
        raise InvalidInputError(f"domain_indices {str(p)!r}: {int(bad.sum())} index(es) outside [0, {n}) of domain_data, "
                                f"e.g. {idx[bad][:5].tolist()}")
    return idx.astype(np.int64), table
