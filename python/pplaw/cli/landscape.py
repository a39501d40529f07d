"""``pplaw landscape SCORED --out DIR``: the perplexity landscape of scored chunks.

SCORED is a Parquet or JSONL file of scored chunks (one row per chunk: ``ppl``, ``n_scored``, optionally
``chunk_id``; see ``pplaw score``) or a directory of them (read in sorted path order). Writes to DIR:
``landscape.json`` (reload with ``pplaw.Landscape.load``), ``bins.parquet`` and ``bins.csv`` (one row per
quantile bin) and ``landscape.png``; prints a summary. The readers and writers are :mod:`pplaw.io`'s.

A directory is read shard by shard (:mod:`pplaw.stream`: bounded memory, quantile edges at the fine grid's
resolution, relative PPL error <= 5e-4); ``--in-memory`` reads it into one table for exact edges.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pplaw._checks import at_least, folder, required
from pplaw.io import read_scored, write_table


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
    in_memory: bool = field(default=False, metadata={
        "help": "read a directory into one table (exact quantile edges) instead of shard by shard"})
    executor: str = field(default="local", metadata={"help": "directories: run the shards here (local), as Ray "
                                                             "tasks (ray) or as a Slurm job array "
                                                             "(slurm:RECIPE.yaml, its slurm: section)"})

    def __post_init__(self) -> None:
        required(self.input, "SCORED (or --input)", "landscape")
        required(self.out, "--out", "landscape")
        at_least(self.bins, "pplaw landscape: --bins", 1)


def with_positional_input(argv: list[str]) -> list[str]:
    """``pplaw cmd SCORED ...`` -> ``pplaw cmd --input SCORED ...`` (HfArgumentParser has no positionals)."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        return ["--input", argv[0], *argv[1:]]
    return argv


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
    from pplaw.config import parse_config
    from pplaw.landscape import Landscape

    (cfg,) = parse_config([LandscapeConfig], with_positional_input(argv), prog="pplaw landscape",
                          description=__doc__.split("\n\n")[0])
    folder(cfg.out, "pplaw landscape: --out")  # before reading: not a FileExistsError after the work
    if Path(cfg.input).is_dir() and not cfg.in_memory:
        from pplaw.stream import scan_dir

        scan = scan_dir(cfg.input, ppl_column=cfg.ppl_column, tokens_column=cfg.tokens_column,
                        executor=cfg.executor)
        land, n_rows, files = scan.landscape(cfg.bins), scan.n_rows, scan.files
    else:
        table, files, _ = read_scored(cfg.input, [cfg.ppl_column, cfg.tokens_column], ppl_column=cfg.ppl_column)
        land = Landscape.from_arrow(table, ppl_column=cfg.ppl_column, tokens_column=cfg.tokens_column,
                                    n_bins=cfg.bins)
        n_rows = table.num_rows

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    land.save(out / "landscape.json")
    write_table(land.bins, out / "bins.parquet")
    write_table(land.bins, out / "bins.csv")
    written = ["landscape.json", "bins.parquet", "bins.csv"]
    if not cfg.no_plot:
        land.plot(out / "landscape.png", title=f"Perplexity landscape of {Path(cfg.input).name}")
        written.append("landscape.png")
    print(f"read {n_rows:,} chunks from {len(files)} file(s) under {cfg.input}")
    print(format_summary(land))
    print(f"wrote {', '.join(written)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
