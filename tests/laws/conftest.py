"""Fixtures for the pplaw.laws tests: the Epoch AI Chinchilla points and synthetic data from known laws."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
try:  # an uninstalled checkout (no `maturin develop` yet): the pure-Python laws still import from python/
    import pplaw  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(REPO / "python"))

if str(Path(__file__).parent) not in sys.path:  # laws_testdata, also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))
from laws_testdata import CHINCHILLA_CSV, EPOCH, perplexity_runs, simulate  # noqa: E402


@pytest.fixture(scope="session")
def chinchilla_df() -> pd.DataFrame:
    if not CHINCHILLA_CSV.is_file():
        pytest.skip(f"Epoch AI's Chinchilla points are not at {CHINCHILLA_CSV} (../shared/data is absent in a "
                    "plain clone)")
    df = pd.read_csv(CHINCHILLA_CSV)
    df["N"] = df["Model Size"]
    df["D"] = df["Training FLOP"] / (6 * df["Model Size"])  # tokens = FLOP / (6 N)
    return df.sort_values("loss").iloc[:-5].reset_index(drop=True)  # drop the 5 highest losses -> 240


@pytest.fixture(scope="session")
def ppl_df() -> pd.DataFrame:
    return perplexity_runs()


@pytest.fixture(scope="session")
def ppl_fit(ppl_df):
    from pplaw.laws import PerplexityLaw

    return PerplexityLaw().fit(ppl_df, target="loss", bootstrap=60, seed=0, progress=False)


@pytest.fixture(scope="session")
def chin_synth() -> pd.DataFrame:
    """Chinchilla-law losses on a 5 x 6 grid of (N, D), 0.5% noise."""
    from pplaw.laws import Chinchilla

    N, D = np.meshgrid(np.geomspace(5e7, 5e9, 5), np.geomspace(1e9, 2e11, 6))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    df["loss"] = simulate(Chinchilla(), EPOCH, {"N": df["N"], "D": df["D"]}, 0.005, seed=3)
    return df
