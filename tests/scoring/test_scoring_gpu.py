"""The scorer on a CUDA GPU: the Triton fused kernel, bf16, one process per GPU (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from pplaw.score.scorer import PerplexityScorer

pytestmark = pytest.mark.gpu


def _reference(model, rows):
    out = []
    with torch.no_grad():
        for r in rows:
            x = torch.tensor([list(r)], device=model.device)
            out.append(float(torch.exp(model(input_ids=x, labels=x).loss.float())))
    return np.array(out)


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-4), ("bfloat16", 3e-2)])
def test_cuda_matches_model_loss(dtype, rtol, llama_path, chunk_rows):
    model = AutoModelForCausalLM.from_pretrained(llama_path, dtype=getattr(torch, dtype)).cuda().eval()
    scorer = PerplexityScorer(str(llama_path), device="cuda", dtype=dtype, impl="triton")
    got = scorer.score_token_ids(chunk_rows)
    assert scorer._head is not None and scorer._head.weight.is_cuda
    np.testing.assert_allclose(got["ppl"], _reference(model, chunk_rows), rtol=rtol)


def test_cuda_equals_cpu_in_fp32(llama_path, chunk_rows):
    gpu = PerplexityScorer(str(llama_path), device="cuda", dtype="float32").score_token_ids(chunk_rows)
    cpu = PerplexityScorer(str(llama_path), device="cpu").score_token_ids(chunk_rows)
    np.testing.assert_allclose(gpu["nll_sum"], cpu["nll_sum"], rtol=1e-4)


def test_with_rank_uses_one_gpu_per_process(llama_path):
    scorer = PerplexityScorer(str(llama_path))
    scorer._load(rank=3)
    assert scorer._head.weight.device == torch.device("cuda", 3 % torch.cuda.device_count())
