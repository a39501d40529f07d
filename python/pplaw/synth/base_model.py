"""The quickstart's base model: a BPE tokenizer and a tiny Llama pretrained on the general corpus.

Also holds the small plain-torch helpers the world's self-check uses (encode documents to a padded
tensor, a readable training loop, token-weighted NLL, log-likelihood multiple-choice accuracy). They are
deliberately independent of pplaw's scorer/trainer, so ``check_world`` measures the world, not them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from pplaw.synth.world import WorldConfig

SPECIALS = ["<pad>", "<s>", "</s>"]  # ids 0, 1, 2
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on ``texts``, wrapped as a ``PreTrainedTokenizerFast`` that prepends ``<s>``.

    ``add_prefix_space=True`` gives every word its leading-space form, so a word tokenizes the same at the
    start of a document or a question stem as in the middle of a sentence.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", BOS_ID)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=4096)


def cut_to_tokens(tokenizer, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Cut each text at a word boundary so it encodes to at most ``max_tokens`` tokens (without specials)."""
    out = []
    for text, enc in zip(texts, tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)):
        if len(enc.ids) <= max_tokens:
            out.append(text)
            continue
        # Byte-level pre-tokens never merge across words, so cutting where the word of token `max_tokens`
        # starts keeps the prefix's tokens unchanged.
        word = enc.word_ids[max_tokens]
        first = enc.word_ids.index(word)
        out.append(text[: enc.offsets[first][0]].rstrip(" ,"))
    return out


def encode(tokenizer, texts: Sequence[str], length: int) -> torch.Tensor:
    """Texts -> LongTensor [n, length], BOS first, right-padded with PAD_ID, truncated to ``length``."""
    ids = torch.full((len(texts), length), PAD_ID, dtype=torch.long)
    for i, enc in enumerate(tokenizer.backend_tokenizer.encode_batch(list(texts))):
        row = enc.ids[:length]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


