"""``pplaw.pipeline``: the end-to-end loop behind ``pplaw run``.

    from pplaw.pipeline import load_recipe, run_pipeline
    recipe = load_recipe("recipes/medical/run.yaml", overrides=[("plan.seeds", "[0, 1]")])
    summary = run_pipeline(recipe, "pplaw_runs/medical")     # resumes when run again

Modules: :mod:`~pplaw.pipeline.recipe` (the recipe and its loader; its sections:
:mod:`~pplaw.pipeline.sections`), :mod:`~pplaw.pipeline.stages` (cached, atomic, timed stages),
:mod:`~pplaw.pipeline.plan` (the fitting grid and the realisable region), :mod:`~pplaw.pipeline.sweep`
(training many runs, resumably, in parallel; on a cluster through :mod:`~pplaw.pipeline.executors`: Ray tasks
or Slurm jobs), :mod:`~pplaw.pipeline.fit` (the fit stage: law choice on held-out runs, refit, optimum),
:mod:`~pplaw.pipeline.select` (the select stage: bands, best sweep, the decision, DOS and baselines),
:mod:`~pplaw.pipeline.report` (report.md / report.html) and :mod:`~pplaw.pipeline.loop` (the loop itself,
stage after stage).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunRecipe", "load_recipe", "run_pipeline", "QUICKSTART"]


def __getattr__(name: str) -> Any:  # lazy: importing the package must not import torch
    if name in ("RunRecipe", "load_recipe", "QUICKSTART"):
        from pplaw.pipeline import recipe

        return getattr(recipe, name)
    if name == "run_pipeline":
        from pplaw.pipeline.loop import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'pplaw.pipeline' has no attribute {name!r}")
