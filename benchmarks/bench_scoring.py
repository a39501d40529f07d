"""Per-chunk perplexity scoring: pplaw.score_perplexity vs the naive loop vs lm-eval, from one run.

    OMP_NUM_THREADS=2 python benchmarks/bench_scoring.py            # CPU: small random Llama, vocab 32000
    python benchmarks/bench_scoring.py --device cuda                 # GPU: random Qwen3-0.6B-shaped, bf16

Methods, all on the same chunks and the same random weights, in one process:

- ``pplaw``: ``PerplexityScorer.score_token_ids`` (length-sorted micro-batches by token budget, backbone
  + ``pplaw_kernels.fused_linear_nll``: no ``[tokens, vocab]`` logits).
- ``naive``: what people write today: batches of ``--batch-size`` chunks in corpus order padded to the
  longest, ``model(**batch)``, full logits, ``F.cross_entropy(reduction="none")``, masked sum.
- ``lm-eval``: ``lm_eval.models.huggingface.HFLM.loglikelihood_rolling`` on the chunks' text
  (``--skip-lm-eval`` to leave it out).

Two corpora, both cut by ``pplaw.chunk_texts`` with its defaults (1024 tokens, tails >= 256 kept) from
WikiText-2 validation (``../shared/data``; synthetic text when absent): ``paragraphs`` (one document per
line: documents shorter than a chunk, so lengths vary, like abstracts) and ``articles`` (one document per
article: mostly full 1024-token chunks plus tails).

Timing: methods run in interleaved rounds and each keeps its best round, so load from other processes on
a shared machine hits all of them alike; the CPU seconds this process used are reported too (tokens per
CPU-second), which other processes' load barely changes. Tokens/s counts predicted tokens. Memory: peak resident memory
during a method's first round above the resident memory just before it (Linux ``clear_refs``), or
``torch.cuda.max_memory_allocated`` above the allocated memory before it on GPU. The PPL of every chunk is
compared with pplaw's (max relative difference; lm-eval re-tokenizes the text, so it differs more).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PPLAW_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_docs() -> tuple[str, dict[str, list[str]]]:
    wiki = SHARED / "wikitext-2" / "valid.txt"
    if wiki.is_file():
        lines = wiki.read_text(encoding="utf-8").splitlines()
        paragraphs = [x.strip() for x in lines if x.strip() and not x.strip().startswith("=")]
        articles, cur = [], []
        for x in lines:
            if re.match(r"^ = [^=].* = $", x) and cur:  # a top-level heading starts the next article
                articles.append("\n".join(cur))
                cur = []
            cur.append(x)
        articles.append("\n".join(cur))
        return "WikiText-2 valid", {"paragraphs": paragraphs, "articles": articles}
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    doc = lambda lo, hi: " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    return "synthetic (../shared/data absent)", {"paragraphs": [doc(20, 400) for _ in range(2000)],
                                                "articles": [doc(500, 4000) for _ in range(200)]}


def build(device: str, n_tokens: int, chunk_tokens: int):
    """Random model, a BPE tokenizer trained on the corpus, and the chunks of each corpus."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen3Config

    import pplaw

    source, corpora = load_docs()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpora["paragraphs"], trainers.BpeTrainer(
        vocab_size=8192, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")

    torch.manual_seed(0)
    if device == "cuda":  # shaped like Qwen3-0.6B (random weights: no Hub here)
        cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                          num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                          tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).to(device).eval()
        shape = "random Qwen3-0.6B-shaped (28 layers, H=1024, V=151936), bf16"
    else:
        cfg = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                          bos_token_id=1, eos_token_id=2)
        model = AutoModelForCausalLM.from_config(cfg).eval()
        shape = "random Llama (4 layers, H=256, V=32000), fp32"

    import warnings

    warnings.filterwarnings("ignore", message="chunk_texts: dropped")  # short tails are meant to be dropped
    chunked = {}
    for name, docs in corpora.items():
        chunker = pplaw.chunk_texts(tokenizer, chunk_tokens)
        rows, total = [], 0
        for start in range(0, len(docs), 64):
            out = chunker({"text": docs[start:start + 64]}, list(range(start, min(len(docs), start + 64))))
            for ids in out["input_ids"]:
                if total < n_tokens:
                    rows.append([int(x) for x in ids])
                    total += len(ids) - 1
            if total >= n_tokens:
                break
        chunked[name] = rows
    return source, shape, model, tokenizer, chunked


def naive_loop(model, rows, batch_size: int, device: str) -> list[float]:
    import torch
    import torch.nn.functional as F

    out = []
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size]
        width = max(len(r) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for j, r in enumerate(batch):
            ids[j, :len(r)] = torch.tensor(r)
            mask[j, :len(r)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]
            labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                  reduction="none").view(len(batch), -1)  # [B, T-1]
            out.extend(nll.sum(1).double().cpu().tolist())
    return out


