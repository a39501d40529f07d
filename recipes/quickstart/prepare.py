"""Make the quickstart's tiny world on the CPU (about a minute): corpora, a tokenizer and a base model.

    python recipes/quickstart/prepare.py                 # writes pplaw_runs/quickstart/data/
    pplaw train --config recipes/quickstart/cpt.yaml     # then one CPT run on a domain subset

What it writes under --out:
- general.jsonl / general_eval.jsonl: "general" text (towns, markets, trades) from a small grammar;
- domain.jsonl / domain_eval.jsonl: "clinical" text stating fixed facts (each drug treats one condition,
  acts on one organ), so continual pre-training on it has something to learn;
- tokenizer + base model: a byte-level BPE tokenizer and a 3-layer Llama pretrained on the general corpus
  with pplaw's own trainer (pretrain/model), so the CPT run really continues a pretrained model;
- subset.parquet: column ``index`` with 60% of the domain rows, as ``pplaw sample`` would select them;
- tasks/pubmedqa/test.jsonl when the PubMedQA release is found (--pubmedqa DIR, default
  ../shared/data/pubmedqa next to the repository): the local benchmark task ``pubmedqa_local``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
DRUGS = ["aspirin", "insulin", "heparin", "warfarin", "metformin", "atenolol", "ibuprofen", "morphine", "lisinopril",
         "amoxicillin", "prednisone", "furosemide", "omeprazole", "digoxin", "levothyroxine", "salbutamol"]
CONDITIONS = ["fever", "diabetes", "thrombosis", "atrial fibrillation", "hypertension", "angina", "arthritis", "pain",
              "heart failure", "pneumonia", "asthma", "edema", "reflux", "arrhythmia", "hypothyroidism", "bronchospasm"]
ORGANS = ["heart", "liver", "kidney", "lung", "brain", "stomach", "thyroid", "blood"]
PLACES = ["river", "city", "garden", "market", "mountain", "harbour", "library", "station", "village", "bridge"]
THINGS = ["music", "bread", "trains", "paintings", "boats", "books", "flowers", "clocks", "cheese", "lanterns"]
PEOPLE = ["farmers", "children", "sailors", "artists", "merchants", "students", "bakers", "travellers"]


def domain_doc(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(3, 8)):
        i = rng.randrange(len(DRUGS))
        drug, cond, organ = DRUGS[i], CONDITIONS[i], ORGANS[i % len(ORGANS)]
        out.append(rng.choice([
            f"The patient with {cond} was treated with {drug}.",
            f"{drug.capitalize()} is the usual treatment for {cond} and acts on the {organ}.",
            f"In {cond}, clinicians prescribe {drug} and monitor the {organ}.",
        ]))
    return " ".join(out)


def general_doc(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(3, 8)):
        p, t, who = rng.choice(PLACES), rng.choice(THINGS), rng.choice(PEOPLE)
        out.append(rng.choice([
            f"In the old {p} the {who} like {t}.",
            f"Every day the {who} sell {t} near the {p}.",
            f"The {p} is famous for its {t} and its {who}.",
        ]))
    return " ".join(out)


def write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="pplaw_runs/quickstart/data", help="output folder")
    ap.add_argument("--pubmedqa", default=str(REPO.parent / "shared" / "data" / "pubmedqa"),
                    help="PubMedQA PQA-L release folder (optional)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    general = [general_doc(rng) for _ in range(6200)]
    domain = [domain_doc(rng) for _ in range(4200)]
    write_jsonl(out / "general.jsonl", general[:6000])
    write_jsonl(out / "general_eval.jsonl", general[6000:])
    write_jsonl(out / "domain.jsonl", domain[:4000])
    write_jsonl(out / "domain_eval.jsonl", domain[4000:])
    pq.write_table(pa.table({"index": sorted(rng.sample(range(4000), 2400))}), out / "subset.parquet")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(general[:1000] + domain[:1000], trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(args.seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=192, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(out / "init")
    tokenizer.save_pretrained(out / "init")

    # Pretrain the base model on general text with pplaw's own trainer (a CPT run from a random init).
    from pplaw.train.cpt import parse_args, train

    cfg, ecfg, targs = parse_args([], yaml_overrides={
        "model_name_or_path": str(out / "init"), "domain_data": str(out / "general.jsonl"),
        "output_dir": str(out / "pretrain"), "max_length": 128, "per_device_train_batch_size": 16,
        "budget_tokens": 128 * 16 * 100, "learning_rate": 3e-3, "warmup_steps": 10, "use_cpu": True,
        "logging_steps": 25, "save_steps": 1000, "general_eval_data": str(out / "general_eval.jsonl"),
        "domain_eval_data": str(out / "domain_eval.jsonl"), "eval_max_chunks": 100,
    })
    rec = train(cfg, ecfg, targs)
    print(f"base model: {out / 'pretrain' / 'model'}; general loss {rec['eval']['general']['loss']:.3f}, "
          f"domain loss {rec['eval']['domain']['loss']:.3f}")

    src = Path(args.pubmedqa)
    if (src / "ori_pqal.json").is_file():
        from pplaw.tasks.pubmedqa import build_pubmedqa

        print(f"local PubMedQA task data: {build_pubmedqa(src, out / 'tasks')}")
    else:
        print(f"no PubMedQA release at {src}: the quickstart runs without the pubmedqa_local benchmark")


if __name__ == "__main__":
    main()
