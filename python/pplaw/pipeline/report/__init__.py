"""``report.md`` and ``report.html`` of a ``pplaw run``: plots, tables and plain verdicts.

The report states what was measured, with its spread over seeds, and says so plainly when a comparison
comes out the wrong way (DOS worse than a baseline) or is not consistent across seeds. Numbers come only
from the run's own files, computed by :func:`pplaw.pipeline.analysis.analyse` (also ``summary.json``); the
report renders them and computes none itself.

Modules: :mod:`~pplaw.pipeline.report.context` (the run's artefacts, number formatting),
:mod:`~pplaw.pipeline.report.plots` (figures), :mod:`~pplaw.pipeline.report.sections` (the sections in
reading order) and :mod:`~pplaw.pipeline.report.render` (blocks -> Markdown / HTML).
"""

from __future__ import annotations

from typing import Any

from pplaw._atomic import atomic_write_text
from pplaw.pipeline.analysis import analyse
from pplaw.pipeline.report import sections
from pplaw.pipeline.report.context import ReportContext
from pplaw.pipeline.report.render import render_html, render_md

__all__ = ["ReportContext", "write_report", "rewrite_timings"]


def write_report(ctx: ReportContext) -> dict[str, Any]:
    """Make the plots, write ``report.md`` / ``report.html`` into the run directory; return the summary."""
    ctx.blocks = []
    (ctx.out / "report").mkdir(parents=True, exist_ok=True)
    analysis = analyse(ctx)
    sections.render(ctx, analysis)
    summary = analysis.summary
    md = render_md(ctx.blocks)
    atomic_write_text(ctx.out / "report.md", md)
    if ctx.recipe.report.html:
        page = render_html(ctx.blocks, ctx.recipe.report.title)
        atomic_write_text(ctx.out / "report.html", page)
    summary["report"] = str(ctx.out / "report.md")
    summary["notes"] = list(ctx.notes)
    return summary


def rewrite_timings(ctx: ReportContext) -> None:
    """Re-render the report with the final ``ctx.timings`` (the report's own time is known only after it)."""
    start = next(i for i, b in enumerate(ctx.blocks) if b[0] == "h2" and b[1].endswith("Time per stage"))
    del ctx.blocks[start:]
    sections.timings(ctx)
    md = render_md(ctx.blocks)
    atomic_write_text(ctx.out / "report.md", md)
    if ctx.recipe.report.html:
        page = render_html(ctx.blocks, ctx.recipe.report.title)
        atomic_write_text(ctx.out / "report.html", page)
