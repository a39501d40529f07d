"""``pplaw export RUN --to DIR``: publish the final subset of a finished ``pplaw run``.

Writes DIR: the subset's rows (``--format parquet``: ``data/train-*.parquet`` shards, the Hub's layout;
``--format dataset``: a ``save_to_disk`` folder for ``datasets.load_from_disk``), a dataset card
``README.md`` (the Hub's format: YAML header with ``configs``, size category, source dataset, base model;
a body with the landscape, the law and its held-out error, the band, the budget, the forecast and its
interval, the commands) and ``pplaw_provenance.json``. ``--push-to-hub USER/NAME`` then pushes it; the
local copy is written first, so a Hub that cannot be reached loses nothing. The work is
:func:`pplaw.pipeline.export.export_run`'s.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field

from pplaw._checks import integer, one_of, required
from pplaw.cli.landscape import with_positional_input


@dataclass
class ExportConfig:
    input: str | None = field(default=None, metadata={"help": "the run directory of a finished `pplaw run` (also "
                                                              "the first positional)"})
    to: str | None = field(default=None, metadata={"help": "output folder (created; an earlier export is replaced)"})
    method: str = field(default="dos", metadata={"help": "which final subset: dos, best_sweep, random, lowest_ppl, "
                                                         "highest_ppl"})
    seed: int | None = field(default=None, metadata={"help": "its seed (default: the first of select.seeds)"})
    format: str = field(default="parquet", metadata={"help": "parquet (Hub layout) or dataset (save_to_disk)"})
    num_shards: int | None = field(default=None, metadata={"help": "number of shards (default: ~500 MB each)"})
    decode_text: bool = field(default=False, metadata={"help": "add a text column: the token ids decoded with the "
                                                                "run's tokenizer"})
    push_to_hub: str | None = field(default=None, metadata={"help": "then push to this Hub dataset repo (USER/NAME)"})
    private: bool = field(default=False, metadata={"help": "with --push-to-hub: create the repo private"})

    def __post_init__(self) -> None:
        required(self.input, "RUN (or --input)", "export")
        required(self.to, "--to", "export")
        one_of(self.format, "pplaw export: --format", ("parquet", "dataset"))
        integer(self.num_shards, "pplaw export: --num-shards", 1, optional=True)


def main(argv: list[str]) -> int:
    from pplaw.config import parse_config
    from pplaw.pipeline.export import export_run

    (cfg,) = parse_config([ExportConfig], with_positional_input(argv), prog="pplaw export",
                          description=__doc__.split("\n\n")[0])
    command = "pplaw export " + " ".join(shlex.quote(a) for a in argv)
    out = export_run(cfg.input, cfg.to, method=cfg.method, seed=cfg.seed, format=cfg.format,
                     num_shards=cfg.num_shards, decode_text=cfg.decode_text, push_to_hub=cfg.push_to_hub,
                     private=cfg.private or None, command=command)
    print(f"pplaw export: wrote {out} (card: {out / 'README.md'})")
    if cfg.push_to_hub:
        print(f"pplaw export: pushed to https://huggingface.co/datasets/{cfg.push_to_hub}")
    return 0


if __name__ == "__main__":
    from pplaw.cli.main import main as _main

    sys.exit(_main(["export", *sys.argv[1:]]))
