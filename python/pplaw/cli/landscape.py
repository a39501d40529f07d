"""``pplaw landscape SCORED --out DIR``: the perplexity landscape of scored chunks.

SCORED is a Parquet or JSONL file of scored chunks (one row per chunk: ``ppl``, ``n_scored``, optionally
``chunk_id``; see ``pplaw score``) or a directory of them (read in sorted path order). Writes to DIR:
``landscape.json`` (reload with ``pplaw.Landscape.load``), ``bins.parquet`` and ``bins.csv`` (one row per
quantile bin) and ``landscape.png``; prints a summary.

This module also holds :func:`read_scored`, the reader ``pplaw sample`` shares.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa

from pplaw.exceptions import ConfigError, EmptyInputError, InvalidInputError, MissingColumnError
from pplaw.landscape import atomic_write

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Show a progress bar from this many rows (or more than one file) on: small inputs read in a blink.
PROGRESS_MIN_ROWS = 1_000_000


@dataclass
class LandscapeConfig:
    input: str | None = field(
        default=None,
        metadata={"help": "scored chunks: a Parquet/JSONL file or a directory of them (also the first positional)"},
    )
    out: str | None = field(default=None, metadata={"help": "output directory (created if missing)"})
    ppl_column: str = field(default="ppl", metadata={"help": "column with each chunk's perplexity"})
    tokens_column: str = field(default="n_scored", metadata={"help": "column with each chunk's scored-token count"})
    bins: int = field(default=100, metadata={"help": "number of token-weighted quantile bins"})
    no_plot: bool = field(default=False, metadata={"help": "skip landscape.png"})


def with_positional_input(argv: list[str]) -> list[str]:
    """``pplaw cmd SCORED ...`` -> ``pplaw cmd --input SCORED ...`` (HfArgumentParser has no positionals)."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        return ["--input", argv[0], *argv[1:]]
    return argv


def require(value: object, flag: str, command: str) -> None:
    if value is None or value == "":
        raise ConfigError(f"pplaw {command}: {flag} is required (on the command line or in --config)")


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
    files = sorted(
        f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PARQUET_SUFFIXES + JSONL_SUFFIXES
    )
    if not files:
        raise EmptyInputError(f"input directory {str(p)!r} holds no Parquet or JSONL files")
    return files


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
    path: str | os.PathLike, required: list[str], optional: list[str] = (), *, progress: bool | None = None
) -> tuple[pa.Table, list[Path], list[int]]:
    """Read only the needed columns of every scored file behind ``path`` into one table.

    Returns ``(table, files, rows_per_file)``; rows keep the file order then the in-file order, which is
    what row indices written by ``pplaw sample`` refer to. ``optional`` columns are kept when every file
    has them.
    """
    from tqdm.auto import tqdm

    files = scored_files(path)
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
    return table, files, counts


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


def write_table(table: pa.Table, path: Path) -> None:
    """Parquet or CSV by suffix, atomically."""
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv

        atomic_write(path, lambda tmp: pcsv.write_csv(table, tmp))
    else:
        import pyarrow.parquet as pq

        atomic_write(path, lambda tmp: pq.write_table(table, tmp))


# ----------------------------------------------------------------------------------------------------------


def format_summary(land) -> str:
    """A small plain-text table of the landscape for the terminal."""
    lines = [
        f"chunks {land.n_chunks:,}   tokens {land.n_tokens:,}   "
        f"({'token-weighted' if land.weighted else 'equal-length chunks, unweighted'})",
        f"{'space':<8} {'mean':>12} {'std':>12}",
        f"{'ppl':<8} {land.mean:>12.4f} {land.std:>12.4f}",
        f"{'log_ppl':<8} {land.log_mean:>12.4f} {land.log_std:>12.4f}",
    ]
    edges = land.quantiles
    n = len(edges) - 1
    # PPL at the deciles of token mass (or at every edge when there are few bins)
    picks = sorted({round(i * n / 10) for i in range(11)}) if n > 10 else list(range(n + 1))
    lines.append("token-weighted PPL quantiles:")
    lines.append("  " + "  ".join(f"q{k / n:.2f}={edges[k]:.4g}" for k in picks))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from pplaw.cli._config import parse_config
    from pplaw.landscape import Landscape

    (cfg,) = parse_config([LandscapeConfig], with_positional_input(argv), prog="pplaw landscape",
                          description=__doc__.split("\n\n")[0])
    require(cfg.input, "SCORED (or --input)", "landscape")
    require(cfg.out, "--out", "landscape")
    if cfg.bins < 1:
        raise ConfigError(f"pplaw landscape: --bins must be >= 1, got {cfg.bins}")
    table, files, _ = read_scored(cfg.input, [cfg.ppl_column, cfg.tokens_column])
    land = Landscape.from_arrow(table, ppl_column=cfg.ppl_column, tokens_column=cfg.tokens_column, n_bins=cfg.bins)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    land.save(out / "landscape.json")
    write_table(land.bins, out / "bins.parquet")
    write_table(land.bins, out / "bins.csv")
    written = ["landscape.json", "bins.parquet", "bins.csv"]
    if not cfg.no_plot:
        land.plot(out / "landscape.png", title=f"Perplexity landscape of {Path(cfg.input).name}")
        written.append("landscape.png")
    print(f"read {table.num_rows:,} chunks from {len(files)} file(s) under {cfg.input}")
    print(format_summary(land))
    print(f"wrote {', '.join(written)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
