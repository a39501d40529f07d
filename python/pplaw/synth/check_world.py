"""Measure whether the synthetic world has the properties the perplexity-aware method needs.

    python -m pplaw.synth.check_world --out pplaw_world_check [--seeds 3] [any WorldConfig option]

Writes ``results.json``, ``report.md`` and PNG plots to ``--out`` (the world itself to ``--world_dir``):

1. **Landscape**: base-model PPL of every domain chunk (one document = one chunk), per kind (mean and
   quantiles), and the overlap between neighbouring kinds.
2. **Proxy CPT** with a plain torch loop (independent of pplaw's trainer), at one token budget, over
   ``--seeds`` seeds: chunks from the middle PPL band (a window of the PPL ranking centred on the median,
   chosen without looking at kinds), random chunks, the lowest-PPL and the highest-PPL chunks. Reported:
   held-out domain loss, domain multiple-choice accuracy (lm-eval-style ``acc``), general loss/accuracy.
3. **Surface**: windows of the PPL ranking at several centres and budgets, and two-window mixtures (same
   mean, larger spread), one seed each: how domain loss depends on the subset's PPL mean/std and on D.

No output is recorded in the repository; the quickstart's own report (``pplaw run``) shows the landscape per
kind and DOS against the baselines for the default world.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pplaw.synth import build_world
from pplaw.synth.world import WorldConfig

KINDS = ("redundant", "learnable", "hard", "noise")


@dataclass
class CheckConfig:
    """Options of the world check (the world's own options are those of WorldConfig)."""

    world_dir: str = field(default="pplaw_world", metadata={"help": "Where the world is (or gets) built."})
    out: str = field(default="pplaw_world_check", metadata={"help": "Directory for results.json, report.md, PNGs."})
    seeds: int = field(default=3, metadata={"help": "Seeds of the proxy comparison."})
    budget_frac: float = field(default=0.3, metadata={"help": "Proxy token budget D as a share of the domain corpus."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the selected subset in each proxy CPT run."})
    cpt_batch_size: int = field(default=16, metadata={"help": "Chunks per CPT step."})
    cpt_lr: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate of proxy CPT (cosine)."})
    replay: float = field(default=0.2, metadata={"help": "General replay share R of the tokens of each CPT run "
                                                           "(the domain subset keeps its D tokens)."})
    surface_sizes: str = field(default="0.1,0.2,0.3",
                               metadata={"help": "Budgets D of the surface (corpus shares, at most pool_frac)."})
    surface_centres: int = field(default=6, metadata={"help": "Window pools (centres) of the surface."})
    pool_frac: float = field(default=0.3, metadata={"help": "Width of a surface pool (share of the corpus tokens)."})
    skip_surface: bool = field(default=False, metadata={"help": "Only the landscape and the proxy comparison."})
    skip_proxy: bool = field(default=False, metadata={"help": "Leave out the proxy comparison."})
    check_threads: int = field(default=2, metadata={"help": "torch.set_num_threads for the check."})


# --- selection (kind-blind: only PPL and token counts) -------------------------------------------------

def window(order: np.ndarray, n_tok: np.ndarray, centre: float, budget: int) -> np.ndarray:
    """Chunks of a contiguous window of the PPL ranking ``order`` holding ``budget`` tokens, centred
    (in token-quantile terms) on ``centre`` in [0, 1], shifted inwards at the ends."""
    cum = np.cumsum(n_tok[order])                                    # tokens up to each ranked chunk
    total = cum[-1]
    lo_tok = min(max(centre * total - budget / 2, 0), total - budget)
    start = int(np.searchsorted(cum, lo_tok, side="right"))
    stop = int(np.searchsorted(cum, lo_tok + budget, side="left")) + 1
    return order[start:stop]


def select(method: str, ppl: np.ndarray, n_tok: np.ndarray, budget: int, seed: int) -> np.ndarray:
    order = np.argsort(ppl, kind="stable")
    if method == "mid_band":
        return window(order, n_tok, 0.5, budget)
    if method == "lowest_ppl":
        return window(order, n_tok, 0.0, budget)
    if method == "highest_ppl":
        return window(order, n_tok, 1.0, budget)
    if method == "random":
        perm = np.random.default_rng(seed).permutation(len(ppl))
        return perm[: int(np.searchsorted(np.cumsum(n_tok[perm]), budget, side="left")) + 1]
    raise ValueError(f"unknown selection method {method!r}")


def subset_stats(idx: np.ndarray, ppl: np.ndarray, n_tok: np.ndarray, kinds: np.ndarray) -> dict:
    p = ppl[idx]
    return {"n_chunks": int(len(idx)), "tokens": int(n_tok[idx].sum()), "mu": float(p.mean()),
            "sigma": float(p.std()), "mu_log": float(np.log(p).mean()), "sigma_log": float(np.log(p).std()),
            "kinds": {k: float((kinds[idx] == k).mean()) for k in KINDS}}


# --- one proxy CPT run -----------------------------------------------------------------------------------

class Evaluator:
    """Held-out losses and MC accuracies of a model, on tensors prepared once."""

    def __init__(self, world, tok):
        from pplaw.synth.base_model import encode
        from pplaw.synth.io import read_jsonl

        L = world.config.doc_tokens
        val = read_jsonl(world.domain_val)
        vkinds = np.array([r["kind"] for r in read_jsonl(world.root / "diagnostics" / "domain_val_kinds.jsonl")])
        self.domain_val = encode(tok, [r["text"] for r in val], L)
        self.vkinds = vkinds
        self.general_val = encode(tok, [r["text"] for r in read_jsonl(world.general_val)], L)
        self.domain_mcq = read_jsonl(world.domain_mcq)
        self.general_mcq = read_jsonl(world.general_mcq)
        self.tok = tok

    def __call__(self, model) -> dict:
        from pplaw.synth.base_model import chunk_nll, mc_scores

        s, n = chunk_nll(model, self.domain_val)
        out = {"domain_loss": float(s.sum() / n.sum())}
        for k in ("learnable", "hard"):
            m = self.vkinds == k
            out[f"domain_loss_{k}"] = float(s[m].sum() / n[m].sum())
        s, n = chunk_nll(model, self.general_val)
        out["general_loss"] = float(s.sum() / n.sum())
        for name, qs in (("domain", self.domain_mcq), ("general", self.general_mcq)):
            correct = (mc_scores(model, self.tok, qs).argmax(1).numpy()
                       == np.array(["ABCD".index(q["answer"]) for q in qs]))
            out[f"{name}_acc"] = float(correct.mean())
            if name == "domain":
                qk = np.array([q["kind"] for q in qs])
                for k in ("learnable", "hard"):
                    out[f"domain_acc_{k}"] = float(correct[qk == k].mean())
        return out


def proxy_run(base, data, idx: np.ndarray, cfg: CheckConfig, seed: int, evaluate: Evaluator,
              general=None) -> dict:
    """CPT a copy of ``base`` on ``data[idx]`` (plus general replay rows when ``cfg.replay`` > 0) and evaluate."""
    import torch

    from pplaw.synth.base_model import train_causal_lm

    model = copy.deepcopy(base)
    rows = data[idx]                                                     # [n, doc_tokens]
    if cfg.replay > 0:
        n_replay = round(len(idx) * cfg.replay / (1 - cfg.replay))
        pick = torch.randperm(len(general), generator=torch.Generator().manual_seed(seed))[:n_replay]
        rows = torch.cat([rows, general[pick]])
    steps = max(1, math.ceil(cfg.epochs * len(rows) / cfg.cpt_batch_size))
    t0, c0 = time.perf_counter(), time.process_time()
    train_causal_lm(model, rows, steps=steps, batch_size=cfg.cpt_batch_size, lr=cfg.cpt_lr, seed=seed)
    t1, c1 = time.perf_counter(), time.process_time()
    out = evaluate(model)
    out.update(steps=steps, train_seconds=t1 - t0, train_cpu_seconds=c1 - c0, eval_seconds=time.perf_counter() - t1,
               eval_cpu_seconds=time.process_time() - c1)
    return out


# --- report ----------------------------------------------------------------------------------------------

def _plots(out: Path, ppl: np.ndarray, kinds: np.ndarray, proxy: list[dict], surface: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(np.log10(ppl.min()), np.log10(ppl.max()), 80)
    for k in KINDS:
        ax.hist(np.log10(ppl[kinds == k]), bins=bins, alpha=0.6, label=k)
    ax.set(xlabel="log10 PPL under the base model", ylabel="chunks", title="Domain corpus landscape by (hidden) kind")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "landscape.png", dpi=120)
    plt.close(fig)

    if proxy:
        methods = list(dict.fromkeys(r["method"] for r in proxy))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, key, label in ((axes[0], "domain_loss", "held-out domain loss (nats/token)"),
                               (axes[1], "domain_acc", "domain MC accuracy")):
            vals = [[r[key] for r in proxy if r["method"] == m] for m in methods]
            ax.bar(methods, [np.mean(v) for v in vals], yerr=[np.std(v) for v in vals], capsize=4,
                   color=["tab:green", "tab:blue", "tab:orange", "tab:red"][: len(methods)])
            for i, v in enumerate(vals):
                ax.scatter([i] * len(v), v, color="k", s=8, zorder=3)
            ax.set(ylabel=label)
            ax.tick_params(axis="x", rotation=20)
        fig.suptitle("Proxy CPT at the same token budget (bars: mean +- std over seeds)")
        fig.tight_layout()
        fig.savefig(out / "proxy.png", dpi=120)
        plt.close(fig)

    if surface:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for f in sorted({r["size"] for r in surface}):
            rows = sorted((r for r in surface if r["size"] == f and r["shape"] == "window"), key=lambda r: r["mu_log"])
            axes[0].plot([r["mu_log"] for r in rows], [r["domain_loss"] for r in rows], "o-",
                         label=f"D ~ {rows[0]['D'] // 1000}k tokens")
        axes[0].set(xlabel="mean log PPL of the subset", ylabel="held-out domain loss",
                    title="window pools of the PPL ranking")
        axes[0].legend()
        sc = axes[1].scatter([r["mu_log"] for r in surface], [r["sigma_log"] for r in surface],
                             c=[r["domain_loss"] for r in surface], s=[20 + r["D"] / 1000 for r in surface],
                             cmap="viridis_r")
        fig.colorbar(sc, ax=axes[1], label="domain loss")
        axes[1].set(xlabel="mean log PPL", ylabel="std log PPL", title="all surface runs (size ~ D)")
        fig.tight_layout()
        fig.savefig(out / "surface.png", dpi=120)
        plt.close(fig)


def _report(res: dict) -> str:
    lines = ["# pplaw.synth world check", "", f"World `{res['world_hash']}`; timings: {json.dumps(res['timings'])}", "",
             "## Landscape (base-model PPL per chunk, by hidden kind)", "",
             "| kind | chunks | mean | q05 | q25 | q50 | q75 | q95 |", "|---|---|---|---|---|---|---|---|"]
    for k, s in res["landscape"].items():
        lines.append(f"| {k} | {s['n']} | {s['mean']:.1f} | {s['q05']:.1f} | {s['q25']:.1f} | {s['q50']:.1f} | "
                     f"{s['q75']:.1f} | {s['q95']:.1f} |")
    lines += ["", "Overlap of neighbouring kinds (share of the lower kind above the upper kind's 5% quantile): "
              + ", ".join(f"{k}: {v:.3f}" for k, v in res["overlap"].items()), "",
              f"Base model: {json.dumps(res['base_eval'])}", "",
              f"## Proxy CPT, D = {res['budget_tokens']} tokens, {res['check']['epochs']} epochs, "
              f"lr {res['check']['cpt_lr']}, batch {res['check']['cpt_batch_size']}", "",
              "| method | mu | sigma | kinds r/l/h/n | domain loss | domain acc | acc learnable | acc hard | "
              "general loss | general acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in res["proxy_summary"].items():
        kinds = "/".join(f"{s['kinds'][k]:.2f}" for k in KINDS)
        lines.append(f"| {m} | {s['mu']:.1f} | {s['sigma']:.1f} | {kinds} | {s['domain_loss']:.3f} +- "
                     f"{s['domain_loss_std']:.3f} | {s['domain_acc']:.3f} +- {s['domain_acc_std']:.3f} | "
                     f"{s['domain_acc_learnable']:.3f} | {s['domain_acc_hard']:.3f} | {s['general_loss']:.3f} | "
                     f"{s['general_acc']:.3f} |")
    if res.get("surface"):
        lines += ["", "## Surface (one seed): domain loss vs subset PPL statistics and D", "",
                  "| shape | centre(s) | D | mu | sigma | mu_log | sigma_log | domain loss | domain acc |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(res["surface"], key=lambda r: (r["shape"], r["centre"], r["D"])):
            lines.append(f"| {r['shape']} | {r['centre']} | {r['D']} | {r['mu']:.1f} | {r['sigma']:.1f} | "
                         f"{r['mu_log']:.2f} | {r['sigma_log']:.2f} | {r['domain_loss']:.3f} | {r['domain_acc']:.3f} |")
    return "\n".join(lines) + "\n"


def check_world(world_config: WorldConfig, cfg: CheckConfig, progress: bool = True) -> dict:
    import torch
    from tqdm.auto import tqdm

    from pplaw.synth.base_model import chunk_nll, encode, load_base
    from pplaw._atomic import atomic_write_text
    from pplaw.synth.io import read_jsonl

    torch.set_num_threads(cfg.check_threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    world = build_world(world_config, cfg.world_dir, progress=progress)
    timings["build_world_s"] = time.perf_counter() - t
    base, tok = load_base(world.base_model_dir)
    docs = read_jsonl(world.domain_corpus)
    kinds = np.array([r["kind"] for r in read_jsonl(world.domain_kinds)])
    t = time.perf_counter()
    data = encode(tok, [d["text"] for d in docs], world_config.doc_tokens)           # [n_chunks, doc_tokens]
    s, n = chunk_nll(base, data)
    timings["score_corpus_s"] = time.perf_counter() - t
    ppl, n_tok = np.exp((s / n).numpy()), (n + 1).numpy()                             # n_tok counts BOS too
    landscape = {}
    for k in KINDS:
        p = ppl[kinds == k]
        landscape[k] = {"n": int(len(p)), "mean": float(p.mean()),
                        **{f"q{int(q * 100):02d}": float(np.quantile(p, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}}
    overlap = {f"{a}|{b}": float((ppl[kinds == a] > np.quantile(ppl[kinds == b], 0.05)).mean())
               for a, b in zip(KINDS, KINDS[1:])}
    evaluate = Evaluator(world, tok)
    general = encode(tok, [r["text"] for r in read_jsonl(world.general_corpus)], world_config.doc_tokens)
    t = time.perf_counter()
    base_eval = evaluate(base)
    timings["eval_s"] = time.perf_counter() - t

    budget = int(cfg.budget_frac * n_tok.sum())
    proxy = []
    jobs = [] if cfg.skip_proxy else [(m, seed) for seed in range(cfg.seeds)
                                      for m in ("mid_band", "random", "lowest_ppl", "highest_ppl")]
    for m, seed in tqdm(jobs, desc="proxy CPT", disable=not progress):
        idx = select(m, ppl, n_tok, budget, seed)
        proxy.append({"method": m, "seed": seed, **subset_stats(idx, ppl, n_tok, kinds),
                      **proxy_run(base, data, idx, cfg, seed, evaluate, general)})
    summary = {}
    for m in dict.fromkeys(r["method"] for r in proxy):
        rows = [r for r in proxy if r["method"] == m]
        summary[m] = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]
                      if isinstance(rows[0][key], float)}
        summary[m].update({f"{key}_std": float(np.std([r[key] for r in rows])) for key in ("domain_loss", "domain_acc")})
        summary[m]["kinds"] = rows[0]["kinds"]

    surface = []
    if not cfg.skip_surface:
        # As the loop's fitting grid does: first a regime (a pool of chunks = a window of the PPL ranking,
        # or two half-windows), then random subsets of it at several D, so (mu, sigma) stay put while D varies.
        sizes = [float(x) for x in cfg.surface_sizes.split(",")]
        w = cfg.pool_frac
        pools = [("window", (round(float(c), 3),)) for c in np.linspace(w / 2, 1 - w / 2, cfg.surface_centres)]
        pools += [("mixture", (0.15, 0.85)), ("mixture", (0.3, 0.7)), ("mixture", (0.1, 0.6))]
        order = np.argsort(ppl, kind="stable")
        pool_tokens = int(w * n_tok.sum())
        jobs = [(shape, centres, f) for shape, centres in pools for f in sizes]
        for shape, centres, f in tqdm(jobs, desc="surface", disable=not progress):
            pool = np.unique(np.concatenate([window(order, n_tok, c, pool_tokens // len(centres)) for c in centres]))
            perm = np.random.default_rng(0).permutation(pool)             # nested subsets: D grows, pool fixed
            idx = perm[: int(np.searchsorted(np.cumsum(n_tok[perm]), min(f, w) * n_tok.sum(), side="left")) + 1]
            surface.append({"shape": shape, "centre": list(centres), "size": f, "D": int(n_tok[idx].sum()),
                            **subset_stats(idx, ppl, n_tok, kinds),
                            **proxy_run(base, data, idx, cfg, 0, evaluate, general)})
    res = {"world_hash": world_config.world_hash(), "world_dir": str(world.root), "timings": timings,
           "check": cfg.__dict__, "world": world_config.to_dict(), "landscape": landscape, "overlap": overlap,
           "base_eval": base_eval, "budget_tokens": budget, "proxy": proxy, "proxy_summary": summary,
           "surface": surface}
    atomic_write_text(out / "results.json", json.dumps(res, indent=1))
    atomic_write_text(out / "report.md", _report(res))
    _plots(out, ppl, kinds, proxy, surface)
    return res


def main(argv: list[str] | None = None) -> int:
    from pplaw.config import parse_config

    world_config, cfg = parse_config([WorldConfig, CheckConfig], argv if argv is not None else sys.argv[1:],
                                     prog="python -m pplaw.synth.check_world")
    res = check_world(world_config, cfg)
    print(_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
