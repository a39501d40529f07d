"""``pplaw evaluate``: held-out losses and lm-eval benchmark suites of a run or a model (:mod:`pplaw.evaluate`).

    pplaw evaluate --config recipe.yaml                 # the recipe's run (output_dir) and eval settings
    pplaw evaluate --run_dir runs/r1 --suites medical --task_source local --task_data DIR
    pplaw evaluate --model path/to/model --domain_eval_data val.jsonl --output results.json
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from pplaw.evaluate import main as evaluate_main

    return evaluate_main(argv)
