"""The commands' configs check their own values when they are made (``__post_init__``, the pplaw._checks
helpers), naming the flag: before any table is read or any model loaded."""

import importlib

import pytest

from pplaw.exceptions import ConfigError


@pytest.mark.parametrize("module, config, kwargs, message", [
    ("pplaw.train.evaluate", "EvalConfig", {"bench_batch_size": 0}, "--bench_batch_size must be >= 1"),
    ("pplaw.train.evaluate", "EvalConfig", {"bench_limit": -1}, "--bench_limit must be > 0"),
    ("pplaw.train.evaluate", "EvalConfig", {"eval_chunk_tokens": 1}, "--eval_chunk_tokens must be an integer >= 2"),
    ("pplaw.cli.fit", "FitConfig", {"level": 95}, "pplaw fit: --level must be in (0, 1)"),
    ("pplaw.cli.fit", "FitConfig", {"bootstrap": -1}, "pplaw fit: --bootstrap must be an integer >= 0"),
    ("pplaw.cli.export", "ExportConfig", {"input": "r", "to": "t", "format": "csv"}, "pplaw export: --format must"),
    ("pplaw.cli.export", "ExportConfig", {"input": "r"}, "pplaw export: --to is required"),
    ("pplaw.cli.landscape", "LandscapeConfig", {"input": "s", "out": "o", "bins": 0},
     "pplaw landscape: --bins must be >= 1"),
])
def test_a_command_config_checks_its_values(module, config, kwargs, message):
    cls = getattr(importlib.import_module(module), config)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls(**kwargs)


def test_pplaw_fit_names_a_bad_level_before_reading_the_table(tmp_path, capsys):
    from pplaw.cli.main import main

    assert main(["fit", str(tmp_path / "missing.csv"), "--level", "95"]) == 1
    assert "--level must be in (0, 1), got 95" in capsys.readouterr().err
