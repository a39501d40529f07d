"""``pplaw.synth``: the synthetic "clinical knowledge" world behind the quickstart (``pplaw run`` with no recipe).

No model hub is reachable in the quickstart, and it must finish on a 2-core CPU in minutes, so pplaw makes
a world whose ground truth is known and checks that the method finds it. ``build_world(config, out_dir)``
writes (see :class:`~pplaw.synth.world.World` for the paths):

- a **general corpus** of templated English-like sentences about invented people, cities and countries
  (with their relations: home, job, pet, food, capital) and truisms about real words; a byte-level
  **BPE tokenizer** and a **tiny Llama** pretrained on it (cached, keyed by the config hash);
- a **domain corpus** of one-chunk documents (``doc_tokens`` tokens, BOS included) of four kinds, in the
  proportions ``frac_*``, interleaved in random order:

  ========== ================================================================ ============ ============
  kind       what it is                                                       base PPL     CPT value
  ========== ================================================================ ============ ============
  redundant  documents of the general generator: facts the base model knows   lowest       none
  learnable  new facts about invented drugs/diseases in short sentences of    medium       high
             general-corpus words; each fact repeated across many documents
  hard       three-way relation chains (drug -> isoenzyme -> inhibitor, dose,  higher       high, slower
             second-line use) in long sentences of new jargon; fewer repeats
  noise      word salad over the whole vocabulary, random character strings   highest      negative
  ========== ================================================================ ============ ============

  The kind of each document is written to ``diagnostics/domain_kinds.jsonl`` only; the method reads
  ``domain_corpus.jsonl`` (``doc_id``, ``text``) and never sees it.
- **held-out domain validation text**: new documents drawn from the same learnable and hard fact
  distributions (fresh compositions and paraphrase choices, never a corpus document);
- **multiple-choice benchmarks** (MedMCQA-style JSONL + lm-eval local task YAMLs in ``tasks/``): one
  question per learnable and hard domain fact, one per general fact.

Why this shape: selecting CPT data by base-model perplexity only helps when perplexity tracks value.
Here low PPL means "already known" (wasted budget), very high PPL means "unlearnable" (harmful), and
the learnable facts sit in between, so a middle perplexity band beats random selection (which spends
part of the budget on redundancy and noise) and lowest-perplexity selection (which picks the known
text) — the regime the perplexity-aware scaling law is about. ``python -m pplaw.synth.check_world``
measures these properties (the quickstart's report shows them for the default world).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from pplaw.synth.world import World, WorldConfig

__all__ = ["World", "WorldConfig", "build_world", "load_world"]


def _log(progress: bool, msg: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(f"[pplaw.synth] {msg}")


def load_world(out_dir: str | Path) -> World:
    """The world previously built in ``out_dir`` (from its manifest), without rebuilding anything."""
    from pplaw.exceptions import NotBuiltError, SerializationError

    manifest = Path(out_dir) / "manifest.json"
    if not manifest.is_file():
        raise NotBuiltError(f"no synthetic world in {str(out_dir)!r} (no manifest.json); call build_world first")
    try:
        config = WorldConfig.from_dict(json.loads(manifest.read_text())["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise SerializationError(f"{str(manifest)!r} is not a pplaw.synth manifest: {err}") from err
    return World.at(out_dir, config)


def _is_built(world: World) -> bool:
    from pplaw.synth.base_model import cached_base_hash

    try:
        manifest = json.loads(world.manifest.read_text())
    except (OSError, ValueError):
        return False
    files = [world.general_corpus, world.domain_corpus, world.domain_val, world.general_val, world.domain_mcq,
             world.general_mcq, world.domain_kinds, world.facts]
    return (manifest.get("world_hash") == world.config.world_hash() and all(p.is_file() for p in files)
            and cached_base_hash(world.base_model_dir) == world.config.base_hash())


def build_world(config: WorldConfig | None = None, out_dir: str | Path = "pplaw_world", progress: bool = True,
                cache_dir: str | Path | None = None) -> World:
    """Generate the world into ``out_dir`` (idempotent: an up-to-date world is returned as is).

    ``cache_dir``, when given, keeps pretrained base models keyed by ``config.base_hash()`` so that worlds
    in other directories with the same general corpus and model settings reuse them.
    """
    from pplaw.synth import tasks as TK
    from pplaw.synth import text
    from pplaw.synth.base_model import cached_base_hash, cut_to_tokens, load_base, pretrain_base_model
    from pplaw._atomic import atomic_write_text
    from pplaw.synth.io import write_jsonl

    config = config or WorldConfig()
    if not isinstance(config, WorldConfig):
        raise TypeError(f"config must be a pplaw.synth.WorldConfig, got {type(config).__name__}")
    world = World.at(out_dir, config)
    if _is_built(world):
        TK.render_tasks(world.tasks_dir, world.root, {"domain": world.domain_mcq, "general": world.general_mcq})
        _log(progress, f"world {config.world_hash()} already built in {world.root}")
        return world
    world.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seed, limit = config.seed, config.doc_tokens - 1  # minus one: BOS is prepended

    taken: set[str] = set()
    gkb = text.make_general_kb(seed, config.n_countries, config.n_cities, config.n_people, taken)
    dkb = text.make_domain_kb(seed, config.n_diseases, config.n_drugs, config.n_hard_drugs, config.n_enzymes, taken,
                            zipf=config.fact_zipf)
    reserved = frozenset(taken)  # every invented entity name of the world
    n_sent = max(4, config.doc_tokens // 5)  # more sentences than fit: documents are then cut to `limit` tokens
    rng = text.stream(seed, "general-corpus")
    general_raw = [text.general_doc(gkb, rng, n_sent, reserved) for _ in range(config.general_docs)]

    # Base model: reuse when its recorded hash matches (here or in cache_dir); else train and cache it.
    timings = {}
    base_hash = config.base_hash()
    cached = Path(cache_dir) / f"base-{base_hash}" if cache_dir else None
    if cached_base_hash(world.base_model_dir) != base_hash:
        if cached is not None and cached_base_hash(cached) == base_hash:
            _log(progress, f"base model {base_hash} from cache {cached}")
            shutil.rmtree(world.base_model_dir, ignore_errors=True)
            shutil.copytree(cached, world.base_model_dir)
        else:
            _log(progress, f"pretraining base model {base_hash} on {config.general_docs} general documents")
            from pplaw.synth.base_model import train_tokenizer

            tok = train_tokenizer(general_raw, config.vocab_size)
            log = pretrain_base_model(config, cut_to_tokens(tok, general_raw, limit), world.base_model_dir,
                                      progress=progress, tokenizer=tok)
            timings["pretrain_seconds"] = log["pretrain_seconds"]
            if cached is not None:
                shutil.rmtree(cached, ignore_errors=True)
                shutil.copytree(world.base_model_dir, cached)
    _, tok = load_base(world.base_model_dir, model=False)

    def cut(texts: list[str]) -> list[str]:
        return cut_to_tokens(tok, texts, limit)

    general = cut(general_raw)
    write_jsonl(world.general_corpus, ({"doc_id": i, "text": t} for i, t in enumerate(general)))
    rng = text.stream(seed, "general-val")
    general_val = cut([text.general_doc(gkb, rng, n_sent, reserved) for _ in range(config.general_val_docs)])
    write_jsonl(world.general_val, ({"doc_id": i, "text": t} for i, t in enumerate(general_val)))

    # Domain corpus: exact kind counts (largest remainder), kinds interleaved in random order.
    kinds = _kind_sequence(config, config.domain_docs, text.stream(seed, "domain-kinds"))
    words = text.vocabulary(gkb, dkb)
    gens = {
        "redundant": lambda r: text.general_doc(gkb, r, n_sent, reserved),
        "learnable": lambda r: text.learnable_doc(dkb, r, n_sent),
        "hard": lambda r: text.hard_doc(dkb, r, n_sent),
        "noise": lambda r: text.noise_doc(words, r, config.doc_tokens, config.noise_char_fraction),
    }
    streams = {k: text.stream(seed, f"domain-{k}") for k in text.KINDS}
    domain = cut([gens[k](streams[k]) for k in kinds])
    write_jsonl(world.domain_corpus, ({"doc_id": i, "text": t} for i, t in enumerate(domain)))
    write_jsonl(world.domain_kinds, ({"doc_id": i, "kind": k} for i, k in enumerate(kinds)))

    # Held-out domain validation: learnable and hard facts in the corpus's proportion, fresh streams.
    val_cfg = {"learnable": config.frac_learnable, "hard": config.frac_hard}
    total = sum(val_cfg.values()) or 1.0
    n_learn = round(config.domain_val_docs * val_cfg["learnable"] / total)
    val_kinds = ["learnable"] * n_learn + ["hard"] * (config.domain_val_docs - n_learn)
    vstreams = {k: text.stream(seed, f"domain-val-{k}") for k in ("learnable", "hard")}
    val = cut([gens[k](vstreams[k]) for k in val_kinds])
    write_jsonl(world.domain_val, ({"doc_id": i, "text": t} for i, t in enumerate(val)))
    write_jsonl(world.root / "diagnostics" / "domain_val_kinds.jsonl",
                ({"doc_id": i, "kind": k} for i, k in enumerate(val_kinds)))

    write_jsonl(world.domain_mcq, TK.domain_questions(dkb, seed, config.mcq_drugs))
    write_jsonl(world.general_mcq, TK.general_questions(gkb, seed))
    TK.render_tasks(world.tasks_dir, world.root, {"domain": world.domain_mcq, "general": world.general_mcq})
    import dataclasses

    atomic_write_text(world.facts, json.dumps({"general": dataclasses.asdict(gkb), "domain": dataclasses.asdict(dkb)},
                                              indent=1, sort_keys=True))
    timings["world_seconds"] = time.perf_counter() - t0
    counts = {k: kinds.count(k) for k in text.KINDS}
    manifest = {"world_hash": config.world_hash(), "base_hash": base_hash, "config": config.to_dict(),
                "domain_kind_counts": counts, "timings": timings,
                "files": {k: str(Path(v).relative_to(world.root)) for k, v in world.to_dict().items()
                          if k not in ("root", "config") and str(v).startswith(str(world.root))}}
    atomic_write_text(world.manifest, json.dumps(manifest, indent=2))
    _log(progress, f"world {config.world_hash()} built in {world.root} ({timings['world_seconds']:.1f} s; "
                   f"domain kinds {counts})")
    return world


def _kind_sequence(config: WorldConfig, n: int, rng) -> list[str]:
    fracs = config.kind_fractions()
    counts = {k: int(n * f) for k, f in fracs.items()}
    by_remainder = sorted(fracs, key=lambda k: (n * fracs[k] - counts[k], -list(fracs).index(k)), reverse=True)
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    seq = [k for k in fracs for _ in range(counts[k])]
    rng.shuffle(seq)
    return seq
