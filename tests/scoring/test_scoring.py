"""score_perplexity / PerplexityScorer: exact against the model's own loss, invariant to batching, and
cached by a fingerprint that never hashes weights."""

from __future__ import annotations

import os

import pickle
import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import pplaw
from pplaw.exceptions import InvalidInputError, MissingColumnError, ScoringError
from pplaw.score.scorer import PerplexityScorer

from ._tiny import MODEL_KINDS, MODEL_VOCAB


def reference_ppl(model, rows) -> np.ndarray:
    """exp(model(input_ids, labels=input_ids).loss), one sequence at a time, in fp32."""
    out = []
    with torch.no_grad():
        for r in rows:
            x = torch.tensor([list(r)])
            out.append(float(torch.exp(model(input_ids=x, labels=x).loss)))
    return np.array(out)


@pytest.mark.parametrize("name", [f"{k}-{'tied' if t else 'untied'}" for k, t in MODEL_KINDS])
def test_ppl_equals_model_loss(name, tiny_models, chunk_rows):
    path = tiny_models[name]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == name.endswith("-tied")
    rows = chunk_rows[:24]
    scorer = pplaw.score_perplexity(str(path))  # loaded lazily, by path
    got = scorer.score_token_ids(rows)
    assert scorer._head is not None, "the backbone/head split must be used for this architecture"
    np.testing.assert_allclose(got["ppl"], reference_ppl(model, rows), rtol=1e-5)
    assert got["nll_sum"].dtype == np.float64 and got["ppl"].dtype == np.float64
    assert got["n_scored"].dtype == np.int32
    np.testing.assert_array_equal(got["n_scored"], [len(r) - 1 for r in rows])
    np.testing.assert_allclose(got["ppl"], np.exp(got["nll_sum"] / got["n_scored"]), rtol=1e-12)


def _config_with_head_extras(kind: str):
    import transformers as T

    common = dict(vocab_size=MODEL_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2)
    if kind == "gemma2":  # tanh soft-capping of the final logits
        return T.Gemma2Config(head_dim=8, final_logit_softcapping=2.0, **common)
    if kind == "cohere":  # logits * logit_scale
        return T.CohereConfig(logit_scale=0.5, **common)
    if kind == "granite":  # logits / logits_scaling
        return T.GraniteConfig(logits_scaling=4.0, **common)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["gemma2", "cohere", "granite"])
def test_logit_scale_and_softcap_are_honoured(kind, chunk_rows):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config_with_head_extras(kind)).eval()
    scorer = PerplexityScorer(model)
    got = scorer.score_token_ids(chunk_rows[:8])
    head = scorer._head
    assert head is not None
    assert (head.softcap, head.logit_scale) == {"gemma2": (2.0, 1.0), "cohere": (None, 0.5),
                                                "granite": (None, 0.25)}[kind]
    np.testing.assert_allclose(got["ppl"], reference_ppl(model, chunk_rows[:8]), rtol=1e-5)


