"""The site page of `nr status --html`: self-contained, escaped, and what a real browser shows of it.

The page is made from the redis component's real section (on the fake cluster, one instance stopped)
and hosts whose values are hostile; Chromium (Debian's, headless) renders it: one box per host, one
arrow per replica, the failing instance and its problem in red, no script or fetch of the page's own.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from nr.hostinfo import HostInfo
from nr.html import page, write_page
from nr.status import HostState, LastDrift, SiteStatus
from tests.support import browser
from tests.unit.redis_scripted import Site

RED = "rgb(198, 40, 40)"
EVIL = '<img src=x onerror="alert(1)"><script>alert(2)</script>\x1b[2J'


def site_status(monkeypatch: pytest.MonkeyPatch, *, stop: str | None = None) -> SiteStatus:
    site = Site(monkeypatch)
    if stop:
        site.cluster.by_label(stop).alive = False
    ctx, _ = site.context()
    section = site.component().status(ctx, {})
    info = HostInfo(os=EVIL, load1=0.2, cpus=2, mem_total_kib=2048, mem_available_kib=1024)
    hosts = tuple(
        HostState(name, f"198.18.0.1{i}", ("redis",), True, "", info)
        for i, name in enumerate(("vm1", "vm2", "vm3"), 1)
    )
    drift = LastDrift(
        "x.json", time.time() - 600, 1, ({"host": "vm2", "what": EVIL, "actual": "a", "fix": "nr run redis"},)
    )
    return SiteStatus(f"lab{EVIL}", time.time(), 0.4, hosts, (section,), drift)


def test_the_page_is_self_contained_and_escapes_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    text = page(site_status(monkeypatch, stop="vm3:7003"))
    assert "<img" not in text and "<script" not in text and "\x1b" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text and "\\x1b[2J" in text
    assert "default-src 'none'" in text  # the browser refuses any fetch
    urls = re.findall(r"(?:https?:)?//[^\s\"'<>)]+", text)
    assert set(urls) == {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, not a fetch
    assert not re.search(r"<[^>]*\s(?:src|href)\s*=|url\((?!#)|@import", text)  # url(#id): the page's own


def test_write_page_replaces_the_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "www" / "site.html"
    write_page(path, site_status(monkeypatch))
    assert path.read_text().startswith("<!DOCTYPE html>") and path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["site.html"]


needs_chromium = pytest.mark.skipif(browser.chromium() is None, reason="chromium is not installed")


@needs_chromium
def test_chromium_draws_a_box_per_host_an_arrow_per_replica_and_failures_in_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.html"
    write_page(path, site_status(monkeypatch, stop="vm3:7003"))
    seen = browser.inspect_page(path)
    assert seen["svg"][0] > 600 and seen["svg"][1] > 200, seen  # it rendered, at a size
    assert seen["hosts"] == ["vm1", "vm2", "vm3"] and seen["host_boxes"] == 3
    assert len(seen["items"]) == 6
    assert sorted(seen["arrows"]) == [
        ["redis:vm1:7003", "redis:vm3:7000"],
        ["redis:vm2:7003", "redis:vm1:7000"],
        ["redis:vm3:7003", "redis:vm2:7000"],
    ]
    assert seen["fail_items"] == [RED]  # vm3:7003, stopped
    assert seen["fail_lines"] and set(seen["fail_lines"]) == {RED}
    assert any(
        "vm3:7003: access" in t and "fix: " in t and "redis-server@7003" in t for t in seen["fail_texts"]
    )
    assert RED in seen["fail_cells"] and RED not in seen["ok_items"]
    assert (
        seen["scripts"] == 1 and seen["images"] == 0
    )  # only the test's own probe; the hostile <img> is text


@needs_chromium
def test_a_healthy_site_has_nothing_red(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = site_status(monkeypatch)
    path = tmp_path / "site.html"
    write_page(path, SiteStatus(status.site, status.taken, 0.1, status.hosts, status.sections))
    seen = browser.inspect_page(path)
    assert seen["fail_items"] == [] and seen["fail_lines"] == [] and len(seen["arrows"]) == 3
