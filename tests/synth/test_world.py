"""The synthetic world: determinism, kind proportions, caching, well-formed files, config validation."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from pplaw.exceptions import ConfigError, NotBuiltError
from pplaw.synth import build_world, load_world
from pplaw.synth.base_model import load_base, train_tokenizer
from pplaw.synth.io import read_jsonl
from pplaw.synth.text import KINDS
from pplaw.synth.world import WorldConfig

TEXT_FILES = ("general_corpus", "domain_corpus", "domain_val", "general_val", "domain_mcq", "general_mcq",
              "domain_kinds", "facts")


def test_same_seed_same_world_other_seed_other_world(tiny_world, tiny_config, tmp_path, model_cache):
    again = build_world(tiny_config, tmp_path / "again", progress=False, cache_dir=model_cache)
    for name in TEXT_FILES:
        assert getattr(again, name).read_bytes() == getattr(tiny_world, name).read_bytes(), name
    other = build_world(dataclasses.replace(tiny_config, seed=1), tmp_path / "other", progress=False,
                        cache_dir=model_cache)
    assert other.domain_corpus.read_bytes() != tiny_world.domain_corpus.read_bytes()
    assert other.facts.read_bytes() != tiny_world.facts.read_bytes()


def test_tokenizer_and_pretraining_are_deterministic(tiny_config, tmp_path):
    import torch

    from pplaw.synth.base_model import cut_to_tokens, pretrain_base_model

    texts = [f"the pet of bako is a dog. bako lives in {c}ton." for c in ("ra", "mi", "so")] * 20
    a, b = train_tokenizer(texts, 300), train_tokenizer(texts, 300)
    assert a.get_vocab() == b.get_vocab()
    cfg = dataclasses.replace(tiny_config, pretrain_epochs=0.5)
    texts = cut_to_tokens(a, texts, cfg.doc_tokens - 1)
    pretrain_base_model(cfg, texts, tmp_path / "m1", progress=False, tokenizer=a)
    pretrain_base_model(cfg, texts, tmp_path / "m2", progress=False, tokenizer=a)
    m1, _ = load_base(tmp_path / "m1")
    m2, _ = load_base(tmp_path / "m2")
    for (n1, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.equal(p1, p2), n1


def test_kinds_in_exact_proportions_and_hidden_from_the_corpus(tiny_world, tiny_config):
    corpus = read_jsonl(tiny_world.domain_corpus)
    kinds = read_jsonl(tiny_world.domain_kinds)
    assert all(set(r) == {"doc_id", "text"} for r in corpus)  # the method never sees the kind
    assert [r["doc_id"] for r in corpus] == [r["doc_id"] for r in kinds] == list(range(tiny_config.domain_docs))
    counts = {k: sum(r["kind"] == k for r in kinds) for k in KINDS}
    for k, frac in tiny_config.kind_fractions().items():
        assert abs(counts[k] - frac * tiny_config.domain_docs) < 1, (k, counts)
    # interleaved, not in blocks: every quarter of the corpus holds every kind
    n = len(kinds) // 4
    for q in range(4):
        assert {r["kind"] for r in kinds[q * n:(q + 1) * n]} == set(KINDS)


def test_documents_fit_one_chunk(tiny_world, tiny_config):
    _, tok = load_base(tiny_world.base_model_dir, model=False)
    for name in ("general_corpus", "domain_corpus", "domain_val", "general_val"):
        rows = read_jsonl(getattr(tiny_world, name))
        assert rows and all(r["text"].strip() for r in rows), name
        assert len({r["doc_id"] for r in rows}) == len(rows)
        lengths = [len(tok(r["text"])["input_ids"]) for r in rows]
        assert max(lengths) <= tiny_config.doc_tokens, name
        assert min(lengths) >= tiny_config.doc_tokens // 2, name
        assert tok(rows[0]["text"])["input_ids"][0] == tok.bos_token_id


def test_validation_text_is_not_copied_from_the_corpus(tiny_world):
    corpus = {r["text"] for r in read_jsonl(tiny_world.domain_corpus)}
    val = [r["text"] for r in read_jsonl(tiny_world.domain_val)]
    assert not corpus & set(val)


def test_rebuild_reuses_and_option_changes_rebuild_what_they_must(tiny_world, tiny_config, tmp_path, model_cache):
    weights = next(tiny_world.base_model_dir.glob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    same = build_world(tiny_config, tiny_world.root, progress=False)
    assert next(same.base_model_dir.glob("*.safetensors")).stat().st_mtime_ns == stamp
    # a domain-only option keeps the base model (same base hash) and rewrites the domain corpus
    more = dataclasses.replace(tiny_config, domain_docs=120)
    assert more.base_hash() == tiny_config.base_hash() and more.world_hash() != tiny_config.world_hash()
    w = build_world(more, tmp_path / "more", progress=False, cache_dir=model_cache)
    assert len(read_jsonl(w.domain_corpus)) == 120
    assert json.loads((w.base_model_dir / "pplaw_synth_base.json").read_text())["base_hash"] == more.base_hash()
    # a model option changes the base hash: a new model is trained
    wider = dataclasses.replace(tiny_config, hidden_size=48)
    assert wider.base_hash() != tiny_config.base_hash()
    m, _ = load_base(build_world(wider, tmp_path / "wider", progress=False).base_model_dir)
    assert m.config.hidden_size == 48
    assert load_world(tiny_world.root).config == tiny_config


def test_load_world_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(NotBuiltError, match="no manifest.json"):
        load_world(tmp_path)


def test_manifest_and_task_yamls_are_well_formed(tiny_world):
    manifest = json.loads(tiny_world.manifest.read_text())
    assert manifest["world_hash"] == tiny_world.config.world_hash()
    assert manifest["domain_kind_counts"] and manifest["config"] == tiny_world.config.to_dict()
    for name in ("pplaw_synth_domain", "pplaw_synth_general"):
        task = yaml.safe_load((tiny_world.tasks_dir / f"{name}.yaml").read_text())
        assert task["task"] == name and task["output_type"] == "multiple_choice"
        from pathlib import Path

        assert Path(task["dataset_kwargs"]["data_files"]["test"]).is_file()


@pytest.mark.parametrize("bad, match", [
    ({"frac_noise": 0.5}, "sum to 1"),
    ({"n_drugs": 2}, "n_drugs"),
    ({"hidden_size": 30, "num_heads": 4}, "divisible"),
    ({"doc_tokens": 8}, "doc_tokens"),
    ({"n_enzymes": 2}, "distractors"),
    ({"noise_char_fraction": 1.5}, "noise_char_fraction"),
])
def test_bad_config_is_a_config_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        WorldConfig(**bad)


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="domian_docs"):
        WorldConfig.from_dict({"domian_docs": 3})
