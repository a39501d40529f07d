"""Session-scoped fixtures of the scoring tests: tiny tokenizers and tiny random models saved to a tmp dir.

See _tiny.py for what they are. Built once per session (a few seconds in all).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._tiny import MODEL_KINDS, _config, _train_tokenizer, synthetic_corpus


@pytest.fixture(scope="session")
def tokenizers_():
    return {"bos": _train_tokenizer(True), "plain": _train_tokenizer(False)}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizers_) -> dict[str, Path]:
    """name ("llama-untied", ...) -> directory with a saved tiny random model and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for i, (kind, tied) in enumerate(MODEL_KINDS):
        torch.manual_seed(1234 + i)
        model = AutoModelForCausalLM.from_config(_config(kind, tied)).eval()
        name = f"{kind}-{'tied' if tied else 'untied'}"
        path = root / name
        model.save_pretrained(path)
        tokenizers_["plain" if kind == "gpt2" else "bos"].save_pretrained(path)
        paths[name] = path
    return paths


@pytest.fixture(scope="session")
def llama_path(tiny_models) -> Path:
    return tiny_models["llama-untied"]


@pytest.fixture(scope="session")
def chunk_rows(tokenizers_) -> list[list[int]]:
    """Token-id rows of varied length (2..100), from the BOS tokenizer."""
    tok = tokenizers_["bos"]
    rows = [ids[:100] for ids in tok(synthetic_corpus(60, seed=7))["input_ids"]]
    return [r for r in rows if len(r) >= 2]
