"""``pplaw train --config recipe.yaml``: continual pre-training of one run (see :mod:`pplaw.cpt`).

The same code runs under ``accelerate launch ... -m pplaw.cpt --config recipe.yaml`` for several
processes (DDP, FSDP, DeepSpeed: ``recipes/accelerate_configs/``).
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from pplaw.cpt import main as cpt_main

    return cpt_main(argv)
