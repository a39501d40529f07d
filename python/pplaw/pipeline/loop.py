"""The end-to-end loop behind ``pplaw run``, one stage after another (read it top to bottom).

    world -> score -> landscape -> plan -> sweep -> fit -> confirm -> select -> final -> export -> report

Every stage writes into its own folder of the run directory and is skipped when re-run with the same
inputs (:mod:`pplaw.pipeline.stages`); the sweep and the final comparison skip their finished runs one by
one (:mod:`pplaw.pipeline.sweep`). So a killed ``pplaw run`` picks up where it stopped. Each stage hands
the next a typed value (:mod:`pplaw.pipeline.artefacts`), the same whether it ran or was up to date.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from pplaw.exceptions import ConfigError
from pplaw.pipeline import executors as EX
from pplaw.pipeline import confirm as CF
from pplaw.pipeline import preflight as PF
from pplaw.pipeline import report as RP
from pplaw.pipeline import sweep as SW
from pplaw.export import push_export
from pplaw.pipeline.export import export_run
from pplaw.pipeline.fit import candidate_specs, fit_and_optimise
from pplaw.pipeline.plan import build_plan, lead_points, plot_plan, realisable_region, resolve_size
from pplaw.pipeline.select import BandChoice, choose_band, select_subsets, whole_corpus_note
from pplaw.pipeline.artefacts import (FitArtefact, Inputs, LandscapeArtefact, PlanArtefact, RunTable, ScoredChunks,
                                      Selection)
from pplaw.pipeline.recipe import RunRecipe, digest
from pplaw.pipeline.stages import RunLock, Stages, claim_run_dir
from pplaw._atomic import atomic_write_text, remove_stale_temporaries
from pplaw.runs import write_json_atomic


def resolve_inputs(recipe: RunRecipe, stages: Stages) -> Inputs:
    """Paths of the base model, corpora, held-out sets and benchmark tasks: the synthetic world's (built
    or reused in ``<run>/world``) or the recipe's own."""
    if recipe.world is not None:
        def build(d: Path) -> dict[str, Any]:
            from pplaw.synth import build_world

            cache = Path(recipe.cache_dir).expanduser() / "synth" if recipe.cache_dir else None
            w = build_world(recipe.world, d, progress=True, cache_dir=cache)
            return {"base_model": str(w.base_model_dir), "domain_data": str(w.domain_corpus), "text_column": "text",
                    "id_column": "doc_id", "general_data": str(w.general_corpus), "domain_eval_data": str(w.domain_val),
                    "general_eval_data": str(w.general_val), "diagnostics": str(w.domain_kinds),
                    "kind_column": "kind", "task_include_path": [str(w.tasks_dir)], "world_hash": w.config.world_hash()}

        # always: build_world is idempotent and cheap once built, and re-renders the task YAMLs (absolute
        # paths) so a moved run directory keeps working
        return stages.run("world", recipe.world.to_dict(), build, mode="always",
                          load=lambda d, outputs: Inputs.from_dict(outputs))
    m, c = recipe.model, recipe.corpus
    return Inputs(base_model=m.base_model, tokenizer=m.tokenizer, domain_corpus=c.domain_data,
                  text_column=c.text_column, id_column=c.id_column, general_data=c.general_data,
                  domain_eval_data=c.domain_eval_data, general_eval_data=c.general_eval_data,
                  diagnostics=c.diagnostics, kind_column=c.diagnostics_kind_column, task_include_path=[])


def score_corpus(recipe: RunRecipe, inp: Inputs, d: Path) -> dict[str, Any]:
    """Chunk and score the domain corpus with the base model (the ``pplaw score`` job: sharded, resumable)."""
    from pplaw.config import shared_options
    from pplaw.score.job import ScoreConfig, run_score, summary_lines

    cfg = ScoreConfig(model=inp.base_model, data=inp.domain_corpus, out=str(d / "chunks"),
                      text_column=inp.text_column, id_column=inp.id_column, tokenizer=inp.tokenizer,
                      **shared_options(recipe.scoring, ScoreConfig))
    summary = run_score(cfg)
    print("\n".join(summary_lines(summary, d / "chunks")))
    return {"chunks": "chunks", "summary": summary}


