"""The report's figures: the landscape by hidden kind, the sweep, the final comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pplaw._atomic import save_figure
from pplaw.pipeline.analysis import METHOD_ORDER, METRICS


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> str:
    """Write ``fig`` as PNG atomically, close it, return the file's name (for an ``img`` block)."""
    save_figure(fig, path, dpi=110, bbox_inches=None)
    pyplot().close(fig)
    return path.name


def plot_kinds(ppl: np.ndarray, kinds: np.ndarray, edges: list[float], path: Path) -> str:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    bins = np.linspace(np.log10(ppl.min()), np.log10(ppl.max()), 70)
    for k in sorted(set(kinds)):
        a.hist(np.log10(ppl[kinds == k]), bins=bins, alpha=0.55, label=f"{k} ({np.sum(kinds == k)})")
    a.set(xlabel="log10 chunk PPL under the base model", ylabel="chunks",
          title="Landscape by hidden kind (diagnostics only)")
    a.legend(fontsize=8)
    # kind shares per landscape bin
    nb = len(edges) - 1
    bi = np.clip(np.searchsorted(edges, ppl, side="right") - 1, 0, nb - 1)
    bottom = np.zeros(nb)
    for k in sorted(set(kinds)):
        share = np.array([np.mean(kinds[bi == j] == k) if np.any(bi == j) else 0 for j in range(nb)])
        b.bar(np.arange(nb), share, bottom=bottom, label=k, width=0.9)
        bottom += share
    b.set(xlabel="landscape bin (low PPL -> high PPL)", ylabel="share of chunks", title="Kinds per landscape bin")
    b.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_sweep(rows: list[dict], space: str, target: str, path: Path) -> str:
    plt = pyplot()
    ok = [r for r in rows if r["status"] == "ok" and r.get(target) is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for k in sorted({r["size_no"] for r in ok}):
        sub = [r for r in ok if r["size_no"] == k]
        for shape, marker in (("window", "o"), ("mixture", "s"), ("band", "^")):
            pts = [r for r in sub if r["shape"] == shape]
            if pts:
                a.scatter([r[f"mu_{space}"] for r in pts], [r[target] for r in pts], marker=marker, color=f"C{k}",
                          edgecolor="k", label=f"D={sub[0]['D']:,} ({shape})")
        sc = b.scatter([r[f"mu_{space}"] for r in sub], [r[f"sigma_{space}"] for r in sub], c=[r[target] for r in sub],
                       cmap="viridis_r", s=30 + 40 * k, edgecolor="k")
    if ok:
        fig.colorbar(sc, ax=b, label=target)
    if space == "ppl":
        for ax in (a, b):
            ax.set_xscale("log")
        b.set_yscale("log")
    label = "log-PPL" if space == "log_ppl" else "PPL"
    a.set(xlabel=f"subset mean {label} (mu)", ylabel=target, title=f"Sweep: {target} vs the subset's mean")
    a.legend(fontsize=7)
    b.set(xlabel=f"mu ({label})", ylabel=f"sigma ({label})", title=f"Sweep runs coloured by {target} (size ~ D)")
    fig.tight_layout()
    return save(fig, path)


def plot_comparison(finals: list[dict], path: Path) -> str:
    plt = pyplot()
    ok = [r for r in finals if r["status"] == "ok"]
    methods = [m for m in METHOD_ORDER if any(r["method"] == m for r in ok)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, label, sign) in zip(axes, METRICS[:3]):
        vals = [[r[key] for r in ok if r["method"] == m and r.get(key) is not None] for m in methods]
        means = [np.mean(v) if v else np.nan for v in vals]
        sds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
        ax.bar(methods, means, yerr=sds, capsize=4, color=["#2ca02c" if m == "dos" else "#7f7f7f" for m in methods])
        for i, v in enumerate(vals):
            ax.scatter([i] * len(v), v, color="k", s=10, zorder=3)
        finite = [x for v in vals for x in v]
        if finite:
            lo, hi = min(finite), max(finite)
            # all methods equal (e.g. every general benchmark at 1.0): a visible band around the value, without
            # matplotlib's "1e-6+1" offset notation
            pad = (hi - lo) * 0.3 if hi > lo else max(0.05 * abs(hi), 0.01)
            ax.set_ylim(lo - pad, hi + pad)
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(f"{label} ({'lower' if sign < 0 else 'higher'} is better)")
        ax.tick_params(axis="x", rotation=25)
    fig.suptitle("DOS vs baselines at the same budget (bars: mean ± sd over seeds; dots: seeds)")
    fig.tight_layout()
    return save(fig, path)
