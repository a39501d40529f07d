"""Shared pytest set-up for pplaw.

- Thread counts are capped before torch is imported: more threads than cores makes torch crawl and
  ``datasets.map(num_proc=...)`` hang on small CI machines.
- Without a GPU, Triton kernels run under the interpreter; TRITON_INTERPRET must be set before any
  kernel module is imported, so it is set here, at collection time.
- ``shared_data`` points at ``../shared/data`` (real data: PubMedQA, WikiText-2, Chinchilla points). A user's
  clone has no ``../shared``: tests that need it skip with a clear reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
HAS_CUDA_DRIVER = shutil.which("nvidia-smi") is not None
if not HAS_CUDA_DRIVER:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PPLAW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (override with PPLAW_SHARED_DATA); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DATA} (present in CI, absent in a plain clone)")
    return SHARED_DATA


def _cuda_available() -> bool:
    if not HAS_CUDA_DRIVER:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # a broken CUDA install means: no GPU for the tests
        return False


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (marked `gpu`); none on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
