"""The hand-written stub ``python/pplaw/_core.pyi`` matches the built extension (``mypy.stubtest``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy.stubtest")
pytest.importorskip("pplaw._core", reason="the Rust extension is not built")

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def test_core_stub_matches_the_extension(tmp_path):
    import pplaw._core

    if Path(pplaw._core.__file__).resolve().parent != PYTHON_DIR / "pplaw":
        pytest.skip(f"pplaw._core is imported from {pplaw._core.__file__}, not this checkout")
    config = tmp_path / "mypy.ini"
    # only the stub is checked: what it imports (pyarrow, ...) is not analysed
    config.write_text(f"[mypy]\nignore_missing_imports = True\nfollow_imports = skip\ncache_dir = {tmp_path / 'cache'}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "mypy.stubtest", "pplaw._core", "--mypy-config-file", str(config)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
