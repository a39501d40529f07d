"""The recipe of `pplaw run`: parsing, unknown keys at every level, overrides, the shipped recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pplaw.cli.run import parse_argv
from pplaw.exceptions import ConfigError
from pplaw.pipeline.recipe import QUICKSTART, RunRecipe, apply_overrides, describe, from_dict, load_recipe

REPO = Path(__file__).resolve().parents[2]
MICRO = Path(__file__).with_name("micro.yaml")


def test_quickstart_is_shipped_in_the_package_and_matches_the_recipes_folder():
    assert QUICKSTART.is_file()
    assert QUICKSTART.read_text() == (REPO / "recipes" / "quickstart" / "run.yaml").read_text(), \
        "python/pplaw/pipeline/quickstart.yaml and recipes/quickstart/run.yaml must be the same file"


def test_default_recipe_is_the_quickstart():
    r = load_recipe()
    assert r.name == "quickstart"
    assert r.world is not None and r.world.doc_tokens == r.scoring.chunk_tokens == r.train.max_length
    assert len(r.select.seeds) >= 3
    assert set(r.baselines.methods) == {"random", "lowest_ppl", "highest_ppl", "full", "best_sweep"}
    assert r.plan.validation_sizes and r.plan.validation_sizes[0] >= 2 * max(r.plan.sizes)


@pytest.mark.parametrize("data, path", [
    ({"nmae": "x"}, "nmae"),
    ({"plan": {"sizez": [0.1]}}, "plan.sizez"),
    ({"world": {"domain_dcos": 10}}, "world.domain_dcos"),
    ({"train": {"epochs": 1, "lr": 1e-3}}, "train.lr"),
])
def test_unknown_keys_are_errors_that_name_their_path(data, path):
    base = {"world": {}} if "world" not in data else {}
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        from_dict(RunRecipe, {**base, **data})


def test_wrong_types_and_choices_are_errors():
    with pytest.raises(ConfigError, match=r"plan\.sizes"):
        from_dict(RunRecipe, {"world": {}, "plan": {"sizes": "big"}})
    with pytest.raises(ConfigError, match=r"train\.workers: expected int"):
        from_dict(RunRecipe, {"world": {}, "train": {"workers": 1.5}})
    with pytest.raises(ConfigError, match=r"fit\.space: expected one of"):
        from_dict(RunRecipe, {"world": {}, "fit": {"space": "logppl"}})
    with pytest.raises(ConfigError, match="plan: expected a mapping"):
        from_dict(RunRecipe, {"world": {}, "plan": [1, 2]})
    with pytest.raises(ConfigError, match=r"fit\.laws\[1\] \('perplexity_splin'\): unknown law"):
        from_dict(RunRecipe, {"world": {}, "fit": {"laws": ["perplexity", "perplexity_splin"]}})
    with pytest.raises(ConfigError, match=r"fit\.laws\[1\].*floor must be in"):
        from_dict(RunRecipe, {"world": {}, "fit": {"laws": ["perplexity", "perplexity_spline:floor=2"]}})
    with pytest.raises(ConfigError, match=r"fit\.laws\[1\].*not a perplexity law"):
        from_dict(RunRecipe, {"world": {}, "fit": {"laws": ["perplexity", "chinchilla"]}})


def test_inconsistent_recipes_are_refused():
    with pytest.raises(ConfigError, match="either `world`"):
        from_dict(RunRecipe, {})
    with pytest.raises(ConfigError, match="world` supplies"):
        from_dict(RunRecipe, {"world": {}, "model": {"base_model": "x"}})
    with pytest.raises(ConfigError, match="baselines.methods"):
        from_dict(RunRecipe, {"world": {}, "baselines": {"methods": ["lowest"]}})
    with pytest.raises(ConfigError, match="replay"):
        from_dict(RunRecipe, {"world": {}, "plan": {"replay_ratios": [1.0]}})
    with pytest.raises(ConfigError, match="accelerate_config"):
        from_dict(RunRecipe, {"world": {}, "train": {"launcher": "accelerate"}})


def test_the_export_section_is_checked_up_front():
    assert from_dict(RunRecipe, {"world": {}}).export.format == "parquet"
    with pytest.raises(ConfigError, match=r"export\.format: expected one of"):
        from_dict(RunRecipe, {"world": {}, "export": {"format": "csv"}})
    with pytest.raises(ConfigError, match=r"export\.method must be one of \['dos', 'random'"):
        from_dict(RunRecipe, {"world": {}, "export": {"method": "full"}})
    with pytest.raises(ConfigError, match=r"export\.push_to_hub must be a Hub repo id"):
        from_dict(RunRecipe, {"world": {}, "export": {"push_to_hub": "no-owner"}})
    # no export: any method passes (nothing is exported)
    assert from_dict(RunRecipe, {"world": {}, "export": {"format": "none", "method": "full"}}).export.format == "none"


def test_overrides_set_nested_values_as_yaml():
    data = yaml.safe_load(MICRO.read_text())
    out = apply_overrides(data, [("plan.seeds", "[0, 1]"), ("fit.space", "log_ppl"), ("name", "x")])
    r = from_dict(RunRecipe, out)
    assert r.plan.seeds == [0, 1] and r.fit.space == "log_ppl" and r.name == "x"
    assert data["name"] == "micro"  # the input is not modified
    with pytest.raises(ConfigError, match="unknown key"):
        load_recipe(MICRO, [("plan.nope", "1")])


def test_command_line_forms():
    assert parse_argv([]) == (None, None, [])
    path, out, ov = parse_argv(["r.yaml", "--out", "d", "plan.seeds=[0]", "--fit.space", "log_ppl", "--name=z"])
    assert (path, out) == ("r.yaml", "d")
    assert ov == [("plan.seeds", "[0]"), ("fit.space", "log_ppl"), ("name", "z")]
    with pytest.raises(ConfigError, match="one recipe only"):
        parse_argv(["a.yaml", "b.yaml"])


def test_help_lists_every_section_with_help_text():
    text = "\n".join(describe())
    for key in ("plan.sizes", "train.workers", "select.budget", "world.domain_docs", "baselines.methods"):
        assert key in text
    assert "Any other `pplaw train` option" in text


def test_medical_recipe_parses_and_its_training_options_exist():
    from dataclasses import fields

    from pplaw.train import cpt
    from pplaw.train.evaluate import EvalConfig

    r = load_recipe(REPO / "recipes" / "medical" / "run.yaml")
    assert r.world is None and r.model.base_model and r.corpus.domain_data
    assert r.train.launcher == "accelerate"
    assert (REPO / r.train.accelerate_config).is_file()
    valid = {f.name for dc in (cpt.CPTConfig, EvalConfig, cpt.CPTTrainingArguments) for f in fields(dc)}
    assert set(r.train.args) <= valid, f"not pplaw train options: {set(r.train.args) - valid}"


def test_readme_bring_your_own_recipe_parses(tmp_path):
    """The README's 'Bring your own model, corpus and benchmarks' recipe must stay a valid recipe."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("name: law")
    (tmp_path / "byo.yaml").write_text(text[start:text.index("```", start)], encoding="utf-8")
    r = load_recipe(tmp_path / "byo.yaml")
    assert r.world is None and r.model.base_model == "my-org/my-base-model"
    assert r.evaluate.task_include_path == ["tasks/law"] and r.corpus.id_column == "doc_id"


