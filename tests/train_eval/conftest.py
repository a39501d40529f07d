"""Tiny world for the training/evaluation tests: a BPE tokenizer, a random Llama model, small corpora.

Everything is built locally (no Hub) once per session: a byte-level BPE tokenizer trained with
``tokenizers`` and wrapped in ``PreTrainedTokenizerFast``, a 2-layer ``LlamaConfig`` model saved with
``save_pretrained``, and synthetic "domain" (clinical notes from a small grammar: learnable) and "general"
(a different grammar) corpora with held-out splits, as JSONL.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO / "python"

DRUGS = ["aspirin", "insulin", "heparin", "warfarin", "metformin", "atenolol", "ibuprofen", "morphine"]
SIGNS = ["fever", "cough", "chest pain", "anemia", "nausea", "headache", "rash", "fatigue"]
ORGANS = ["heart", "liver", "kidney", "lung", "brain", "skin"]
PLACES = ["river", "city", "garden", "market", "mountain", "harbour", "library", "station"]
THINGS = ["music", "bread", "trains", "paintings", "boats", "books", "flowers", "clocks"]


def domain_doc(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(3, 6)):
        d, s, o = rng.choice(DRUGS), rng.choice(SIGNS), rng.choice(ORGANS)
        out.append(f"The patient with {s} of the {o} was treated with {d}. The {o} responded to {d} well.")
    return " ".join(out)


def general_doc(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(3, 6)):
        p, t = rng.choice(PLACES), rng.choice(THINGS)
        out.append(f"In the old {p} people like {t} and sell {t} near the {p} every day.")
    return " ".join(out)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def _build_tokenizer(texts: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def _build_model(tokenizer, out: Path, *, hidden: int = 32, layers: int = 2, max_positions: int = 256, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=max_positions, tie_word_embeddings=True,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    rng = random.Random(0)
    dom = [domain_doc(rng) for _ in range(260)]
    gen = [general_doc(rng) for _ in range(260)]
    tokenizer = _build_tokenizer(dom[:100] + gen[:100])
    model_dir = _build_model(tokenizer, root / "base")
    paths = {
        "root": root,
        "model": model_dir,
        "domain": write_jsonl(root / "domain.jsonl", [{"text": t} for t in dom[:200]]),
        "general": write_jsonl(root / "general.jsonl", [{"text": t} for t in gen[:200]]),
        "domain_eval": write_jsonl(root / "domain_eval.jsonl", [{"text": t} for t in dom[200:]]),
        "general_eval": write_jsonl(root / "general_eval.jsonl", [{"text": t} for t in gen[200:]]),
    }
    return paths


@pytest.fixture(scope="session")
def tokenizer(world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(world["model"])


def _cpt_args(world, output_dir, **overrides):
    """(CPTConfig, EvalConfig, CPTTrainingArguments) for a tiny CPU run, as a recipe would give them."""
    from pplaw.train.cpt import parse_args

    values = {
        "model_name_or_path": str(world["model"]), "domain_data": str(world["domain"]),
        "output_dir": str(output_dir), "max_length": 64, "per_device_train_batch_size": 4,
        "learning_rate": 3e-3, "warmup_steps": 2, "logging_steps": 5, "save_steps": 1000,
        "use_cpu": True, "dataloader_num_workers": 0, "disable_tqdm": True, "seed": 0,
    }
    values.update(overrides)
    return parse_args([], yaml_overrides=values)


def _subprocess_env() -> dict[str, str]:
    """Environment for child processes: pplaw importable from the checkout, small thread counts, offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _venv_bin(name: str) -> str:
    """A console script next to the running interpreter (the venv's), e.g. ``accelerate``, ``lm_eval``."""
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="session")
def make_args(world):
    """``make_args(output_dir, **recipe_keys)`` -> the three parsed config objects of a tiny CPU run."""
    return lambda output_dir, **kw: _cpt_args(world, output_dir, **kw)


@pytest.fixture(scope="session")
def child_env():
    return _subprocess_env()


@pytest.fixture(scope="session")
def venv_bin():
    return _venv_bin


@pytest.fixture(scope="session")
def build_model():
    """``build_model(tokenizer, out_dir, hidden=32, layers=2, max_positions=256)``: a random tiny Llama, saved."""
    return _build_model
