"""Issue 14, item 3: the whole recipe is checked before any work, naming the key; failed runs exit non-zero."""

from __future__ import annotations

import math

import pytest

from pplaw.exceptions import ConfigError
from pplaw.pipeline import load_recipe
from pplaw.pipeline.artefacts import Inputs
from pplaw.pipeline.preflight import check_inputs, check_paths, check_runs


@pytest.mark.parametrize("key,value,match", [
    ("train.learning_rate", ".nan", "train.learning_rate"),
    ("train.learning_rate", "-1e-3", "train.learning_rate"),
    ("scoring.chunk_tokens", "0", "scoring.chunk_tokens"),
    ("landscape.n_bins", "100000000", "landscape.n_bins"),
    ("plan.seeds", "[-1]", "plan.seeds"),
    ("select.seeds", "[0, -2]", "select.seeds"),
    ("fit.seed", "-1", "fit.seed"),
    ("plan.sizes", "[.inf]", "plan.sizes"),
    ("train.max_length", "0", "train.max_length"),
    ("evaluate.bench_batch_size", "0", "evaluate.bench_batch_size"),
])
def test_out_of_range_values_are_refused_when_the_recipe_is_read(key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe(None, [(key, value)])


def _own(tmp_path, **corpus):
    (tmp_path / "docs.jsonl").write_text('{"text": "a"}\n')
    ov = [("world", "null"), ("model.base_model", "gpt2"), ("corpus.domain_data", str(tmp_path / "docs.jsonl")),
          ("plan.replay_ratios", "[0.0]"), ("select.replay_ratio", "0.0")]
    return load_recipe(None, ov + [(f"corpus.{k}", str(v)) for k, v in corpus.items()])


def test_missing_files_are_named_by_their_key(tmp_path):
    check_paths(_own(tmp_path))
    with pytest.raises(ConfigError, match="corpus.diagnostics"):
        check_paths(_own(tmp_path, diagnostics=tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="corpus.general_eval_data"):
        check_paths(_own(tmp_path, general_eval_data=tmp_path / "nope"))
    r = _own(tmp_path)
    r.evaluate.task_include_path = [str(tmp_path / "no_tasks")]
    with pytest.raises(ConfigError, match="evaluate.task_include_path"):
        check_paths(r)
    r = _own(tmp_path)
    r.model.base_model = str(tmp_path / "no_model")
    with pytest.raises(ConfigError, match="model.base_model: .* is not a model folder"):
        check_paths(r)
    with pytest.raises(ConfigError, match="corpus.diagnostics"):
        check_inputs(Inputs(base_model="m", domain_corpus=str(tmp_path / "docs.jsonl"),
                            diagnostics=str(tmp_path / "gone.jsonl")))


def test_a_typo_in_train_args_is_refused_before_any_run(tmp_path):
    r = _own(tmp_path)
    inp = Inputs(base_model="gpt2", domain_corpus=str(tmp_path / "docs.jsonl"))
    assert check_runs(r, inp, {}) == []
    r.train.args = {"max_grad_normm": 1.0}
    with pytest.raises(ConfigError, match="train.args.*max_grad_normm"):
        check_runs(r, inp, {})


def test_an_unknown_benchmark_task_is_refused_before_any_run(tmp_path):
    from pplaw.pipeline import sweep as SW

    r = _own(tmp_path)
    r.evaluate.domain_benchmarks = ["no_such_task_xyz"]
    inp = Inputs(base_model="gpt2", domain_corpus=str(tmp_path / "docs.jsonl"))
    with pytest.raises(ConfigError, match="evaluate.domain_benchmarks.*no_such_task_xyz"):
        check_runs(r, inp, SW.bench_options(r, inp))


def _summary(**kw):
    comp = {"dos": {"domain_loss": {"mean": 2.0, "sd": None, "n": 1}, "domain_bench": {"mean": None, "sd": None},
                    "general_bench": {"mean": math.nan, "sd": math.nan}}}
    return {"comparison": comp, **kw}


def test_a_run_with_failed_runs_exits_non_zero_and_lists_them(monkeypatch, tmp_path, capsys):
    import pplaw.pipeline as PL
    from pplaw.cli.main import main

    monkeypatch.setattr(PL, "run_pipeline", lambda recipe, out, **kw: _summary(
        failed_runs=[{"id": "w0_d0", "error": "BudgetError: x"}],
        failed_final_runs=[{"id": "dos_s1", "error": "ConfigError: y"}]))
    assert main(["run", "--out", str(tmp_path)]) == 1
    cap = capsys.readouterr()
    assert "w0_d0" in cap.out and "dos_s1" in cap.out and "2 run(s) FAILED" in cap.err
    monkeypatch.setattr(PL, "run_pipeline", lambda recipe, out, **kw: _summary())
    assert main(["run", "--out", str(tmp_path)]) == 0


def test_the_summary_never_prints_nan(monkeypatch, tmp_path, capsys):
    """No benchmarks: the table shows '-' (not `nan ± nan`) and says none were run; one seed: the value alone."""
    import pplaw.pipeline as PL
    from pplaw.cli.main import main

    monkeypatch.setattr(PL, "run_pipeline", lambda recipe, out, **kw: _summary())
    main(["run", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "nan" not in out and "2.0000" in out and "no benchmarks were run" in out