def make_landscape(table, recipe: RunRecipe, d: Path) -> dict[str, Any]:
    from pplaw.landscape import Landscape

    land = Landscape.from_arrow(table, n_bins=recipe.landscape.n_bins)
    land.save(d / "landscape.json", include_bin_index=True)
    land.plot(d / "landscape.png", title=f"Perplexity landscape of the domain corpus ({recipe.name})")
    return {"landscape": "landscape.json", "plot": "landscape.png", "summary": land.summary,
            "edges": land.quantiles.tolist()}


def make_plan(table, recipe: RunRecipe, landscape: Path, d: Path) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from pplaw.landscape import Landscape

    land = Landscape.load(landscape)
    cfg, space = recipe.plan, recipe.fit.space
    n_val = 1 if cfg.validation_sizes is None else len(cfg.validation_sizes)  # None: one size, 2x the largest
    n_lead = 0 if cfg.validation_family == "lead" else min(cfg.validation_regimes, cfg.windows)  # lead: after the sweep
    n_jobs = ((cfg.windows + cfg.mixtures + cfg.budget_bands) * len(cfg.sizes) + n_lead * n_val) \
        * len(cfg.replay_ratios) * len(cfg.seeds)
    final = resolve_size(recipe.select.budget, int(np.asarray(table.column("n_scored")).sum()), "select.budget")
    with tqdm(total=n_jobs, desc="plan: sampling subsets", unit="subset") as bar:
        out = build_plan(table, np.asarray(land.bin_index), land.n_bins, cfg, space=space, out_dir=d, progress=bar,
                           final_budget=final)
    ppl, tok = table.column("ppl").to_numpy(), table.column("n_scored").to_numpy()
    regions = {D: realisable_region(ppl, tok, D, space) for D in sorted(set(out["sizes"]) | {final})}
    write_json_atomic(d / "regions.json", {str(D): r.to_dict() for D, r in regions.items()})
    plot_plan(out, {D: r for D, r in regions.items() if D in out["sizes"]}, d / "plan.png")
    out.update(final_budget=final, max_repeat=float(recipe.select.max_repeat), regions="regions.json", plot="plan.png")
    write_json_atomic(d / "plan.json", out)
    return {k: v for k, v in out.items() if k != "points"} | {
        "points": [{k: p.get(k) for k in ("id", "status", "reason")} for p in out["points"]], "plan": "plan.json"}


def sweep_specs(recipe: RunRecipe, inp: Inputs, chunks: ScoredChunks, bench: dict[str, Any], plan: PlanArtefact,
                d: Path) -> list[SW.RunSpec]:
    """One run per reachable grid point, trained on ``epochs x D`` tokens of its subset."""
    return point_specs(recipe, inp, chunks, bench, plan.plan["points"], plan.dir, d)


def point_specs(recipe: RunRecipe, inp: Inputs, chunks: ScoredChunks, bench: dict[str, Any],
                points: list[dict[str, Any]], points_dir: Path, d: Path) -> list[SW.RunSpec]:
    """One run per reachable point (indices files under ``points_dir``), its run directory under ``d``."""
    specs = []
    for p in points:
        if p["status"] != "ok":
            continue
        opts = SW.cpt_options(recipe, inp, train_data=chunks.dir, run_dir=d / p["id"], indices=points_dir / p["indices"],
                              tokens=p["D"], replay_ratio=p["R"], seed=p["seed"],
                              bench=bench if recipe.evaluate.sweep_benchmarks else None)
        meta = {k: p.get(k) for k in ("regime", "shape", "size_no", "role", "band", "R", "seed", "D", "mu_ppl",
                                      "sigma_ppl", "mu_log_ppl", "sigma_log_ppl")}
        if p.get("pool") is not None:  # a held-out leader drawn from a sub-pool of its band (plan.passes_draw)
            meta["pool"] = p["pool"]
        specs.append(SW.RunSpec(p["id"], d / p["id"], opts, meta, keep_model=recipe.train.keep_models, root=d.parent))
    return specs


