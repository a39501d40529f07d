"""Fixtures of the synthetic-world tests: one tiny world per session (seconds to build)."""

from __future__ import annotations

import pytest

from pplaw.synth import build_world
from pplaw.synth.world import WorldConfig

TINY = dict(
    n_countries=4, n_cities=8, n_people=8, general_docs=300, general_val_docs=20, n_diseases=4, n_drugs=6,
    n_hard_drugs=6, n_enzymes=4, domain_docs=200, domain_val_docs=20, vocab_size=400, hidden_size=32,
    num_layers=1, num_heads=2, intermediate_size=64, pretrain_epochs=1.0, pretrain_batch_size=16, threads=1,
)


@pytest.fixture(scope="session")
def tiny_config() -> WorldConfig:
    return WorldConfig(**TINY)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture(scope="session")
def tiny_world(tiny_config, tmp_path_factory, model_cache):
    return build_world(tiny_config, tmp_path_factory.mktemp("world"), progress=False, cache_dir=model_cache)
