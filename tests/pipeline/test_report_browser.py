"""report.html in a real browser (headless Chromium): what most users open.

The report of a hand-made finished run (conftest.py's ``report_ctx``: no training) is rendered, then loaded
at 1280 px: every image must load, nothing may stick out of the page, and the numbers of the first screen
(the intro and "Result in one look") must be summary.json's. Chromium is Debian's package (``.ci/run``
installs it as root); without it the test skips and says so."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pplaw.pipeline.analysis import METRICS

WIDTH, SCREEN = 1280, 800  # a common laptop screen: the "first screen" is what shows before any scrolling
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Injected into a copy of the report: once the page (and its images) loaded, it measures and writes the
# result into the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener('load', () => {
  const de = document.documentElement, h = window.innerHeight;
  const first = [...document.body.querySelectorAll('h1,h2,p,pre,th,td')]
    .filter(e => e.getBoundingClientRect().top < h);
  const out = {
    images: [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
    scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, innerWidth: window.innerWidth,
    wider: [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > de.clientWidth)
      .map(e => e.tagName + ' ' + (e.textContent || '').slice(0, 60)),
    clipped: first.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.tagName),
    first: first.map(e => e.innerText).join('\\n'),
  };
  const pre = document.createElement('pre');
  pre.id = 'pplaw-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def chromium(exe: str, *args: str) -> str:
    """Run headless Chromium; its stdout. (--no-sandbox: CI runs as root in a container.)"""
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}: {res.stderr[-2000:]}"
    return res.stdout


def probe(exe: str, report: Path) -> dict:
    page = report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>")
    probed = report.with_name("report_probe.html")  # next to the report: its images resolve the same
    probed.write_text(page, encoding="utf-8")
    dom = chromium(exe, f"--window-size={WIDTH},{SCREEN}", "--virtual-time-budget=10000", "--dump-dom",
                   probed.as_uri())
    m = re.search(r'<pre id="pplaw-probe">(.*?)</pre>', dom, re.S)
    assert m, f"the probe did not run (no result in the DOM): {dom[-1000:]}"
    return json.loads(html.unescape(m.group(1)))


def _stage_plots(out: Path) -> None:
    """The plots the landscape and plan stages would have made (the report links them, never draws them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in ("landscape/landscape.png", "plan/plan.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot([1, 2, 3], [3, 1, 2])
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


@pytest.fixture
def rendered(report_ctx):
    from pplaw._atomic import jsonable
    from pplaw.pipeline.report import write_report

    _stage_plots(report_ctx.out)
    # all three metrics, as in a real run: the headline's lines are then longer than the page is wide
    for r in report_ctx.finals:
        r["general_bench"] = 0.25 + 0.01 * r["seed"]
    summary = jsonable(write_report(report_ctx))
    (report_ctx.out / "summary.json").write_text(json.dumps(summary))
    return report_ctx.out


def test_the_report_renders_in_chromium_images_fit_and_first_screen_numbers(rendered):
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium (Debian package `chromium`; .ci/run installs it as root): the report is not "
                    "checked in a browser")
    summary = json.loads((rendered / "summary.json").read_text())
    got = probe(exe, rendered / "report.html")
    # every image loads (a missing or broken file has naturalWidth 0)
    assert got["images"] and len(got["images"]) >= 4
    assert [i["src"] for i in got["images"] if not i["ok"]] == []
    # nothing sticks out of the page at 1280 px, and nothing on the first screen hides part of itself
    assert got["innerWidth"] == WIDTH
    assert got["scrollWidth"] <= got["clientWidth"] <= WIDTH, got["wider"]
    assert got["wider"] == [] and got["clipped"] == []
    # the first screen: the intro's budget and every DOS - baseline margin of "Result in one look"
    first = got["first"]
    assert f"Final budget D = {summary['budget']:,} tokens" in first
    shown = {(base, label): float(v) for base, rest in re.findall(r"DOS - (\S+): (.*)", first)
             for label, v in re.findall(r"(domain loss|domain benchmark|general benchmark) ([+-]\d+\.\d+)", rest)}
    want = {(base, label): round(cmp[key]["mean"], 4) for base, cmp in summary["margins"].items()
            for key, label, _ in METRICS[:3] if key in cmp}
    assert want and shown == want
    # the warning the unvalidated fixture gets heads the page
    assert first.index("Warning: the law is not validated") < first.index("Result in one look")


def test_the_report_screenshot_is_the_page_at_1280_px(rendered, tmp_path):
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium (Debian package `chromium`; .ci/run installs it as root)")
    shot = tmp_path / "report.png"
    chromium(exe, f"--window-size={WIDTH},2000", f"--screenshot={shot}", (rendered / "report.html").as_uri())
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == WIDTH and int.from_bytes(head[20:24], "big") == 2000


@pytest.mark.slow
def test_a_real_runs_report_renders_in_chromium(micro_run):
    """The same checks on the report of the micro `pplaw run` (every stage's real plots)."""
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium (Debian package `chromium`; .ci/run installs it as root)")
    out = micro_run[0]
    summary = json.loads((out / "summary.json").read_text())
    got = probe(exe, out / "report.html")
    assert len(got["images"]) >= 6 and [i["src"] for i in got["images"] if not i["ok"]] == []
    assert got["scrollWidth"] <= got["clientWidth"] <= WIDTH and got["wider"] == [] and got["clipped"] == []
    assert f"Final budget D = {summary['budget']:,} tokens" in got["first"]