def _loss(model, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over non-pad targets of ``batch`` [b, t]."""
    logits = model(input_ids=batch, attention_mask=(batch != PAD_ID).long()).logits  # [b, t, V]
    targets = batch[:, 1:].masked_fill(batch[:, 1:] == PAD_ID, -100)                # [b, t-1]
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def train_causal_lm(model, data: torch.Tensor, *, steps: int, batch_size: int, lr: float, seed: int,
                    warmup: float = 0.05, schedule: str = "cosine", progress: bool = False, desc: str = "train"):
    """A nanoGPT-style loop: AdamW, linear warmup then cosine (or constant) LR, epochs of shuffled rows.

    ``data`` is [n, t] token ids (PAD_ID = padding). Returns the list of per-step losses.
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    n_warm = max(1, int(warmup * steps))
    order = torch.randperm(len(data), generator=gen)
    pos, losses = 0, []
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        if schedule == "cosine":
            scale = min(1.0, (step + 1) / n_warm) * 0.5 * (1 + math.cos(math.pi * step / steps))
        else:
            scale = min(1.0, (step + 1) / n_warm)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        if pos + batch_size > len(order):  # next epoch: reshuffle
            order, pos = torch.randperm(len(data), generator=gen), 0
        batch = data[order[pos: pos + batch_size]]
        pos += batch_size
        loss = _loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def chunk_nll(model, data: torch.Tensor, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row NLL sum (nats, float64) and number of scored tokens for ``data`` [n, t]."""
    model.eval()
    sums, counts = [], []
    for i in range(0, len(data), batch_size):
        batch = data[i: i + batch_size]
        logits = model(input_ids=batch, attention_mask=(batch != PAD_ID).long()).logits.float()  # [b, t, V]
        targets = batch[:, 1:]
        mask = targets != PAD_ID
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")       # [b, t-1]
        sums.append((nll * mask).sum(1).double())
        counts.append(mask.sum(1))
    return torch.cat(sums), torch.cat(counts)


def mean_nll(model, data: torch.Tensor) -> float:
    """Token-weighted mean NLL (nats per token) of ``data``."""
    s, n = chunk_nll(model, data)
    return float(s.sum() / n.sum())


@torch.no_grad()
def mc_scores(model, tokenizer, questions: Sequence[dict], batch_size: int = 256) -> torch.Tensor:
    """Summed log-prob of each option's continuation ``" " + option`` after ``<s> stem``: [n_questions, 4].

    The same quantity lm-eval's ``multiple_choice`` tasks compare for ``acc``.
    """
    model.eval()
    enc = tokenizer.backend_tokenizer
    rows, spans = [], []
    for q in questions:
        ctx = enc.encode(q["stem"]).ids                                      # <s> + stem
        for letter in "ABCD":
            cont = enc.encode(" " + q[letter], add_special_tokens=False).ids
            rows.append(ctx + cont)
            spans.append((len(ctx), len(ctx) + len(cont)))
    scores = torch.zeros(len(rows), dtype=torch.float64)
    for i in range(0, len(rows), batch_size):
        batch = rows[i: i + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)      # [b, width], right padded
        for j, r in enumerate(batch):
            ids[j, : len(r)] = torch.tensor(r)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=(ids != PAD_ID).long()).logits.float(), -1)
        for j in range(len(batch)):
            a, b = spans[i + j]
            tgt = ids[j, a:b]                                                # continuation tokens
            scores[i + j] = logp[j, a - 1: b - 1].gather(1, tgt[:, None]).sum().double()
    return scores.view(len(questions), 4)


def mc_accuracy(model, tokenizer, questions: Sequence[dict]) -> float:
    """lm-eval-style ``acc``: share of questions whose answer has the highest continuation log-prob."""
    if not questions:
        return float("nan")
    pred = mc_scores(model, tokenizer, questions).argmax(1)
    gold = torch.tensor(["ABCD".index(q["answer"]) for q in questions])
    return float((pred == gold).double().mean())


def new_model(config: WorldConfig, vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads, max_position_embeddings=max(128, config.doc_tokens),
        tie_word_embeddings=True, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
    )
    return LlamaForCausalLM(cfg)


def pretrain_base_model(config: WorldConfig, general_texts: Sequence[str], out_dir: Path, *,
                        progress: bool = True, tokenizer=None) -> dict:
    """Pretrain a tiny Llama on ``general_texts`` (training the tokenizer on them unless one is given);
    save model and tokenizer to ``out_dir`` atomically; return the training log."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        t0 = time.perf_counter()
        tokenizer = tokenizer or train_tokenizer(general_texts, config.vocab_size)
        data = encode(tokenizer, general_texts, config.doc_tokens)  # [n_docs, doc_tokens]
        torch.manual_seed(config.seed)
        model = new_model(config, len(tokenizer))
        steps = max(1, int(config.pretrain_epochs * len(data) / config.pretrain_batch_size))
        t1 = time.perf_counter()
        losses = train_causal_lm(model, data, steps=steps, batch_size=config.pretrain_batch_size,
                                 lr=config.pretrain_lr, seed=config.seed, progress=progress, desc="pretrain base")
        mean_tokens = float((data != PAD_ID).sum()) / len(data)
        log = {"base_hash": config.base_hash(), "steps": steps,
               "tokens_seen": int(steps * config.pretrain_batch_size * mean_tokens),
               "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
               "tokenizer_seconds": t1 - t0, "pretrain_seconds": time.perf_counter() - t1,
               "n_parameters": sum(p.numel() for p in model.parameters()), "torch_threads": config.threads}
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "pplaw_synth_base.json").write_text(json.dumps(log, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        return log
    finally:
        torch.set_num_threads(threads)


def cached_base_hash(model_dir: Path) -> str | None:
    """The config hash a saved base model was trained with, or None when absent/unreadable."""
    try:
        return json.loads((Path(model_dir) / "pplaw_synth_base.json").read_text())["base_hash"]
    except (OSError, ValueError, KeyError):
        return None


def load_base(model_dir: Path, model: bool = True):
    """(model, tokenizer) from a saved base model directory; the model in eval mode, fp32 (None if not asked)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    lm = LlamaForCausalLM.from_pretrained(model_dir).eval() if model else None
    return lm, AutoTokenizer.from_pretrained(model_dir)
