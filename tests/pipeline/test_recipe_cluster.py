"""Recipe validation of the cluster options (issue 13): train.executor and its resources, the slurm section;
every error names the recipe key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from pplaw.exceptions import ConfigError
from pplaw.pipeline.recipe import describe, load_recipe

MICRO = Path(__file__).with_name("micro.yaml")


def _load(**overrides: str):
    return load_recipe(MICRO, list(overrides.items()))


def test_defaults_are_local_and_the_options_override_from_the_command_line():
    r = _load()
    assert r.train.executor == "local" and r.slurm.time_min == 240 and r.slurm.cluster == "slurm"
    r = _load(**{"train.executor": "ray", "train.gpus_per_run": "2", "train.ray_address": "auto",
                 "slurm.partition": "gpu", "slurm.additional_parameters": "{constraint: h100}",
                 "slurm.setup": "['module load cuda']"})
    assert (r.train.executor, r.train.gpus_per_run, r.train.ray_address) == ("ray", 2, "auto")
    assert r.slurm.partition == "gpu" and r.slurm.additional_parameters == {"constraint": "h100"}
    assert r.slurm.setup == ["module load cuda"]
    assert _load(**{"train.executor": "slurm", "slurm.mem_gb": "16"}).slurm.mem_gb == 16.0


@pytest.mark.parametrize("key, value, match", [
    ("train.executor", "dask", r"train.executor: expected one of \['local', 'ray', 'slurm'\], got 'dask'"),
    ("train.cpus_per_run", "0", r"train.cpus_per_run must be an integer >= 1, got 0"),
    ("train.gpus_per_run", "-1", r"train.gpus_per_run must be an integer >= 0"),
    ("train.gpus_per_run", "0.5", r"train.gpus_per_run: expected int, got float"),
    ("train.max_retries", "-2", r"train.max_retries must be an integer >= 0"),
    ("train.ray_address", "''", r"train.ray_address must be a Ray address"),
    ("slurm.time_min", "soon", r"slurm.time_min: expected int, got str 'soon'"),
    ("slurm.time_min", "0", r"slurm.time_min must be an integer number of minutes >= 1"),
    ("slurm.gpus_per_node", "-1", r"slurm.gpus_per_node must be an integer >= 0 or null"),
    ("slurm.cpus_per_task", "0", r"slurm.cpus_per_task must be an integer >= 1 or null"),
    ("slurm.mem_gb", "-4", r"slurm.mem_gb must be a number of GB > 0 or null"),
    ("slurm.mem_gb", "lots", r"slurm.mem_gb: expected float, got str 'lots'"),
    ("slurm.partition", "''", r"slurm.partition must be a non-empty string or null"),
    ("slurm.additional_parameters", "{--constraint: h100}", r"slurm.additional_parameters must map sbatch option"),
    ("slurm.additional_parameters", "[a, b]", r"slurm.additional_parameters: expected dict"),
    ("slurm.setup", "[1, 2]", r"slurm.setup\[0\]: expected str"),
    ("slurm.array_parallelism", "0", r"slurm.array_parallelism must be an integer >= 1"),
    ("slurm.poll_s", "0", r"slurm.poll_s must be a number of seconds > 0"),
    ("slurm.cluster", "pbs", r"slurm.cluster: expected one of \['slurm', 'local'\]"),
    ("slurm.partiton", "gpu", r"unknown key\(s\) in slurm: slurm.partiton; valid keys there: partition"),
])
def test_a_bad_cluster_option_names_its_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        _load(**{key: value})


def test_help_lists_the_cluster_options():
    text = "\n".join(describe())
    for key in ("train.executor", "train.ray_address", "train.cpus_per_run", "train.gpus_per_run",
                "train.max_retries", "slurm.partition", "slurm.account", "slurm.qos", "slurm.time_min",
                "slurm.gpus_per_node", "slurm.cpus_per_task", "slurm.mem_gb", "slurm.additional_parameters",
                "slurm.setup", "slurm.cluster"):
        assert f"  {key} = " in text, key


def test_a_missing_engine_or_sbatch_fails_before_any_work(monkeypatch, tmp_path):
    import shutil

    from pplaw.pipeline.executors import make_executor

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs `sbatch` on PATH"):
        make_executor(_load(**{"train.executor": "slurm"}), tmp_path)
    ex = make_executor(_load(**{"train.executor": "slurm", "slurm.cluster": "local"}), tmp_path)
    assert ex is not None and ex.slurm.cluster == "local"
    assert make_executor(_load(), tmp_path) is None  # local: run_all's own pool
    ray_ex = make_executor(_load(**{"train.executor": "ray", "train.cpus_per_run": "3"}), tmp_path)
    assert (ray_ex.cpus, ray_ex.threads) == (3, 3)


def test_the_cli_parses_detach_apart_from_the_overrides():
    from pplaw.cli.run import parse_argv, split_detach

    argv, detach = split_detach(["r.yaml", "--detach", "train.executor=slurm", "--out", "x"])
    assert detach and parse_argv(argv) == ("r.yaml", "x", [("train.executor", "slurm")])
