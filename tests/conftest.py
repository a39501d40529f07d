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


@pytest.fixture(scope="session")
def slurm_why_not() -> str | None:
    """None when a Slurm cluster with accounting (sacct, which submitit reads job states from) answers here,
    else why not (CI starts a single-node one: .ci/start_slurm.sh, called by .ci/run as root)."""
    import subprocess

    if shutil.which("sbatch") is None:
        return "no `sbatch` on PATH (no Slurm here; as root .ci/start_slurm.sh starts a single-node one)"
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=20)
        subprocess.run(["sacct", "-n", "-X"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return f"the Slurm cluster does not answer (sinfo/sacct: {err})"
    return None
