"""``report.md`` and ``report.html`` of a ``pplaw run``: plots, tables and plain verdicts.

The report states what was measured, with its spread over seeds, and says so plainly when a comparison
comes out the wrong way (DOS worse than a baseline) or is not consistent across seeds. Numbers come only
from the run's own files. The per-kind view of the landscape uses the recipe's diagnostics file (the
synthetic world's hidden kinds), which the method itself never reads.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pplaw.pipeline.recipe import RunRecipe

METHOD_ORDER = ("dos", "best_sweep", "random", "lowest_ppl", "highest_ppl", "full")
METRICS = (("domain_loss", "domain loss", -1), ("domain_bench", "domain benchmark", +1),
           ("general_bench", "general benchmark", +1), ("general_loss", "general loss", -1))
BAND_KINDS = ("learnable", "hard")


@dataclass
class ReportContext:
    out: Path
    recipe: RunRecipe
    inputs: dict[str, Any]
    table: Any  # pyarrow Table of scored chunks (ppl, n_scored, chunk_id, doc_id)
    landscape: dict[str, Any]
    plan: dict[str, Any]
    sweep: list[dict[str, Any]]
    fit: dict[str, Any]
    budget: int
    region: Any
    finals: list[dict[str, Any]]
    timings: list[dict[str, Any]]
    total_seconds: float
    blocks: list[tuple] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# numbers


def _fmt(x: Any, nd: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return f"{x:,}"
    return f"{x:.{nd}g}" if abs(x) >= 1e4 or abs(x) < 1e-3 else f"{x:.{nd}f}".rstrip("0").rstrip(".")


def _ms(vals: list[float], nd: int = 4) -> str:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    return f"{np.mean(vals):.{nd}f} ± {sd:.{nd}f}" if len(vals) > 1 else f"{vals[0]:.{nd}f}"


def kinds_of(ctx: ReportContext) -> np.ndarray | None:
    """Each chunk's kind from the diagnostics file (None without one). For the report only."""
    path, col = ctx.inputs.get("diagnostics"), ctx.inputs.get("kind_column") or "kind"
    if not path or "doc_id" not in ctx.table.column_names or not Path(path).is_file():
        return None
    diag = pd.read_json(path, lines=True) if str(path).endswith((".jsonl", ".json")) else pd.read_parquet(path)
    id_col = ctx.inputs.get("id_column") or "doc_id"
    if id_col not in diag.columns or col not in diag.columns:
        return None
    mapping = dict(zip(diag[id_col].tolist(), diag[col].astype(str).tolist()))
    return np.array([mapping.get(d, "?") for d in ctx.table.column("doc_id").to_pylist()])


def composition(kinds: np.ndarray, idx: np.ndarray | None) -> dict[str, float]:
    sub = kinds if idx is None else kinds[idx]
    names = sorted(set(kinds))
    return {k: float(np.mean(sub == k)) for k in names}


def compare(finals: list[dict], base: str) -> dict[str, dict[str, Any]]:
    """DOS minus ``base`` per metric, paired by seed: mean and sd of the differences, seeds DOS wins."""
    by = {(r["method"], r["seed"]): r for r in finals if r["status"] == "ok"}
    out = {}
    for key, _, sign in METRICS:
        diffs = [by[("dos", s)][key] - by[(base, s)][key] for (m, s) in by if m == "dos" and (base, s) in by
                 and by[("dos", s)].get(key) is not None and by[(base, s)].get(key) is not None]
        if not diffs:
            continue
        wins = sum((d * sign) > 0 for d in diffs)
        losses = sum((d * sign) < 0 for d in diffs)
        mean = float(np.mean(diffs))
        sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
        if wins == len(diffs):
            verdict = "DOS better in every seed"
        elif losses == len(diffs):
            verdict = "DOS WORSE in every seed"
        elif wins == losses == 0:
            verdict = "no difference (equal in every seed)"
        else:
            verdict = f"not consistent: DOS better in {wins}, worse in {losses} of {len(diffs)} seeds"
        out[key] = {"mean": mean, "sd": sd, "wins": wins, "n": len(diffs), "verdict": verdict}
    return out


# ----------------------------------------------------------------------------------------------------------
# plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    from pplaw.landscape import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    _plt().close(fig)
    return path.name


def plot_kinds(ppl: np.ndarray, kinds: np.ndarray, edges: list[float], path: Path) -> str:
    plt = _plt()
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
    return _save(fig, path)


def plot_sweep(rows: list[dict], space: str, target: str, path: Path) -> str:
    plt = _plt()
    ok = [r for r in rows if r["status"] == "ok" and r.get(target) is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for k in sorted({r["size_no"] for r in ok}):
        sub = [r for r in ok if r["size_no"] == k]
        for shape, marker in (("window", "o"), ("mixture", "s")):
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
    return _save(fig, path)


def plot_comparison(finals: list[dict], path: Path) -> str:
    plt = _plt()
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
            pad = (hi - lo) * 0.3 + 1e-6
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{label} ({'lower' if sign < 0 else 'higher'} is better)")
        ax.tick_params(axis="x", rotation=25)
    fig.suptitle("DOS vs baselines at the same budget (bars: mean ± sd over seeds; dots: seeds)")
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------
# rendering: one list of blocks -> Markdown and HTML


def _inline_html(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def render_md(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "pre":
            out.append("```\n" + b[1].rstrip() + "\n```")
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
        elif kind == "table":
            head, rows = b[1], b[2]
            out.append("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                                 + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]))
    return "\n\n".join(out) + "\n"


def render_html(blocks: list[tuple], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;max-width:1150px;margin:2em auto;line-height:1.4}"
           "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 7px}"
           "th{background:#f3f3f3}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:0.85em}"
           "img{max-width:100%}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline_html(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
        elif kind == "img":
            out.append(f"<figure><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'>"
                       f"<figcaption>{_inline_html(b[2])}</figcaption></figure>")
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in b[1]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>"
                                 for r in b[2]) + "</table>")
    out.append("</body></html>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------


def write_report(ctx: ReportContext) -> dict[str, Any]:
    """Make the plots, write ``report.md`` / ``report.html`` into the run directory; return the summary."""
    from pplaw.landscape import atomic_write
    from pplaw.pipeline import report_sections as _sections

    ctx.blocks = []
    (ctx.out / "report").mkdir(parents=True, exist_ok=True)
    summary = _sections.build(ctx)
    md = render_md(ctx.blocks)
    atomic_write(ctx.out / "report.md", lambda tmp: tmp.write_text(md, encoding="utf-8"))
    if ctx.recipe.report.html:
        page = render_html(ctx.blocks, ctx.recipe.report.title)
        atomic_write(ctx.out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    summary["report"] = str(ctx.out / "report.md")
    return summary


def rewrite_timings(ctx: ReportContext) -> None:
    """Re-render the report with the final ``ctx.timings`` (the report's own time is known only after it)."""
    from pplaw.landscape import atomic_write
    from pplaw.pipeline import report_sections as _sections

    start = next(i for i, b in enumerate(ctx.blocks) if b[0] == "h2" and b[1].endswith("Time per stage"))
    del ctx.blocks[start:]
    _sections._timings(ctx)
    md = render_md(ctx.blocks)
    atomic_write(ctx.out / "report.md", lambda tmp: tmp.write_text(md, encoding="utf-8"))
    if ctx.recipe.report.html:
        page = render_html(ctx.blocks, ctx.recipe.report.title)
        atomic_write(ctx.out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