class _ScaledLlama(torch.nn.Module):
    """A causal LM whose forward scales its logits in a way no config attribute tells: the split must fail
    its self-check and fall back to full logits."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config
        self.base_model_prefix = "inner"

    @property
    def base_model(self):
        return self.inner.model

    def get_output_embeddings(self):
        return self.inner.lm_head

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, labels=None, **kw):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw)
        out.logits = out.logits * 3.0
        if labels is not None:
            out.loss = torch.nn.functional.cross_entropy(out.logits[0, :-1], labels[0, 1:])
        return out


def test_unsplittable_head_falls_back_to_logits_with_warning(llama_path, chunk_rows):
    model = _ScaledLlama(AutoModelForCausalLM.from_pretrained(llama_path, dtype=torch.float32).eval())
    scorer = PerplexityScorer(model)
    with pytest.warns(UserWarning, match="does not reproduce its logits"):
        got = scorer.score_token_ids(chunk_rows[:6])
    assert scorer._head is None
    np.testing.assert_allclose(got["ppl"], reference_ppl(model, chunk_rows[:6]), rtol=1e-5)


@pytest.fixture(scope="module")
def llama_scores(llama_path, chunk_rows):
    return PerplexityScorer(str(llama_path), return_token_nll=True).score_token_ids(chunk_rows)


@pytest.mark.parametrize("settings", [
    dict(batch_size=1), dict(batch_size=3), dict(max_tokens_per_batch=64), dict(max_tokens_per_batch=100_000),
    dict(padding_side="left"), dict(padding_side="left", batch_size=5),
])
def test_batching_and_padding_do_not_change_results(settings, llama_path, chunk_rows, llama_scores):
    got = PerplexityScorer(str(llama_path), **settings).score_token_ids(chunk_rows)
    np.testing.assert_allclose(got["nll_sum"], llama_scores["nll_sum"], rtol=1e-6)
    np.testing.assert_array_equal(got["n_scored"], llama_scores["n_scored"])


def test_order_and_composition_do_not_change_results(llama_path, chunk_rows, llama_scores):
    perm = list(range(len(chunk_rows)))
    random.Random(3).shuffle(perm)
    scorer = PerplexityScorer(str(llama_path), max_tokens_per_batch=256)
    got = scorer.score_token_ids([chunk_rows[i] for i in perm])
    np.testing.assert_allclose(got["nll_sum"], llama_scores["nll_sum"][perm], rtol=1e-6)
    # a chunk alone gives what it gives inside a mixed batch
    alone = scorer.score_token_ids([chunk_rows[5]])
    np.testing.assert_allclose(alone["nll_sum"][0], llama_scores["nll_sum"][5], rtol=1e-6)


def test_token_nll_sums_to_nll_sum(llama_scores, chunk_rows):
    for tok, total, row in zip(llama_scores["token_nll"], llama_scores["nll_sum"], chunk_rows):
        assert tok.dtype == np.float32 and len(tok) == len(row) - 1
        assert np.all(tok >= 0)
        np.testing.assert_allclose(tok.astype(np.float64).sum(), total, rtol=1e-12)


def test_in_memory_model_keeps_its_mode_and_accepts_numpy(llama_path, chunk_rows, llama_scores):
    model = AutoModelForCausalLM.from_pretrained(llama_path, dtype=torch.float32)
    model.train()  # e.g. mid-training: dropout must be off while scoring, and training mode restored
    scorer = PerplexityScorer(model)
    got = scorer.score_token_ids([np.asarray(r, dtype=np.int32) for r in chunk_rows])
    assert model.training
    np.testing.assert_allclose(got["nll_sum"], llama_scores["nll_sum"], rtol=1e-6)
    assert scorer.score_token_ids([])["ppl"].shape == (0,)


def test_datasets_map_input_ids_and_text(llama_path, tokenizers_, chunk_rows, llama_scores):
    import datasets

    ds = datasets.Dataset.from_dict({"input_ids": chunk_rows})
    scored = ds.map(pplaw.score_perplexity(str(llama_path)), batched=True, batch_size=7)
    assert set(scored.column_names) == {"input_ids", "nll_sum", "n_scored", "ppl"}
    np.testing.assert_allclose(scored["nll_sum"], llama_scores["nll_sum"], rtol=1e-6)
    # text input: tokenized with the model's tokenizer (BOS as it does it), then scored the same way
    texts = ["the patient was given aspirin and the fever went down", "blood pressure and heart rate"]
    tok = tokenizers_["bos"]
    by_text = datasets.Dataset.from_dict({"text": texts}).map(pplaw.score_perplexity(str(llama_path)), batched=True)
    by_ids = PerplexityScorer(str(llama_path)).score_token_ids(tok(texts)["input_ids"])
    np.testing.assert_allclose(by_text["ppl"], by_ids["ppl"], rtol=1e-6)


def test_with_rank_num_proc_equals_plain(llama_path, chunk_rows, llama_scores):
    import datasets

    ds = datasets.Dataset.from_dict({"input_ids": chunk_rows[:16]})
    scored = ds.map(pplaw.score_perplexity(str(llama_path)), batched=True, batch_size=4, with_rank=True, num_proc=2)
    np.testing.assert_allclose(scored["nll_sum"], llama_scores["nll_sum"][:16], rtol=1e-6)


_FORK_AFTER_OPENMP = r"""
import json, sys
import datasets, torch
import pplaw

