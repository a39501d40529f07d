"""``pplaw train --config recipe.yaml``: continual pre-training of one run (see :mod:`pplaw.train.cpt`).

The same command runs under ``accelerate launch ... -m pplaw.cli.train --config recipe.yaml`` for several
processes (DDP, FSDP, DeepSpeed: ``recipes/accelerate_configs/``).
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from pplaw import runs
    from pplaw.train.cpt import parse_args, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, ecfg, targs = parse_args(sys.argv[1:] if argv is None else argv)
    rec = train(cfg, ecfg, targs)
    if rec:
        ev, tr = rec.get("eval", {}), rec.get("training", {})
        print(f"run {rec['run_id']}: {rec['status']}; {tr.get('steps')} steps, {tr.get('tokens_total')} tokens "
              f"(domain {tr.get('tokens_domain')}, R={rec['subset'].get('R_actual')}); "
              + ", ".join(f"{k}_loss={v.get('loss'):.4f}" for k, v in ev.items() if v and v.get("loss") is not None)
              + f"; record: {runs.record_path(targs.output_dir)}")
    return 0


if __name__ == "__main__":  # accelerate launch -m pplaw.cli.train: the `pplaw` command's error handling
    from pplaw.cli.main import main as _cli_main

    sys.exit(_cli_main(["train", *sys.argv[1:]]))
