"""Rendering: one list of blocks -> Markdown and HTML (``**bold**`` and ```code``` inline in both)."""

from __future__ import annotations

import html
import re


def inline_html(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def render_md(blocks: list[tuple]) -> str:
    """Blocks (``("h1".."h3", text)``, ``("p", text)``, ``("pre", text)``, ``("img", src, caption)``,
    ``("table", header, rows)``) as Markdown."""
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


# Checked in a real browser at 1280 px (tests/pipeline/test_report_browser.py): nothing may stick out of the
# page. Preformatted text wraps (the headline's lines are longer than the page, and a scrolled <pre> hid its
# numbers), a wide table scrolls inside its own box, and long paths in <code> break anywhere.
STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;line-height:1.4}"
         "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 7px}"
         "th{background:#f3f3f3}div.table{max-width:100%;overflow-x:auto}"
         "pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:0.85em}"
         "code,p{overflow-wrap:anywhere}img{max-width:100%;height:auto}figure{margin:1em 0}")


def render_html(blocks: list[tuple], title: str) -> str:
    """The same blocks as one self-contained HTML page."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'>"
           "<meta name='viewport' content='width=device-width, initial-scale=1'>"
           f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{inline_html(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{inline_html(b[1])}</p>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
        elif kind == "img":
            out.append(f"<figure><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'>"
                       f"<figcaption>{inline_html(b[2])}</figcaption></figure>")
        elif kind == "table":
            head = "".join(f"<th>{inline_html(h)}</th>" for h in b[1])
            out.append(f"<div class='table'><table><tr>{head}</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline_html(str(c))}</td>" for c in r) + "</tr>"
                                 for r in b[2]) + "</table></div>")
    out.append("</body></html>")
    return "\n".join(out)
