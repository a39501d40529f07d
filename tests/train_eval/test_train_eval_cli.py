"""Command lines as a user runs them: `accelerate launch -m pplaw.cli.train`, `pplaw train`, `pplaw evaluate`, `pplaw tasks`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from pplaw import runs
from pplaw.cli.main import main as pplaw

REPO = Path(__file__).resolve().parents[2]


def test_accelerate_launch_runs_the_quickstart_recipe_on_cpu(world, tmp_path, child_env, venv_bin):
    run = tmp_path / "run"
    cmd = [
        venv_bin("accelerate"), "launch", "--config_file", str(REPO / "recipes/accelerate_configs/cpu.yaml"),
        "-m", "pplaw.cli.train", "--config", str(REPO / "recipes/quickstart/cpt.yaml"),
        # the recipe's data lives in pplaw_runs/ after prepare.py; point it at the test world instead
        "--model_name_or_path", str(world["model"]), "--domain_data", str(world["domain"]), "--domain_indices", "",
        "--general_data", str(world["general"]), "--domain_eval_data", str(world["domain_eval"]),
        "--general_eval_data", str(world["general_eval"]), "--eval_max_chunks", "10", "--output_dir", str(run),
        "--max_length", "64", "--per_device_train_batch_size", "4", "--budget_tokens", str(64 * 4 * 8),
        "--save_steps", "4", "--disable_tqdm", "true",
    ]
    proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rec = runs.read_record(run)
    assert rec["status"] == "evaluated" and rec["training"]["steps"] == 8
    assert rec["subset"]["R"] == 0.1 and rec["subset"]["R_actual"] == pytest.approx(3 / 32)  # round(0.1 * 32) rows
    assert rec["config"]["training_args"]["learning_rate"] == 1e-3  # from the recipe
    assert rec["eval"]["domain"]["loss"] > 0 and "run run: evaluated" in proc.stdout


def test_pplaw_train_evaluate_and_errors(world, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    run = tmp_path / "run"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(world["model"]), "domain_data": str(world["domain"]), "output_dir": str(run),
        "max_length": 64, "per_device_train_batch_size": 4, "budget_tokens": 64 * 4 * 5, "use_cpu": True,
        "learning_rate": 3e-3, "disable_tqdm": True,
    }))
    assert pplaw(["train", "--config", str(recipe)]) == 0
    rec = runs.read_record(run)
    assert rec["status"] == "trained" and rec["eval"] == {}  # nothing to evaluate in this recipe
    assert pplaw(["evaluate", "--config", str(recipe), "--domain_eval_data", str(world["domain_eval"]),
                  "--eval_max_chunks", "5"]) == 0
    assert "domain_loss = " in capsys.readouterr().out
    rec = runs.read_record(run)
    assert rec["status"] == "evaluated" and rec["eval"]["domain"]["n_chunks"] == 5
    out = tmp_path / "any_model.json"
    assert pplaw(["evaluate", "--model", str(world["model"]), "--general_eval_data", str(world["general_eval"]),
                  "--eval_max_chunks", "3", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["eval"]["general"]["n_chunks"] == 3

    capsys.readouterr()
    assert pplaw(["train", "--config", str(recipe), "--replay_ratio", "1.5", "--output_dir", str(tmp_path / "r2")]) == 1
    assert "--replay_ratio must be in [0, 1), got 1.5" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text() + "suites_typo: [medical]\n")
    assert pplaw(["evaluate", "--config", str(bad)]) == 1
    assert "suites_typo" in capsys.readouterr().err
    assert pplaw(["evaluate", "--domain_eval_data", "x.jsonl"]) == 1
    assert "--run_dir" in capsys.readouterr().err
    assert pplaw(["evaluate", "--model", str(tmp_path / "nope"), "--domain_eval_data", "x.jsonl"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert pplaw(["tasks", "list"]) == 0
    assert "pubmedqa_local" in capsys.readouterr().out


@pytest.mark.parametrize("recipe", ["quickstart/cpt.yaml", "medical/cpt.yaml"])
def test_shipped_recipes_parse(recipe):
    """Every key of the shipped recipes is a known option (the medical one needs GPUs to run, not to parse)."""
    from pplaw.train.cpt import parse_args

    cfg, ecfg, targs = parse_args(["--config", str(REPO / "recipes" / recipe)])
    assert cfg.model_name_or_path and cfg.domain_data and targs.output_dir
    assert targs.packing_strategy == "wrapped" and targs.max_steps == -1
    if recipe.startswith("medical"):
        assert ecfg.suites == ["medical", "general"] and cfg.model_name_or_path.startswith("Qwen/Qwen3")
        assert targs.activation_checkpointing is True


def test_accelerate_configs_are_valid():
    from accelerate.commands.config.config_args import load_config_from_file

    names = {p.name for p in (REPO / "recipes/accelerate_configs").glob("*.yaml")}
    assert names == {"cpu.yaml", "single_gpu.yaml", "multi_gpu_ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml",
                     "deepspeed_zero3.yaml"}
    kinds = {n: str(load_config_from_file(str(REPO / "recipes/accelerate_configs" / n)).distributed_type) for n in names}
    assert kinds["fsdp.yaml"].endswith("FSDP") and kinds["deepspeed_zero3.yaml"].endswith("DEEPSPEED")
    assert kinds["multi_gpu_ddp.yaml"].endswith("MULTI_GPU") and kinds["cpu.yaml"].endswith("NO")
