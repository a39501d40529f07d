"""Fixtures for the pplaw-kernels tests.

Without CUDA the Triton kernels run under the interpreter, which Triton reads when a kernel module
is imported (``@triton.jit`` decides then), so TRITON_INTERPRET is set here, at collection time,
before any test imports ``pplaw_kernels.ops``. With CUDA the same tests run the compiled kernels.
"""

from __future__ import annotations

import os
import shutil

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def device() -> str:
    """Where the kernel tests run: CUDA when present, else CPU (Triton interpreter)."""
    return "cuda" if torch.cuda.is_available() else "cpu"