def test_pplaw_run_warns_at_its_start_when_validation_is_turned_off(monkeypatch, capsys, tmp_path):
    import pplaw.pipeline as pipeline
    from pplaw.cli.run import main

    seen = []
    monkeypatch.setattr(pipeline, "run_pipeline", lambda recipe, out, detach=False: seen.append(recipe) or
                        {"detached": {"stage": "sweep", "jobs_file": "j", "n_jobs": 0}})
    assert main([str(MICRO), "--out", str(tmp_path), "plan.validation_sizes=[]"]) == 0
    err = capsys.readouterr().err
    assert "pplaw run: WARNING: no held-out validation runs (plan.validation_sizes: [])" in err
    assert seen and seen[0].plan.validation_sizes == []
    assert main([str(MICRO), "--out", str(tmp_path)]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_runs_log_to_tensorboard_in_their_own_folder_when_it_is_installed(monkeypatch, tmp_path):
    import importlib.util

    from pplaw.pipeline import sweep as SW
    from pplaw.pipeline.artefacts import Inputs

    real = importlib.util.find_spec
    for installed, expected in ((True, "tensorboard"), (False, "none")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, _i=installed: (
            (object() if _i else None) if name == "tensorboard" else real(name, *a)))
        assert SW.report_to("auto") == expected and SW.report_to("wandb") == "wandb"
        recipe = load_recipe(MICRO)
        assert recipe.train.report_to == "auto"
        opts = SW.cpt_options(recipe, Inputs(base_model="m", domain_corpus="c"), train_data=tmp_path,
                              run_dir=tmp_path / "sweep" / "p0", indices=None, tokens=10, replay_ratio=0.0, seed=0,
                              bench=None)
        # transformers' TensorBoard callback writes under output_dir/runs/: the run's own folder
        assert opts["report_to"] == expected and opts["output_dir"] == str(tmp_path / "sweep" / "p0")
    # where the logs go is not what the run is: a finished run stays finished when tensorboard is installed
    a = SW.RunSpec("p0", tmp_path / "p0", {"lr": 1e-3, "report_to": "none"}, {"D": 5}, root=tmp_path)
    b = SW.RunSpec("p0", tmp_path / "p0", {"lr": 1e-3, "report_to": "tensorboard"}, {"D": 5}, root=tmp_path)
    assert a.key == b.key
    assert a.key != SW.RunSpec("p0", tmp_path / "p0", {"lr": 2e-3, "report_to": "none"}, {"D": 5}, root=tmp_path).key


def test_the_readme_states_the_validation_default_and_shows_the_report():
    from pplaw.pipeline.sections import PlanSection, TrainSection

    text = (REPO / "README.md").read_text(encoding="utf-8")
    p = PlanSection()
    assert p.validation_sizes is None and f"`plan.validation_regimes: {p.validation_regimes}`" in text
    assert "twice the largest of `plan.sizes`" in text and "`plan.validation_sizes: []` turns validation off" in text
    # the quickstart keeps its own held-out setting, which the README quotes
    q = load_recipe().plan
    assert q.validation_sizes == [0.2] and q.validation_regimes == 4 and "`validation_sizes: [0.2]`, 4 regimes" in text
    assert TrainSection().report_to == "auto" and "tensorboard --logdir pplaw_runs/quickstart" in text
    for img in re.findall(r"\]\((docs/[^)]+\.png)\)", text):  # every screenshot the README shows is shipped
        assert (REPO / img).is_file(), img
    assert "docs/quickstart_report.png" in text and "seed 12" in text


@pytest.mark.parametrize("make, key", [
    (lambda S: S.PlanSection(windows=1), "plan.windows"),
    (lambda S: S.PlanSection(seeds=[0, 0]), "plan.seeds"),
    (lambda S: S.SelectSection(weights=[1.0]), "select.weights"),
    (lambda S: S.ScoringSection(chunk_tokens=1), "scoring.chunk_tokens"),
    (lambda S: S.LandscapeSection(n_bins=1), "landscape.n_bins"),
    (lambda S: S.TrainSection(learning_rate=-1.0), "train.learning_rate"),
    (lambda S: S.EvaluateSection(bench_batch_size=0), "evaluate.bench_batch_size"),
    (lambda S: S.FitSection(laws=["chinchilla"]), "fit.laws"),
    (lambda S: S.BaselinesSection(methods=["lowest"]), "baselines.methods"),
    (lambda S: S.ExportSection(push_to_hub="no-slash"), "export.push_to_hub"),
])
def test_a_section_checks_its_own_values(make, key):
    """Each recipe section checks its values when it is made (not only inside a whole recipe), by its key."""
    from pplaw.pipeline import sections

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make(sections)


def test_the_slurm_section_checks_itself_and_the_recipe_keeps_only_cross_section_rules():
    """SlurmSection checks its values when made; RunRecipe.check holds what joins sections (here: world vs model)."""
    from pplaw.cluster import SlurmSection

    with pytest.raises(ConfigError, match=r"slurm\.time_min"):
        SlurmSection(time_min=0)
    with pytest.raises(ConfigError, match="leave model.base_model"):
        from_dict(RunRecipe, {"world": {}, "model": {"base_model": "x"}})
