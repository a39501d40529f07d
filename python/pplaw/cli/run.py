"""``pplaw run [recipe.yaml]``: the end-to-end loop (issue: `pplaw run`).

NOT BUILT YET. The stages it ties together (scoring, landscape, sampling, training, fitting) are built
one issue at a time; until the loop itself exists this command says so and exits non-zero rather than
pretending to have produced a result.
"""

from __future__ import annotations

from pplaw.exceptions import NotBuiltError


def main(argv: list[str]) -> int:
    raise NotBuiltError(
        "the end-to-end loop (`pplaw run`) is not implemented yet. Available now: "
        "`pplaw landscape` and `pplaw sample` (and the stages listed by `pplaw --help` that are built)."
    )