def final_specs(recipe: RunRecipe, inp: Inputs, chunks: ScoredChunks, bench: dict[str, Any], sel: Selection,
                d: Path) -> list[SW.RunSpec]:
    """DOS and every baseline, each seed: the same budget (``epochs x D`` tokens), benchmarks on."""
    specs = []
    for s in sel.subsets:
        rid = f"{s['method']}_s{s['seed']}"
        idx = sel.dir / s["indices"] if s["indices"] else None
        opts = SW.cpt_options(recipe, inp, train_data=chunks.dir, run_dir=d / rid, indices=idx, tokens=sel.budget,
                              replay_ratio=recipe.select.replay_ratio, seed=s["seed"], bench=bench)
        meta = {k: s[k] for k in ("method", "seed", "D", "mu_ppl", "sigma_ppl", "mu_log_ppl", "sigma_log_ppl")}
        specs.append(SW.RunSpec(rid, d / rid, opts, meta, keep_model=True, root=d.parent))
    return specs


class _Detached(Exception):
    """A stage's runs were submitted and left running (``--detach``): the loop stops there."""

    def __init__(self, stage: str, jobs_file: Path, n_jobs: int) -> None:
        super().__init__(stage)
        self.info = {"stage": stage, "jobs_file": str(jobs_file), "n_jobs": n_jobs}


def run_pipeline(recipe: RunRecipe, out_dir: str | Path, log: Callable[[str], None] = print, *,
                 detach: bool = False) -> dict[str, Any]:
    """Run (or resume) every stage of ``recipe`` into ``out_dir``; returns the report's summary.

    The recipe is checked whole first (:mod:`pplaw.pipeline.preflight`); ``out_dir`` must be new, empty
    or a pplaw run directory, and is locked for the whole run (:class:`~pplaw.pipeline.stages.RunLock`).
    ``detach`` (``train.executor: slurm``): submit the sweep's (or the final) runs as jobs and return
    ``{"detached": {"stage", "jobs_file", "n_jobs"}}`` instead of waiting; run again to collect them."""
    PF.check_paths(recipe)
    PF.check_grid(recipe)
    PF.check_reachable(recipe)  # a silent Ray address or unknown partition: one error now, not a hang
    if detach and (recipe.train.executor != "slurm" or recipe.slurm.cluster != "slurm"):
        raise ConfigError(f"--detach needs train.executor=slurm and slurm.cluster=slurm (jobs that outlive this "
                          f"process), got train.executor={recipe.train.executor!r}, "
                          f"slurm.cluster={recipe.slurm.cluster!r}")
    executor = EX.make_executor(recipe, Path(out_dir), detach=detach)  # a missing engine fails before any work
    out = claim_run_dir(out_dir)
    with RunLock(out):
        try:
            return _run_locked(recipe, out, log, executor)
        except _Detached as d:
            return {"detached": d.info}


