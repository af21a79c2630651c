"""Load a page in a real headless Chromium (Debian's ``chromium``) and read what it rendered.

:func:`inspect_page` copies the page, lets a small script of the test's run in it after layout (the
page's own Content Security Policy forbids scripts, so the copy's policy also allows this inline one),
and reads the script's answer from ``--dump-dom``: which host boxes and arrows have a size on screen,
and the computed colours of what is marked failing. :func:`screenshot` takes a PNG of the page as
it is. Flags as the machine notes say work here (no sandbox as root, no background networking).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
CSP = "default-src 'none'; style-src 'unsafe-inline'"

PROBE = """<script>
(() => {
  const all = s => Array.from(document.querySelectorAll(s));
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const svg = document.querySelector('svg#site');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const out = {
    svg: [box.width, box.height],
    hosts: all('svg#site g.host').filter(shown).map(g => g.dataset.host),
    host_boxes: all('svg#site rect.host-box').filter(shown).length,
    items: all('svg#site g.item').filter(shown).map(g => g.dataset.id),
    arrows: all('svg#site path.arrow').filter(shown).map(p => [p.dataset.source, p.dataset.target]),
    fail_items: all('svg#site g.item.lvl-fail rect').map(r => getComputedStyle(r).stroke),
    fail_lines: all('ul.problems li.fail').map(li => getComputedStyle(li).color),
    fail_texts: all('ul.problems li.fail').map(li => li.textContent),
    fail_cells: all('td.lvl-fail').map(td => getComputedStyle(td).color),
    ok_items: all('svg#site g.item.lvl-ok rect').map(r => getComputedStyle(r).stroke),
    scripts: all('script').length,
    images: all('img, iframe, object, embed, link').length,
    title: document.title,
  };
  const pre = document.createElement('pre');
  pre.id = 'nr-test-result';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float = 90) -> str:
    binary = chromium()
    assert binary, "chromium is not installed (scripts/bootstrap installs Debian's chromium)"
    with tempfile.TemporaryDirectory(prefix="nr-chromium-") as profile:
        proc = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def inspect_page(page: Path) -> dict[str, Any]:
    """What Chromium rendered of ``page`` (see :data:`PROBE`)."""
    text = page.read_text(encoding="utf-8")
    assert CSP in text, "the page lost its Content Security Policy"
    allowing = text.replace(CSP, CSP + "; script-src 'unsafe-inline'", 1)
    with tempfile.TemporaryDirectory(prefix="nr-page-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(allowing.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
        dom = _run(["--window-size=1400,1000", "--dump-dom", copy.as_uri()])
    m = re.search(r'<pre id="nr-test-result">(.*?)</pre>', dom, re.S)
    assert m, "the probe did not run: " + dom[-500:]
    result: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    return result


def screenshot(page: Path, png: Path, size: str = "1400,900") -> None:
    _run([f"--window-size={size}", f"--screenshot={png}", page.as_uri()])
    assert png.exists() and png.stat().st_size > 1000
