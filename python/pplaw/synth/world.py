"""``WorldConfig`` (the recipe section that sizes the synthetic world) and the ``World`` it builds."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pplaw._checks import at_least, require
from pplaw.exceptions import ConfigError

# Bump when a generator or the pretraining loop changes in a way that changes its output, so caches
# keyed by the config hash are not reused across incompatible versions.
WORLD_VERSION = 3  # 3: drug popularity (fact_zipf), benchmark over popular drugs (mcq_drugs)


@dataclass
class WorldConfig:
    """Size and seed of the synthetic quickstart world (recipe section ``world``)."""

    seed: int = field(default=0, metadata={"help": "Seed of every generator and of base-model pretraining."})
    # general world (what the base model knows)
    n_countries: int = field(default=8, metadata={"help": "Invented countries (each has a capital)."})
    n_cities: int = field(default=24, metadata={"help": "Invented cities, spread over the countries."})
    n_people: int = field(default=40, metadata={"help": "Invented people with home, job, pet and food facts."})
    general_docs: int = field(default=6000, metadata={"help": "Documents in the general (pretraining) corpus."})
    general_val_docs: int = field(default=200, metadata={"help": "Held-out general validation documents."})
    # domain world (what CPT should teach)
    n_diseases: int = field(default=16, metadata={"help": "Invented diseases (each affects one organ)."})
    # 128 + 128 drugs named with Zipf popularity (fact_zipf ~1, as entity mentions in real text): a few drugs
    # are in most documents, most drugs in few. A CPT run then keeps learning tail facts as its budget grows,
    # so held-out loss falls with D roughly as a power law towards a floor (Hutter 2021; Michaud et al. 2023's
    # quantization model), instead of the cliff of a small, uniformly repeated fact set (with 16 + 16 drugs
    # every fact was seen often enough at ~20% of the corpus and loss then stopped falling). A document
    # still names ~6 drugs, so within-kind PPL stays about value rather than about which names it holds.
    n_drugs: int = field(default=128, metadata={"help": "Drugs with learnable facts (treats, side effect, form)."})
    n_hard_drugs: int = field(default=128, metadata={"help": "Drugs with hard facts (isoenzyme chain, dose, 2nd line)."})
    n_enzymes: int = field(default=8, metadata={"help": "Invented hepatic isoenzymes used by the hard facts."})
    fact_zipf: float = field(
        default=1.1, metadata={"help": "Zipf exponent of how often documents name each drug (rank k is named "
                                       "in proportion to k**-fact_zipf; 0: every drug equally often)."})
    mcq_drugs: int = field(
        default=32, metadata={"help": "Drugs of each kind asked about in the domain benchmark, drawn by "
                                     "popularity without replacement (0: every drug)."})
    domain_docs: int = field(default=3000, metadata={"help": "Documents in the domain corpus (one chunk each)."})
    frac_redundant: float = field(default=0.30, metadata={"help": "Share of domain documents that are general text."})
    frac_learnable: float = field(default=0.25, metadata={"help": "Share of domain documents with learnable facts."})
    frac_hard: float = field(default=0.20, metadata={"help": "Share of domain documents with hard facts."})
    frac_noise: float = field(default=0.25, metadata={"help": "Share of domain documents that are noise."})
    noise_char_fraction: float = field(
        default=0.5, metadata={"help": "Share of noise documents made of random character strings (else word salad)."})
    domain_val_docs: int = field(
        default=300, metadata={"help": "Held-out domain validation documents (learnable and hard facts)."})
    doc_tokens: int = field(
        default=64, metadata={"help": "Each document is cut to at most this many tokens including BOS; use it as "
                                      "the chunk length so one document is one chunk."})
    # base model
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size (trained on the general corpus)."})
    hidden_size: int = field(default=128, metadata={"help": "Hidden size of the tiny Llama base model."})
    num_layers: int = field(default=2, metadata={"help": "Transformer layers of the base model."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads of the base model."})
    intermediate_size: int = field(default=384, metadata={"help": "MLP width of the base model."})
    pretrain_epochs: float = field(default=3.0, metadata={"help": "Epochs over the general corpus."})
    pretrain_batch_size: int = field(default=32, metadata={"help": "Documents per pretraining step."})
    pretrain_lr: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate of pretraining (cosine)."})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads during pretraining."})

    def __post_init__(self) -> None:
        for name in ("n_countries", "n_cities", "n_people", "general_docs", "general_val_docs", "n_diseases",
                     "n_drugs", "n_hard_drugs", "n_enzymes", "domain_docs", "domain_val_docs", "num_layers",
                     "num_heads", "hidden_size", "intermediate_size", "pretrain_batch_size", "threads"):
            require(int(getattr(self, name)) >= 1, f"world.{name}", "be >= 1", getattr(self, name))
        if self.n_cities < self.n_countries:
            raise ConfigError(f"world.n_cities ({self.n_cities}) must be >= world.n_countries ({self.n_countries})")
        if self.n_drugs < self.n_diseases:
            raise ConfigError(f"world.n_drugs ({self.n_drugs}) must be >= world.n_diseases ({self.n_diseases}) "
                              "so that every disease has a learnable first-line drug")
        if self.n_people < 4 or self.n_countries < 4 or self.n_diseases < 4 or self.n_enzymes < 4:
            raise ConfigError("world.n_people, n_countries, n_diseases and n_enzymes must be >= 4 "
                              "(multiple-choice questions need 3 distinct distractors)")
        fracs = self.kind_fractions()
        require(all(f >= 0 for f in fracs.values()) and abs(sum(fracs.values()) - 1.0) <= 1e-6, "world.frac_*",
                "be >= 0 and sum to 1", fracs)
        require(0.0 <= self.noise_char_fraction <= 1.0, "world.noise_char_fraction", "be in [0, 1]",
                self.noise_char_fraction)
        at_least(self.doc_tokens, "world.doc_tokens", 16)
        at_least(self.vocab_size, "world.vocab_size", 300, why=" (256 bytes + specials + merges)")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"world.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        for name in ("pretrain_epochs", "pretrain_lr"):
            require(getattr(self, name) > 0, f"world.{name}", "be > 0", getattr(self, name))

    def kind_fractions(self) -> dict[str, float]:
        return {"redundant": self.frac_redundant, "learnable": self.frac_learnable,
                "hard": self.frac_hard, "noise": self.frac_noise}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WorldConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown world option(s): {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**data)

    # Fields that change the general corpus, tokenizer or base model: the base-model cache key.
    _BASE_FIELDS = ("seed", "n_countries", "n_cities", "n_people", "general_docs", "doc_tokens", "vocab_size",
                    "hidden_size", "num_layers", "num_heads", "intermediate_size", "pretrain_epochs",
                    "pretrain_batch_size", "pretrain_lr")

    def base_hash(self) -> str:
        """Hash of everything the base model depends on (threads excluded: it does not change the result's meaning)."""
        return _hash({"version": WORLD_VERSION, **{k: getattr(self, k) for k in self._BASE_FIELDS}})

    def world_hash(self) -> str:
        return _hash({"version": WORLD_VERSION, **{k: v for k, v in self.to_dict().items() if k != "threads"}})


def _hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class World:
    """Paths of a built world. ``domain_kinds`` is diagnostics only: the method must never read it."""

    root: Path
    config: WorldConfig
    base_model_dir: Path
    tokenizer_dir: Path
    general_corpus: Path
    domain_corpus: Path
    domain_val: Path
    general_val: Path
    domain_mcq: Path
    general_mcq: Path
    tasks_dir: Path
    domain_kinds: Path
    facts: Path
    manifest: Path

    @classmethod
    def at(cls, root: str | Path, config: WorldConfig) -> World:
        root = Path(root).resolve()
        return cls(
            root=root, config=config, base_model_dir=root / "base_model", tokenizer_dir=root / "base_model",
            general_corpus=root / "general_corpus.jsonl", domain_corpus=root / "domain_corpus.jsonl",
            domain_val=root / "domain_val.jsonl", general_val=root / "general_val.jsonl",
            domain_mcq=root / "domain_mcq.jsonl", general_mcq=root / "general_mcq.jsonl",
            tasks_dir=root / "tasks", domain_kinds=root / "diagnostics" / "domain_kinds.jsonl",
            facts=root / "diagnostics" / "facts.json", manifest=root / "manifest.json",
        )

    def to_dict(self) -> dict:
        out = {k: str(v) for k, v in dataclasses.asdict(self).items() if isinstance(v, Path)}
        out["config"] = self.config.to_dict()
        return out
