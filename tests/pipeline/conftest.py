"""Fixtures of the pipeline tests: the micro recipe and one finished micro run per session."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

MICRO = Path(__file__).with_name("micro.yaml")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Shared cache of synthetic base models: the micro world's model is pretrained once per session."""
    return tmp_path_factory.mktemp("pplaw-cache")


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, model_cache):
    """`pplaw run tests/pipeline/micro.yaml` run once, through the command line's entry point.

    Returns (run directory, exit code, seconds, captured stdout)."""
    import contextlib
    import io

    from pplaw.cli.main import main

    out = tmp_path_factory.mktemp("micro-run")
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(["run", str(MICRO), "--out", str(out), f"cache_dir={model_cache}"])
    return out, rc, time.perf_counter() - t0, buf.getvalue()