model, rows = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(2)
x = torch.randn(512, 512)
for _ in range(20):
    (x @ x).sum()  # the parent has run multi-threaded OpenMP regions before map forks its workers
plain = pplaw.score_perplexity(model).score_token_ids(rows)["nll_sum"].tolist()
ds = datasets.Dataset.from_dict({"input_ids": rows})
forked = list(ds.map(pplaw.score_perplexity(model), batched=True, batch_size=4, num_proc=2)["nll_sum"])
print("RESULT " + json.dumps({"plain": plain, "forked": forked}))
"""


def test_num_proc_after_multithreaded_torch_in_the_parent(llama_path, chunk_rows):
    """GNU OpenMP is not fork-safe: forked map workers used to hang or segfault (libgomp) once the parent
    had run multi-threaded torch ops. Run in a child interpreter with a timeout so a hang fails, not stalls."""
    import json
    import subprocess
    import sys

    rows = [list(map(int, r)) for r in chunk_rows[:12]]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    try:
        proc = subprocess.run([sys.executable, "-c", _FORK_AFTER_OPENMP, str(llama_path), json.dumps(rows)],
                              capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("map(num_proc=2) hung after multi-threaded torch work in the parent (fork after OpenMP)")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    got = json.loads(lines[-1][len("RESULT "):])
    np.testing.assert_allclose(got["forked"], got["plain"], rtol=1e-6)


def test_scorer_pickles_without_loaded_model(llama_path, chunk_rows):
    scorer = PerplexityScorer(str(llama_path))
    scorer.score_token_ids(chunk_rows[:2])
    assert scorer._model is not None
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._model is None  # each process loads its own copy
    np.testing.assert_allclose(clone.score_token_ids(chunk_rows[:2])["ppl"], scorer.score_token_ids(chunk_rows[:2])["ppl"])


def test_fingerprint_never_hashes_weights(llama_path):
    from datasets.fingerprint import Hasher
    from datasets.utils._dill import dumps

    model = AutoModelForCausalLM.from_pretrained(llama_path, dtype=torch.float32)
    weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    scorer = PerplexityScorer(model)
    assert len(dumps(scorer)) < min(2_000, weights_bytes // 10)
    # stable for equal settings, different for other settings and for changed weights
    assert Hasher.hash(scorer) == Hasher.hash(PerplexityScorer(model))
    assert Hasher.hash(scorer) != Hasher.hash(PerplexityScorer(model, dtype="bfloat16"))
    assert Hasher.hash(scorer) != Hasher.hash(PerplexityScorer(model, return_token_nll=True))
    before = Hasher.hash(scorer)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # "training" the in-memory model
    assert Hasher.hash(scorer) != before
    # by path: batch size / token budget do not change results, so they do not change the fingerprint
    a, b = PerplexityScorer(str(llama_path)), PerplexityScorer(str(llama_path), batch_size=3, max_tokens_per_batch=99)
    assert a.fingerprint == b.fingerprint
    assert len(dumps(a)) < 2_000


def test_datasets_cache_is_reused_and_invalidated(tmp_path, llama_path, chunk_rows, monkeypatch):
    import datasets

    src = tmp_path / "chunks.parquet"
    datasets.Dataset.from_dict({"input_ids": chunk_rows[:10]}).to_parquet(src)
    ds = datasets.load_dataset("parquet", data_files=str(src), split="train", cache_dir=str(tmp_path / "cache"))
    first = PerplexityScorer(str(llama_path))
    out1 = ds.map(first, batched=True)
    assert first._model is not None
    second = PerplexityScorer(str(llama_path))
    out2 = ds.map(second, batched=True)
    assert second._model is None, "an identical scorer must hit the datasets cache (no model load)"
    assert out1._fingerprint == out2._fingerprint
    np.testing.assert_array_equal(out1["ppl"], out2["ppl"])
    third = PerplexityScorer(str(llama_path), return_token_nll=True)
    out3 = ds.map(third, batched=True)
    assert third._model is not None and "token_nll" in out3.column_names


# ---- bad input


def test_short_rows_are_errors_naming_the_row(llama_path):
    scorer = PerplexityScorer(str(llama_path))
    with pytest.raises(InvalidInputError, match=r"row 1 .*1 token"):
        scorer.score_token_ids([[1, 5, 6], [1]])
    with pytest.raises(InvalidInputError, match=r"chunk_id 77"):
        scorer({"input_ids": [[1, 5], []], "chunk_id": [76, 77]})


def test_out_of_range_ids_are_errors(llama_path):
    scorer = PerplexityScorer(str(llama_path))
    with pytest.raises(InvalidInputError, match=rf"token id {MODEL_VOCAB} outside .*\[0, {MODEL_VOCAB}\)"):
        scorer.score_token_ids([[1, 5, MODEL_VOCAB]])
    with pytest.raises(InvalidInputError, match="token id -1"):
        scorer.score_token_ids([[1, -1, 3]])


def test_too_long_rows_are_errors(llama_path):
    with pytest.raises(InvalidInputError, match="more than the model's 128 positions"):
        PerplexityScorer(str(llama_path)).score_token_ids([[3] * 129])


def test_vocab_mismatch_is_an_error(llama_path, tokenizers_):
    from transformers import AutoModelForCausalLM

    import transformers as T

    small = AutoModelForCausalLM.from_config(T.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64))
    with pytest.raises(ScoringError, match="tokenizer has 400 tokens but the model's vocabulary has 64"):
        PerplexityScorer(small, tokenizers_["bos"]).score_texts(["the patient"])


def test_missing_columns_and_missing_tokenizer(llama_path):
    model = AutoModelForCausalLM.from_pretrained(llama_path, dtype=torch.float32)
    scorer = PerplexityScorer(model)
    with pytest.raises(MissingColumnError, match=r"'input_ids' nor the text column 'text'.*\['body'\]"):
        scorer({"body": ["x"]})
    with pytest.raises(InvalidInputError, match="needs a tokenizer"):
        scorer({"text": ["the patient"]})


def test_tokenizer_without_pad_token_works(llama_path, tokenizers_):
    tok = tokenizers_["bos"]
    assert tok.pad_token is None
    got = PerplexityScorer(str(llama_path), tok).score_texts(["the patient was given", "a dose of aspirin today"])
    assert np.all(np.isfinite(got["ppl"])) and got["n_scored"].tolist() == [len(x) - 1 for x in tok(
        ["the patient was given", "a dose of aspirin today"])["input_ids"]]
    assert tok.pad_token is None  # not modified


def test_nan_model_output_is_an_error(llama_path, chunk_rows):
    model = AutoModelForCausalLM.from_pretrained(llama_path, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(ScoringError, match="non-finite NLL"):
        PerplexityScorer(model, check_head=False).score_token_ids(chunk_rows[:2])


@pytest.mark.parametrize("kwargs, match", [
    (dict(dtype="float64"), "`dtype` must be one of"),
    (dict(batch_size=0), "`batch_size` must be a positive int"),
    (dict(padding_side="middle"), "`padding_side` must be"),
    (dict(impl="cuda"), "`impl` must be"),
])
def test_bad_arguments(kwargs, match, llama_path):
    with pytest.raises(InvalidInputError, match=match):
        PerplexityScorer(str(llama_path), **kwargs)
    with pytest.raises(InvalidInputError, match="must be a path, a Hub id or a loaded PreTrainedModel"):
        PerplexityScorer(42)


def test_subclass_fingerprint_never_hashes_weights(llama_path):
    from datasets.utils._dill import dumps

    class MyScorer(PerplexityScorer):
        pass

    model = AutoModelForCausalLM.from_pretrained(llama_path, dtype=torch.float32)
    assert len(dumps(MyScorer(model))) < 2_000
