"""Builders of tiny tokenizers and tiny random causal LMs for the scoring tests (fixtures in conftest.py).

- Tokenizers: BPE trained with `tokenizers` on a small synthetic corpus, wrapped in
  PreTrainedTokenizerFast, WITHOUT a pad token (pplaw must not need one). ``bos`` adds BOS like Llama,
  ``plain`` adds nothing like GPT-2/Qwen.
- Models: Llama, Qwen2 and GPT-2 configs, tied and untied embeddings, saved with save_pretrained
  (with their tokenizer) so tests can load them by path. The model vocabulary is a little larger than the
  tokenizer's (padded rows, as in real checkpoints). A larger init range gives token NLLs that differ.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "the patient was given a dose of aspirin and the fever went down after two days while the doctor "
    "noted blood pressure heart rate lung function kidney liver trial cohort study result mean median "
    "risk ratio outcome treatment placebo group randomised controlled clinical protein gene cell tumour"
).split()
TOKENIZER_VOCAB = 400
MODEL_VOCAB = 420
MAX_POSITIONS = 128


def synthetic_corpus(n_docs: int = 400, seed: int = 0) -> list[str]:
    """Documents of varied length (2..120 words) from a small vocabulary."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 120))) + "." for _ in range(n_docs)]


def _train_tokenizer(with_bos: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(synthetic_corpus(), trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _config(kind: str, tied: bool):
    import transformers as T

    common = dict(vocab_size=MODEL_VOCAB, tie_word_embeddings=tied, initializer_range=0.2)
    if kind == "llama":
        return T.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS, bos_token_id=1,
                             eos_token_id=2, pad_token_id=None, **common)
    if kind == "qwen2":
        return T.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS, bos_token_id=1,
                             eos_token_id=2, **common)
    if kind == "gpt2":
        return T.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=MAX_POSITIONS, bos_token_id=1,
                            eos_token_id=2, **common)
    raise ValueError(kind)


MODEL_KINDS = [("llama", False), ("llama", True), ("qwen2", True), ("qwen2", False), ("gpt2", True), ("gpt2", False)]
