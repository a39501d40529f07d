"""Real text with junk at one end of the landscape and known text at the other: is DOS ever worse than random?

    python benchmarks/bench_junk.py [--seeds 0 1 2] [--out pplaw_runs/bench_junk] [--data DIR] [--inputs DIR]
                                    [key=value ...]

Issue 11's real-text check, as a bring-your-own recipe (no network, no Hub). Data from ``../shared/data``
relative to the repository root (``--data`` to change it): PubMedQA (``pubmedqa/ori_pqal.json``, 1000
abstracts) and raw wikitext-2 (``wikitext-2/test.txt``, ``valid.txt``; the shared copy has no ``train.txt``,
so ``test.txt`` stands in for the pretraining split). Missing data: exit 2 with a message.

1. **Base model** (``<out>/inputs/base_model``): a byte-level BPE tokenizer (2048) trained on wikitext-2
   (test + valid) and the PubMedQA abstracts, and a tiny Llama (2 layers, hidden 128) pretrained on all of
   wikitext-2 ``test.txt`` for 4 epochs (the synthetic world's helpers, :mod:`pplaw.synth.base_model`),
   saved with ``save_pretrained``.
2. **Domain corpus** (``corpus.jsonl``: ``doc_id``, ``text``; one document = one 64-token chunk): 800 real
   PubMedQA abstracts (*domain*), 300 wikitext-2 paragraphs the base model was pretrained on (*known*:
   lowest PPL) and 300 word-salad documents (the 800 abstracts' words drawn at random by frequency, no
   syntax: *salad*, junk, highest PPL), each cut to 63 tokens (+ BOS), shuffled, integer ids. Each
   document's kind is in ``kinds.jsonl`` (the recipe's ``corpus.diagnostics``: the report's per-kind view
   only, never seen by the method). The other 200 abstracts are the held-out domain set (the domain loss);
   wikitext-2 ``valid.txt`` paragraphs are the general replay data (first half) and the general held-out
   set (second half).
3. **Recipe** (``recipe.yaml``, quickstart-sized: 7 windows + 3 mixtures + 5 budget bands at 2 sizes, 4
   validation runs at 2x; 25% replay; budget 30% of the corpus; baselines random, lowest_ppl, best_sweep):
   the default ``fit.laws``; held-out losses only (no lm-eval tasks are built for this corpus). ``pplaw
   run`` once per seed ``k`` into ``<out>/seed<k>`` with ``plan.seeds=[k]`` and ``select.seeds=[k]``: each
   seed has its own sweep, law, selection and final runs (corpus and base model are shared). Resumable:
   inputs are built once, a finished seed is read back, an interrupted one resumes inside ``pplaw run``.
4. **Table** (printed, and ``<out>/table.md`` / ``table.csv``): per seed, held-out domain loss of DOS,
   random, lowest-PPL and best-sweep; DOS - random; what DOS selected (the law's band or the best sweep
   regime, with its landscape quantiles); the kind mix (domain/known/salad %) of the DOS, random and
   best-sweep subsets (``select/subsets/*.parquet``: row indices into the scored chunks); the chosen law
   and its held-out MAPE (and the paper's law's); the law's forecast error for the DOS run; minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC_TOKENS = 64           # one document = one chunk (scoring.chunk_tokens = train.max_length)
N_DOMAIN, N_HELDOUT, N_KNOWN, N_SALAD = 800, 200, 300, 300
MODEL = dict(vocab_size=2048, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=384,
             pretrain_epochs=4.0, pretrain_batch_size=64, pretrain_lr=3e-3, threads=1)
INPUTS_VERSION = 2        # bump when anything above or in build_inputs changes

RECIPE = {
    "name": "bench_junk",
    "model": {"base_model": "base_model"},
    "corpus": {"domain_data": "corpus.jsonl", "text_column": "text", "id_column": "doc_id",
               "general_data": "general.jsonl", "domain_eval_data": "domain_heldout.jsonl",
               "general_eval_data": "general_heldout.jsonl", "diagnostics": "kinds.jsonl"},
    "scoring": {"chunk_tokens": DOC_TOKENS, "max_tokens_per_batch": 16384},
    "landscape": {"n_bins": 20},
    "plan": {"sizes": [0.05, 0.1], "windows": 7, "mixtures": 3, "budget_bands": 5, "replay_ratios": [0.25],
             "seeds": [0], "validation_sizes": [0.2], "validation_regimes": 4},
    "train": {"workers": 2, "threads_per_worker": 1, "epochs": 2, "max_length": DOC_TOKENS,
              "per_device_train_batch_size": 8, "learning_rate": 2.0e-3, "lr_scheduler_type": "cosine",
              "warmup_steps": 0.05, "keep_models": False},
    "evaluate": {"domain_benchmarks": [], "general_benchmarks": []},
    "fit": {"target": "domain_loss", "space": "log_ppl", "sigma": "std", "bootstrap": 100},
    "select": {"budget": 0.3, "region": "both", "seeds": [0], "replay_ratio": 0.25},
    "baselines": {"methods": ["random", "lowest_ppl", "best_sweep"]},
    "report": {"title": "pplaw bench_junk: PubMedQA + known wikitext + word salad"},
}


def log(msg: str) -> None:
    print(f"[bench_junk {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ data

def wikitext_paragraphs(path: Path) -> list[str]:
    """Article body lines of a raw wikitext file (headings `= ... =` and blank lines dropped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s and not s.startswith("="):
            out.append(s)
    return out


def pubmed_abstracts(path: Path) -> list[tuple[str, str]]:
    """(PMID, abstract = the CONTEXTS joined) of every PubMedQA PQA-L item, in file order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(pmid, " ".join(item["CONTEXTS"])) for pmid, item in data.items()]


def word_salad(words: list[str], rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n_words))


def build_inputs(data: Path, d: Path) -> dict:
    """Tokenizer, base model, corpus, held-out sets, kinds and recipe in ``d`` (skipped when built)."""
    import torch

    from pplaw.synth.base_model import cut_to_tokens, mean_nll, pretrain_base_model, train_tokenizer
    from pplaw.synth.io import write_jsonl
    from pplaw.synth.world import WorldConfig

    manifest = d / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("version") == INPUTS_VERSION:
        log(f"inputs already built in {d}")
        return json.loads(manifest.read_text())
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = random.Random(0)
    wiki_train = wikitext_paragraphs(data / "wikitext-2" / "test.txt")   # the pretraining split (no train.txt)
    wiki_valid = wikitext_paragraphs(data / "wikitext-2" / "valid.txt")
    pubmed = pubmed_abstracts(data / "pubmedqa" / "ori_pqal.json")
    if len(pubmed) < N_DOMAIN + N_HELDOUT:
        raise SystemExit(f"PubMedQA has {len(pubmed)} abstracts, need {N_DOMAIN + N_HELDOUT}")
    rng.shuffle(pubmed)
    domain_raw, heldout_raw = [t for _, t in pubmed[:N_DOMAIN]], [t for _, t in pubmed[N_DOMAIN:N_DOMAIN + N_HELDOUT]]

    # 1. tokenizer (wikitext-2 + PubMedQA) and base model pretrained on wikitext-2 "train" (= test.txt)
    tok = train_tokenizer(wiki_train + wiki_valid + [t for _, t in pubmed], MODEL["vocab_size"])
    limit = DOC_TOKENS - 1  # BOS is prepended
    pieces = []  # every paragraph cut into consecutive limit-token pieces: the model sees all of test.txt
    for enc in tok.backend_tokenizer.encode_batch(wiki_train, add_special_tokens=False):
        for i in range(0, len(enc.ids), limit):
            if len(enc.ids[i:i + limit]) >= 16:
                pieces.append(enc.ids[i:i + limit])
    # pretrain_base_model takes texts; decode the pieces (byte-level BPE decodes losslessly)
    piece_texts = tok.backend_tokenizer.decode_batch(pieces)
    cfg = WorldConfig(seed=0, doc_tokens=DOC_TOKENS, **MODEL)
    t1 = time.perf_counter()
    log(f"pretraining the base model on {len(piece_texts)} wikitext-2 pieces "
        f"({sum(map(len, pieces)):,} tokens, {MODEL['pretrain_epochs']} epochs)")
    plog = pretrain_base_model(cfg, piece_texts, d / "base_model", progress=False, tokenizer=tok)
    t_pre = time.perf_counter() - t1

    # 2. corpus: domain abstracts, known paragraphs (the first piece of long test.txt paragraphs), salad
    long_paras = [p for p in wiki_train if len(p.split()) >= 60]
    rng.shuffle(long_paras)
    known = long_paras[:N_KNOWN]
    # word salad: the domain abstracts' own words drawn at random by frequency (unigram), no syntax. Measured
    # on the 128-token version of this base model (mean NLL/token): these 7.7 vs domain abstracts 6.7, while
    # words drawn uniformly from the wikitext + PubMed word list score 6.2 (below the domain: not junk at the
    # top of the landscape) and uniformly random BPE tokens 10.6 (pure noise, trivially separable)
    pool = [w for t in domain_raw for w in t.split()]
    salad = [word_salad(pool, rng, 100) for _ in range(N_SALAD)]
    docs = ([("domain", t) for t in domain_raw] + [("known", t) for t in known] + [("salad", t) for t in salad])
    rng.shuffle(docs)
    texts = cut_to_tokens(tok, [t for _, t in docs], limit)
    write_jsonl(d / "corpus.jsonl", ({"doc_id": i, "text": t} for i, t in enumerate(texts)))
    write_jsonl(d / "kinds.jsonl", ({"doc_id": i, "kind": k} for i, (k, _) in enumerate(docs)))
    write_jsonl(d / "domain_heldout.jsonl",
                ({"doc_id": i, "text": t} for i, t in enumerate(cut_to_tokens(tok, heldout_raw, limit))))
    valid = cut_to_tokens(tok, [p for p in wiki_valid if len(p.split()) >= 30], limit)
    half = len(valid) // 2
    write_jsonl(d / "general.jsonl", ({"doc_id": i, "text": t} for i, t in enumerate(valid[:half])))
    write_jsonl(d / "general_heldout.jsonl", ({"doc_id": i, "text": t} for i, t in enumerate(valid[half:][:200])))

    # sanity: the base model's loss on each kind (known < domain < salad is what this check is about)
    from pplaw.synth.base_model import encode, load_base

    model, _ = load_base(d / "base_model")
    torch.set_num_threads(1)
    per_kind = {}
    for kind in ("known", "domain", "salad"):
        sub = [t for (k, _), t in zip(docs, texts) if k == kind][:200]
        per_kind[kind] = mean_nll(model, encode(tok, sub, DOC_TOKENS))
    per_kind["domain_heldout"] = mean_nll(model, encode(tok, cut_to_tokens(tok, heldout_raw, limit), DOC_TOKENS))
    per_kind["wikitext_valid"] = mean_nll(model, encode(tok, valid[half:][:200], DOC_TOKENS))

    counts = {k: sum(1 for kk, _ in docs if kk == k) for k in ("domain", "known", "salad")}
    out = {"version": INPUTS_VERSION, "n_docs": counts,
           "n_heldout": len(heldout_raw), "n_general": half, "n_pretrain_pieces": len(piece_texts),
           "pretrain": plog, "base_model_mean_nll": per_kind,
           "seconds": {"total": time.perf_counter() - t0, "pretrain": t_pre}}
    manifest.write_text(json.dumps(out, indent=2))
    log(f"inputs built in {out['seconds']['total']:.0f} s (pretraining {t_pre:.0f} s); base-model mean NLL per "
        f"kind: " + ", ".join(f"{k} {v:.3f}" for k, v in per_kind.items()))
    return out


def write_recipe(inputs: Path) -> Path:
    """The recipe with absolute paths into ``inputs`` (rewritten on every invocation, so a moved output folder
    still works)."""
    import yaml

    recipe = json.loads(json.dumps(RECIPE))
    recipe["model"]["base_model"] = str(inputs / RECIPE["model"]["base_model"])
    for key in ("domain_data", "general_data", "domain_eval_data", "general_eval_data", "diagnostics"):
        recipe["corpus"][key] = str(inputs / RECIPE["corpus"][key])
    path = inputs / "recipe.yaml"
    path.write_text("# bench_junk's bring-your-own recipe (written by benchmarks/bench_junk.py)\n"
                    + yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ one seed

def run_seed(seed: int, inputs: Path, out: Path, overrides: list[str]) -> tuple[dict | None, float]:
    d = out / f"seed{seed}"
    if (d / "summary.json").is_file() and (d / "bench_junk_done").is_file():
        log(f"seed {seed}: finished run read back from {d}")
        return json.loads((d / "summary.json").read_text()), float((d / "bench_junk_done").read_text() or "nan")
    cmd = [sys.executable, "-m", "pplaw.cli.main", "run", str(write_recipe(inputs)), "--out", str(d),
           f"plan.seeds=[{seed}]", f"select.seeds=[{seed}]", *overrides]
    log("$ " + " ".join(cmd))
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    took = time.perf_counter() - t0
    if rc != 0 or not (d / "summary.json").is_file():
        log(f"seed {seed}: pplaw run failed (exit {rc}) after {took:.0f} s; rerun to resume")
        return None, took
    (d / "bench_junk_done").write_text(f"{took:.1f}")
    return json.loads((d / "summary.json").read_text()), took


def kind_mix(run_dir: Path, inputs: Path, method: str, seed: int) -> dict[str, float] | None:
    """Share of domain / known / salad chunks in ``select/subsets/<method>_s<seed>.parquet``."""
    import numpy as np

    from pplaw.io import read_indices, read_scored

    p = run_dir / "select" / "subsets" / f"{method}_s{seed}.parquet"
    if not p.is_file():
        return None
    rows, _ = read_indices(p, "row")
    table, _, _ = read_scored(run_dir / "score" / "chunks", ["doc_id"], progress=False)
    kinds = {r["doc_id"]: r["kind"] for r in map(json.loads, (inputs / "kinds.jsonl").read_text().splitlines())}
    sel = np.asarray(table.column("doc_id").to_pylist(), dtype=object)[np.asarray(rows)]
    labels = [kinds[int(x)] for x in sel]
    return {k: labels.count(k) / len(labels) for k in ("domain", "known", "salad")}


def row(seed: int, s: dict, run_dir: Path, inputs: Path, took: float) -> dict:
    comp = s.get("comparison") or {}
    h = s.get("holdout") or {}
    tab = {r["law"]: r for r in h.get("table") or []}
    sel = s.get("selection") or {}
    pred = (s.get("prediction") or {}).get("dos") or {}

    def loss(m):
        return ((comp.get(m) or {}).get("domain_loss") or {}).get("mean")

    def mix(m):
        c = kind_mix(run_dir, inputs, m, seed)
        return "-" if c is None else "/".join(f"{100 * c[k]:.0f}" for k in ("domain", "known", "salad"))

    dos, rnd = loss("dos"), loss("random")
    band = sel.get("band")
    return {
        "seed": seed, "dos": dos, "random": rnd, "lowest_ppl": loss("lowest_ppl"), "best_sweep": loss("best_sweep"),
        "dos_minus_random": (dos - rnd) if dos is not None and rnd is not None else None,
        "selected": f"{sel.get('selected')} {[round(x, 3) for x in band] if band else ''}".strip(),
        "dos_mix_d/k/s%": mix("dos"), "random_mix_d/k/s%": mix("random"), "best_sweep_mix_d/k/s%": mix("best_sweep"),
        "law": h.get("chosen"), "law_holdout_mape%": (tab.get(h.get("chosen")) or {}).get("holdout_mape"),
        "paper_holdout_mape%": (tab.get("perplexity") or {}).get("holdout_mape"),
        "dos_forecast_err%": 100 * pred["rel_error"] if pred.get("rel_error") is not None else None,
        "minutes": took / 60,
    }


def kind_ppl(run_dir: Path, inputs: Path) -> str:
    """Each kind's chunk count and median / 5%-95% log-PPL under the base model (the landscape's shape)."""
    import numpy as np

    from pplaw.io import read_scored

    table, _, _ = read_scored(run_dir / "score" / "chunks", ["doc_id", "ppl"], progress=False)
    kinds = {r["doc_id"]: r["kind"] for r in map(json.loads, (inputs / "kinds.jsonl").read_text().splitlines())}
    lab = np.array([kinds[int(x)] for x in table.column("doc_id").to_pylist()])
    x = np.log(table.column("ppl").to_numpy())
    parts = []
    for k in ("known", "domain", "salad"):
        q = np.quantile(x[lab == k], [0.05, 0.5, 0.95])
        parts.append(f"{k} ({int((lab == k).sum())} chunks) log-PPL median {q[1]:.2f} [5-95%: {q[0]:.2f}, {q[2]:.2f}]")
    return "; ".join(parts)


def stage_times(run_dir: Path) -> str:
    """Seconds per stage from the run's stage manifests (what ran in its first invocation)."""
    parts = []
    for st in ("score", "landscape", "plan", "sweep", "fit", "select", "final", "report"):
        m = run_dir / st / "stage.json"
        if m.is_file():
            try:
                sec = json.loads(m.read_text()).get("seconds")
                parts.append(f"{st} {sec:.0f}s" if isinstance(sec, (int, float)) else st)
            except ValueError:
                pass
    return ", ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="pplaw_runs/bench_junk")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                    help="folder with pubmedqa/ori_pqal.json and wikitext-2/{test,valid}.txt")
    ap.add_argument("--inputs", default=None, help="folder of the built inputs (default <out>/inputs; built "
                                                   "there when absent), e.g. to share them between variants")
    ap.add_argument("overrides", nargs="*", help="extra recipe overrides (key=value), passed to every pplaw run")
    # recipe overrides (key=value) may stand anywhere, also after --seeds' list
    argv = sys.argv[1:]
    overrides = [x for x in argv if "=" in x and not x.startswith("-")]
    a = ap.parse_args([x for x in argv if x not in overrides])
    a.overrides = [*a.overrides, *overrides]
    data = Path(a.data)
    need = [data / "pubmedqa" / "ori_pqal.json", data / "wikitext-2" / "test.txt", data / "wikitext-2" / "valid.txt"]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        print(f"bench_junk: data not found: {', '.join(missing)}\n(needs PubMedQA's ori_pqal.json and raw wikitext-2 "
              f"test/valid under {data}; pass --data DIR)", file=sys.stderr)
        return 2
    out = Path(a.out).resolve()
    inputs = Path(a.inputs).resolve() if a.inputs else out / "inputs"
    t0 = time.perf_counter()
    info = build_inputs(data, inputs)
    log(f"inputs: {info['n_docs']} (+{info['n_heldout']} held-out abstracts); base model mean NLL "
        + ", ".join(f"{k} {v:.3f}" for k, v in info["base_model_mean_nll"].items()))
    import pandas as pd

    rows = []
    for seed in a.seeds:
        s, took = run_seed(seed, inputs, out, a.overrides)
        if s is None:
            continue
        rows.append(row(seed, s, out / f"seed{seed}", inputs, took))
        if len(rows) == 1:
            log("landscape by kind: " + kind_ppl(out / f"seed{seed}", inputs))
        log(f"seed {seed} stages: {stage_times(out / f'seed{seed}')}")
        df = pd.DataFrame(rows)
        df.to_csv(out / "table.csv", index=False)
        md = df.to_markdown(index=False, floatfmt=".4g")
        worse = [f"{r['seed']} (+{r['dos_minus_random']:.4f} nats)" for r in rows
                 if r["dos_minus_random"] is not None and r["dos_minus_random"] > 0]
        verdict = (f"DOS WORSE than random in seed(s) {', '.join(worse)}" if worse
                   else f"DOS not worse than random in any of {len(rows)} seed(s)")
        (out / "table.md").write_text(
            f"bench_junk ({' '.join(a.overrides) or 'no overrides'}). Held-out domain loss (nats/token, lower is "
            "better). Kind mix: domain/known/salad % of the subset's chunks.\n\n" + md + f"\n\n{verdict}.\n")
        print(md, "\n" + verdict, flush=True)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min; table in {out / 'table.md'}")
    return 0 if len(rows) == len(a.seeds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