class Memory:
    """Peak memory of a block above the memory before it (RSS on CPU, allocated CUDA memory on GPU)."""

    def __init__(self, device: str):
        self.device = device

    def _status(self, key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return math.nan

    def __enter__(self):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.base = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        else:
            self.base = self._status("VmRSS:")
            try:
                Path("/proc/self/clear_refs").write_text("5")  # VmHWM (peak RSS) := current RSS
            except OSError:
                self.base = math.nan
        return self

    def __exit__(self, *exc):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20 - self.base
        else:
            self.peak = self._status("VmHWM:") - self.base


def methods(model, tokenizer, rows, device: str, batch_size: int, max_tokens: int, with_lm_eval: bool):
    """name -> (run() -> per-chunk NLL sums, per-chunk predicted-token counts)."""
    from pplaw.score.scorer import PerplexityScorer

    scorer = PerplexityScorer(model, max_tokens_per_batch=max_tokens)
    counts = [len(r) - 1 for r in rows]
    out = {
        "pplaw": (lambda: scorer.score_token_ids(rows)["nll_sum"].tolist(), counts),
        "naive": (lambda: naive_loop(model, rows, batch_size, device), counts),
    }
    if with_lm_eval:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        texts = [tokenizer.decode(r[1:]) for r in rows]  # lm-eval adds its own prefix token
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device,
                  max_length=max(len(r) for r in rows))
        reqs = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
                for i, t in enumerate(texts)]
        lm_counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        out["lm-eval"] = (lambda: [-x for x in lm.loglikelihood_rolling(reqs, disable_tqdm=True)], lm_counts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--tokens", type=int, default=None, help="predicted tokens per corpus (default 8k CPU, 400k GPU)")
    ap.add_argument("--chunk-tokens", type=int, default=1024, help="chunk_texts chunk length (its default, 1024)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds; each method keeps its best")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per batch of the naive loop and lm-eval")
    ap.add_argument("--max-tokens-per-batch", type=int, default=None, help="pplaw's micro-batch token budget")
    ap.add_argument("--skip-lm-eval", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    max_tokens = args.max_tokens_per_batch or (32768 if device == "cuda" else 4096)
    n_tokens = args.tokens or (400_000 if device == "cuda" else 8_000)
    source, shape, model, tokenizer, chunked = build(device, n_tokens, args.chunk_tokens)
    os.environ.setdefault("TQDM_DISABLE", "1")

    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}"
    print(f"device: {where}; torch {torch.__version__}; model: {shape}")
    print(f"load average at start (other processes on this machine): {os.getloadavg()[0]:.1f}")
    print(f"naive/lm-eval batch size {args.batch_size}; pplaw max_tokens_per_batch {max_tokens}; "
          f"best of {args.rounds} interleaved rounds")
    target = 3.0 if device == "cuda" else 1.5
    for corpus, rows in chunked.items():
        fns = methods(model, tokenizer, rows, device, args.batch_size, max_tokens, not args.skip_lm_eval)
        lengths = [len(r) for r in rows]
        best = {m: math.inf for m in fns}
        cpu = {m: math.inf for m in fns}  # CPU seconds of this process: robust to other processes' load
        peak, nll = {}, {}
        for m, (run, _) in fns.items():  # warm-up (pplaw: also its one-time head self-check)
            run() if m != "pplaw" else fns[m][0]()
        for rnd in range(args.rounds):
            for m, (run, _) in fns.items():
                mem = Memory(device)
                with mem:
                    t0, c0 = time.perf_counter(), time.process_time()
                    nll[m] = run()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    best[m] = min(best[m], time.perf_counter() - t0)
                    cpu[m] = min(cpu[m], time.process_time() - c0)
                peak[m] = mem.peak if rnd == 0 else peak[m]
        print(f"\n{corpus}: {source}, {len(rows)} chunks of {min(lengths)}..{max(lengths)} tokens "
              f"(mean {np.mean(lengths):.0f}), {sum(lengths) - len(rows):,} predicted tokens")
        print("\n| method | tokens/s | best time (s) | speed-up vs naive | tokens per CPU-s (speed-up) "
              "| peak memory above model (MiB) | max rel. PPL diff vs pplaw |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        ref = np.exp(np.asarray(nll["pplaw"]) / np.asarray(fns["pplaw"][1]))
        rate = {m: sum(fns[m][1]) / best[m] for m in fns}
        cpu_rate = {m: sum(fns[m][1]) / cpu[m] for m in fns}
        for m in fns:
            ppl = np.exp(np.asarray(nll[m]) / np.asarray(fns[m][1]))
            print(f"| {m} | {rate[m]:,.0f} | {best[m]:.2f} | {rate[m] / rate['naive']:.2f}x | "
                  f"{cpu_rate[m]:,.0f} ({cpu_rate[m] / cpu_rate['naive']:.2f}x) | {peak[m]:,.0f} | "
                  f"{float(np.max(np.abs(ppl / ref - 1))):.1e} |")
        speed = rate["pplaw"] / rate["naive"]
        line = f"\ntarget >= {target}x the naive loop: {'met' if speed >= target else 'NOT met'} ({speed:.2f}x)"
        mem = peak["pplaw"] / max(peak["naive"], 1e-9)
        line += f"; peak memory {mem:.2f}x the naive loop's" + (" (target <= 0.25x: " + ("met)" if mem <= 0.25 else "NOT met)") if device == "cuda" else "")
        print(line)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