def _run_locked(recipe: RunRecipe, out: Path, log: Callable[[str], None],
                executor: SW.Executor | None = None) -> dict[str, Any]:
    t_start = time.perf_counter()
    for folder in [out, out / "report", *(p for p in out.iterdir() if p.is_dir())]:
        remove_stale_temporaries(folder)  # left by a kill during an atomic write; we hold the lock
    stages = Stages(out, log=log)
    write_json_atomic(out / "recipe.json", recipe.to_dict())
    atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    t = recipe.train

    def train_all(stage: str, specs: list[SW.RunSpec], desc: str, d: Path) -> dict[str, Any]:
        """The sweep or the final stage: train every run (finished ones are skipped), then its runs.json. Only
        the sweep's outputs count the skipped runs: the final stage's outputs are the export stage's key."""
        EX.refuse_if_jobs_alive(specs, executor)
        res = SW.run_all(specs, workers=t.workers, threads=t.threads_per_worker, launcher=t.launcher,
                         accelerate_config=t.accelerate_config, desc=desc, executor=executor)
        n = sum(v["status"] == "submitted" for v in res.values())
        if n:
            raise _Detached(stage, stages.dir(stage) / "jobs.json", n)
        rows = SW.run_table(specs, recipe)
        write_json_atomic(d / "runs.json", rows)
        outputs = {"runs": "runs.json", "n_ok": sum(r["status"] == "ok" for r in rows),
                   "n_failed": sum(r["status"] == "failed" for r in rows), "digest": digest(rows)}
        if stage == "sweep":
            outputs["skipped"] = sum(v["status"] == "skipped" for v in res.values())
        return outputs

    # 1. the inputs, then the perplexity of every chunk of the domain corpus under the base model
    inp = resolve_inputs(recipe, stages)
    bench = SW.bench_options(recipe, inp)
    PF.check_inputs(inp)
    for folder in PF.check_runs(recipe, inp, bench):
        log(f"benchmark task folder loaded by lm-eval (its YAML can run code): {folder}")
    chunks = stages.run("score", {"inp": inp.score_key(), "scoring": recipe.to_dict()["scoring"]},
                        lambda d: score_corpus(recipe, inp, d), mode="inplace", load=ScoredChunks.load)
    score, table = chunks.outputs, chunks.table
    PF.check_sizes(recipe, int(np.asarray(table.column("n_scored")).sum()))  # before the landscape and plan

    # 2. the landscape and the fitting grid
    land = stages.run("landscape", {"score": score, "landscape": recipe.to_dict()["landscape"]},
                      lambda d: make_landscape(table, recipe, d), load=LandscapeArtefact.load)
    plan = stages.run("plan", {"score": score, "land": land.edges, "plan": recipe.to_dict()["plan"],
                               "space": recipe.fit.space, "budget": recipe.select.budget,
                               "max_repeat": recipe.select.max_repeat},
                      lambda d: make_plan(table, recipe, land.path, d), load=PlanArtefact.load)
    if plan.plan.get("validation_note") and recipe.plan.validation_sizes is None:  # [] was warned of at the start
        log(f"WARNING: {plan.plan['validation_note']}")

    # 3. the sweep: one CPT run per reachable grid point (finished runs are skipped)
    specs = sweep_specs(recipe, inp, chunks, bench, plan, stages.dir("sweep"))

    def sweep(d: Path) -> dict[str, Any]:
        out = train_all("sweep", specs, "sweep", d)
        if recipe.plan.validation_family == "lead" and plan.plan["validation_sizes"]:
            # then the held-out runs of the sweep's leaders, chosen from the finished fit runs (plan.lead_points)
            pts = lead_points(table, plan.plan, SW.run_table(specs, recipe), recipe.plan, recipe.fit.target,
                              d / "lead")
            write_json_atomic(d / "lead" / "points.json", pts)
            lead = train_all("sweep", specs + point_specs(recipe, inp, chunks, bench, pts, d / "lead", d),
                             "held-out leaders", d)
            out = {**lead, "skipped": out["skipped"] + lead["skipped"] - len(specs)}  # the fit runs counted once
        return out

    sw = stages.run("sweep", {"plan": plan.outputs, "specs": [s.key for s in specs]}, sweep, mode="always",
                    load=RunTable.load)

    # 4. fit the perplexity-aware law; the optimum inside what the corpus can realise at the final budget
    budget, region = plan.budget, plan.region
    # select.family and select.fallback decide the fit stage's optimum (the band or the best sweep regime,
    # pipeline/select.py's choose_band), so they are part of its key: without them a resumed run with another
    # family reused the old optimum
    def fit_stage(d: Path) -> dict[str, Any]:
        def band(fit: Any, df: Any, law_choice: dict[str, Any]) -> BandChoice:
            return choose_band(fit, df, table, plan.plan, recipe, int(budget), law_choice, d)

        return fit_and_optimise(sw.rows, recipe, region, d, total_tokens=int(plan.plan["total_tokens"]),
                                   choose_band=band if recipe.select.family == "band" else None)

    fit = stages.run("fit", {"sweep": sw.digest, "fit": recipe.to_dict()["fit"], "region": recipe.select.region,
                             "budget": budget, "family": recipe.select.family, "fallback": recipe.select.fallback,
                             "max_repeat": recipe.select.max_repeat, "laws": candidate_specs(recipe)},
                     fit_stage, load=FitArtefact.load)

    # 5. a band the law proposes on its own (or predicts better within its uncertainty) is trained once at the
    # validation size first, and kept only if it measures better there than the best sweep regime's band
    # (pipeline/confirm.py; nothing runs otherwise)
    def confirm_stage(d: Path) -> dict[str, Any]:
        unc = recipe.select.confirm_uncertain
        why = CF.confirmation_needed(fit.optimum, plan.plan, recipe.select.confirm, unc)
        if why is not None:
            return {"status": "not needed", "why": why, "optimum": fit.optimum}
        pts, held = CF.confirmation_points(table, plan.plan, fit.optimum, fit.best_sweep, sw.rows,
                                           recipe.plan.seeds, recipe.plan.replay_ratios, d, unc)
        write_json_atomic(d / "points.json", pts)
        cspecs = point_specs(recipe, inp, chunks, bench, pts, d, d)
        out = train_all("confirm", cspecs, "confirmation runs", d)
        return {**out, **CF.decide_confirmation(fit.optimum, fit.best_sweep, sw.rows, SW.run_table(cspecs, recipe),
                                                held, plan.plan, recipe.fit.target, unc)}

    conf = stages.run("confirm", {"optimum": fit.optimum, "best_sweep": fit.best_sweep, "sweep": sw.digest,
                                  "confirm": recipe.select.confirm, "uncertain": recipe.select.confirm_uncertain},
                      confirm_stage, mode="inplace")
    optimum = conf["optimum"]
    if conf["status"] != "not needed":
        stages.log(f"[confirm] {conf['status']}: {conf['why']}")
    # the digest is the confirm runs' cache key (it holds executor options such as threads): not a result
    fit_out = {**fit.outputs, "optimum": optimum,
               "confirmation": {k: v for k, v in conf.items() if k not in ("optimum", "digest")}}

    # 6. DOS at the final budget, and the baselines at the same budget, for every seed
    sel = stages.run("select", {"score": score, "optimum": optimum, "best_sweep": fit.best_sweep,
                                "select": recipe.to_dict()["select"], "baselines": recipe.to_dict()["baselines"],
                                "space": recipe.fit.space},
                     lambda d: {"subsets": select_subsets(table, recipe, optimum, budget, d,
                                                            best_sweep=fit.best_sweep, scored_dir=chunks.dir),
                                "budget": budget}, load=Selection.load)
    notes = [n for n in [whole_corpus_note(sel.subsets, table.num_rows)] if n]
    for note in notes:  # said on the terminal and in the report, also when the stage was up to date
        stages.log(f"[select] note: {note}")
    fspecs = final_specs(recipe, inp, chunks, bench, sel, stages.dir("final"))

    finals = stages.run("final", {"select": sel.outputs, "specs": [s.key for s in fspecs]},
                        lambda d: train_all("final", fspecs, "final runs", d), mode="always", load=RunTable.load)

    # 7. the final subset (first seed) as a publishable dataset: rows + card (`pplaw export` for the others)
    ex = recipe.export
    if ex.format != "none":
        exp = stages.run("export", {"select": sel.outputs, "final": finals.outputs, "fit": fit_out,
                                    "format": ex.format, "method": ex.method},
                         lambda d: {"subset": export_run(out, d / "subset", method=ex.method, format=ex.format,
                                                         seed=recipe.select.seeds[0]).name,
                                    "method": ex.method, "seed": recipe.select.seeds[0]})
        if ex.push_to_hub:  # its own stage, after the local copy is in place: a failed push is retried on re-run
            folder = stages.dir("export") / exp["subset"]
            stages.run("push", {"export": exp, "repo": ex.push_to_hub},
                       lambda d: {"repo": push_export(folder, ex.push_to_hub)}, mode="inplace")

    # 8. the report
    t_report = time.perf_counter()
    timings = stages.timings()
    timings.append({"stage": "report", "seconds": None, "cached": False, "original_seconds": None})
    ctx = RP.ReportContext(out=out, recipe=recipe, inputs=inp, table=table, landscape=land.outputs, plan=plan.plan,
                           sweep=sw.rows, fit=fit_out, budget=budget, region=region, finals=finals.rows,
                           timings=timings, notes=notes,
                           total_seconds=time.perf_counter() - t_start)
    summary = RP.write_report(ctx)
    timings[-1]["seconds"] = time.perf_counter() - t_report
    ctx.total_seconds = time.perf_counter() - t_start
    RP.rewrite_timings(ctx)
    summary.update(timings=timings, total_seconds=ctx.total_seconds)
    write_json_atomic(out / "summary.json", summary)
    return summary
