"""One self-contained HTML page of a :class:`~nr.status.SiteStatus`: a picture of the site and its tables.

The picture (inline SVG) draws each host as a box holding what the sections place on it (server
instances, pods, its lines such as a role and version), and the sections' arrows between those
(e.g. from each replica to its master). Everything not as it should be is red, and listed with the
command that fixes it.

Self-contained: inline CSS and SVG, no script, no font, image or style from anywhere; a Content
Security Policy of ``default-src 'none'`` makes the browser refuse any fetch. Every text comes from
hosts, the inventory or remote programs, so all of it is redacted, control characters escaped
(:func:`nr.text.printable`) and HTML-escaped (:func:`esc`).
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nr.secrets import redact
from nr.status import Arrow, Box, Cell, HostState, Level, SiteStatus, Table
from nr.status_view import drift_line, host_cells, hosts_table
from nr.text import printable

BOX_W, GAP_X, GAP_Y, PER_ROW, MARGIN = 300, 70, 90, 4, 50
HEAD_H, LINE_H, ITEM_H, PAD = 44, 18, 26, 10
LABEL_CHARS = 44

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1b1b;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px}
.meta{color:#555} .verdict-ok{color:#2e7d32;font-weight:600} .verdict-fail{color:#c62828;font-weight:600}
table{border-collapse:collapse;margin:6px 0 14px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} caption{text-align:left;font-weight:600;padding:4px 0}
.lvl-ok{color:#2e7d32} .lvl-warn{color:#a15c00} .lvl-fail{color:#c62828;font-weight:600}
td.lvl-fail{background:#ffebee}
.note{color:#666;font-weight:400}
ul.problems li{margin:4px 0} li.fail{color:#c62828} li.warn{color:#a15c00}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px;color:#1b1b1b;font-size:13px}
svg{background:#fff;border:1px solid #ddd;max-width:100%;height:auto}
svg text{font:12px system-ui,sans-serif;fill:#1b1b1b}
svg .host-name{font-weight:700;font-size:14px} svg .caption{fill:#666;font-size:11px}
svg rect.host-box{fill:#f7f9fc;stroke:#607d8b;stroke-width:1.5}
svg g.host.lvl-fail rect.host-box{fill:#ffebee;stroke:#c62828;stroke-width:2.5}
svg g.item rect{stroke-width:1.2} svg g.item.lvl-ok rect{fill:#e8f5e9;stroke:#2e7d32}
svg g.item.lvl-info rect{fill:#eef2f7;stroke:#90a4ae} svg g.item.lvl-warn rect{fill:#fff8e1;stroke:#a15c00}
svg g.item.lvl-fail rect{fill:#ffebee;stroke:#c62828;stroke-width:2} svg g.item.lvl-fail text{fill:#c62828}
svg text.lvl-fail{fill:#c62828;font-weight:600} svg text.lvl-ok{fill:#2e7d32}
svg path.arrow{fill:none;stroke:#37474f;stroke-width:1.6} svg path.arrow.lvl-fail{stroke:#c62828;stroke-dasharray:5 3}
svg text.arrow-label{fill:#37474f;font-size:11px}
"""


def esc(value: object) -> str:
    """Redacted, control characters escaped, HTML-escaped (quotes too): safe in text and attributes."""
    return html.escape(printable(redact(str(value))), quote=True)


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Place:
    x: float
    y: float
    w: float
    h: float
    row: float = 0.0  # the top of the row of host boxes it is in


@dataclass
class _HostLayout:
    host: HostState
    place: _Place
    lines: list[Cell]
    groups: dict[str, list[Box]]

    @property
    def height(self) -> float:
        items = sum(LINE_H + len(boxes) * (ITEM_H + 4) for boxes in self.groups.values())
        return HEAD_H + len(self.lines) * LINE_H + items + PAD * 2


def _host_lines(status: SiteStatus, h: HostState) -> list[Cell]:
    if not h.reachable:
        return [Cell(f"unreachable: {_short(h.error, 40)}", Level.FAIL, h.error)]
    os_, load, mem, disk = (c for c in host_cells(h)[1:])
    lines = [os_, Cell(f"load {load.text}", load.level), Cell(f"free: mem {mem.text}, disk {disk.text}")]
    return lines + [
        Cell(f"{line.label}: {line.value.text}", line.value.level, line.value.note)
        for line in status.lines_of(h.name)
    ]


def layout(status: SiteStatus) -> list[_HostLayout]:
    """Host boxes in rows of :data:`PER_ROW`; each row as tall as its tallest box."""
    out: list[_HostLayout] = []
    for h in status.hosts:
        groups: dict[str, list[Box]] = {}
        for b in status.boxes_of(h.name):
            groups.setdefault(b.group, []).append(b)
        out.append(_HostLayout(h, _Place(0, 0, BOX_W, 0), _host_lines(status, h), groups))
    y = float(PAD * 2)
    for start in range(0, len(out), PER_ROW):
        row = out[start : start + PER_ROW]
        height = max(hl.height for hl in row)
        for i, hl in enumerate(row):
            hl.place = _Place(MARGIN + i * (BOX_W + GAP_X), y, BOX_W, height)
        y += height + GAP_Y
    return out


def _text(x: float, y: float, text: str, cls: str = "", title: str = "") -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.0f}" y="{y:.0f}"{klass}>{tip}{esc(text)}</text>'


def _item(b: Box, x: float, y: float, w: float) -> str:
    tip = b.label + (f" ({b.detail})" if b.detail else "")
    return (
        f'<g class="item lvl-{b.level.value}" data-id="{esc(b.id)}" data-group="{esc(b.group)}">'
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{ITEM_H}" rx="4"/>'
        f"{_text(x + 8, y + 17, _short(b.label), title=tip)}</g>"
    )


def _host(hl: _HostLayout, anchors: dict[str, _Place]) -> str:
    p, h = hl.place, hl.host
    level = "fail" if not h.reachable else "ok"
    parts = [
        f'<g class="host lvl-{level}" data-host="{esc(h.name)}">',
        f'<rect class="host-box" x="{p.x:.0f}" y="{p.y:.0f}" width="{p.w:.0f}" height="{p.h:.0f}" rx="8"/>',
        _text(p.x + PAD, p.y + 20, h.name, "host-name"),
        _text(p.x + PAD, p.y + 36, f"{h.address}  {', '.join(h.roles)}", "caption"),
    ]
    y = p.y + HEAD_H
    for line in hl.lines:
        parts.append(
            _text(p.x + PAD, y + 12, _short(line.text, 46), f"lvl-{line.level.value}", line.note or line.text)
        )
        y += LINE_H
    for group, boxes in hl.groups.items():
        y += 4
        parts.append(_text(p.x + PAD, y + 12, group, "caption"))
        y += LINE_H - 4
        for b in boxes:
            anchors[b.id] = _Place(p.x + PAD, y, p.w - 2 * PAD, ITEM_H, p.y)
            parts.append(_item(b, p.x + PAD, y, p.w - 2 * PAD))
            y += ITEM_H + 4
    parts.append("</g>")
    return "".join(parts)


def _arrow(a: Arrow, src: _Place, dst: _Place, bottom: float, n: int) -> str:
    """Neighbours: a curve between facing edges; farther apart: around the boxes, below the row."""
    sy, ty = src.y + ITEM_H / 2, dst.y + ITEM_H / 2
    if abs(src.x - dst.x) <= BOX_W + GAP_X + 1 and src.x != dst.x and src.row == dst.row:
        left = src.x > dst.x
        sx, tx = (src.x, dst.x + dst.w) if left else (src.x + src.w, dst.x)
        bend = -40 if left else 40
        d = f"M{sx:.0f},{sy:.0f} C{sx + bend:.0f},{sy:.0f} {tx - bend:.0f},{ty:.0f} {tx:.0f},{ty:.0f}"
        lx, ly = (sx + tx) / 2, (sy + ty) / 2 - 6
    else:  # out of the source's left edge, down the gap, below the row, up the gap right of the target
        d, lx, ly = _around(src, dst, bottom + 22 + 12 * n)
    label = _text(lx - 20, ly, a.label, "arrow-label") if a.label else ""
    return (
        f'<path class="arrow lvl-{a.level.value}" data-source="{esc(a.source)}" data-target="{esc(a.target)}" '
        f'd="{d}" marker-end="url(#head-{a.level.value})"><title>{esc(a.label)}</title></path>{label}'
    )


def _around(src: _Place, dst: _Place, low: float) -> tuple[str, float, float]:
    """A path with rounded corners around the boxes (and where to put its label)."""
    r = 8
    sy, ty = src.y + ITEM_H / 2, dst.y + ITEM_H / 2
    left, right = src.x - PAD - GAP_X / 3, dst.x + dst.w + PAD + GAP_X / 3
    d = (
        f"M{src.x:.0f},{sy:.0f} L{left + r:.0f},{sy:.0f} Q{left:.0f},{sy:.0f} {left:.0f},{sy + r:.0f} "
        f"L{left:.0f},{low - r:.0f} Q{left:.0f},{low:.0f} {left + r:.0f},{low:.0f} "
        f"L{right - r:.0f},{low:.0f} Q{right:.0f},{low:.0f} {right:.0f},{low - r:.0f} "
        f"L{right:.0f},{ty + r:.0f} Q{right:.0f},{ty:.0f} {right - r:.0f},{ty:.0f} L{dst.x + dst.w:.0f},{ty:.0f}"
    )
    return d, (left + right) / 2, low - 4


def _markers() -> str:
    heads = []
    for level, color in (("ok", "#37474f"), ("fail", "#c62828"), ("warn", "#a15c00"), ("info", "#37474f")):
        heads.append(
            f'<marker id="head-{level}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
        )
    return "<defs>" + "".join(heads) + "</defs>"


def picture(status: SiteStatus) -> str:
    """The site as inline SVG: one ``g.host`` per host, one ``path.arrow`` per arrow of every section."""
    hosts = layout(status)
    anchors: dict[str, _Place] = {}
    body = [_host(hl, anchors) for hl in hosts]
    rows = {hl.place.y: hl.place.y + hl.place.h for hl in hosts}
    arrows = [a for s in status.sections for a in s.arrows if a.source in anchors and a.target in anchors]
    for n, a in enumerate(arrows):
        src, dst = anchors[a.source], anchors[a.target]
        bottom = rows[src.row]
        body.append(_arrow(a, src, dst, bottom, n % 4))
    width = MARGIN * 2 + min(len(hosts), PER_ROW) * (BOX_W + GAP_X) - GAP_X
    height = max((hl.place.y + hl.place.h for hl in hosts), default=0) + 60
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="site" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="site picture">'
        f"{_markers()}{''.join(body)}</svg>"
    )


def _cell(c: Cell, tag: str = "td") -> str:
    note = f' <span class="note">({esc(c.note)})</span>' if c.note else ""
    mark = {Level.FAIL: "✗ ", Level.WARN: "! "}.get(c.level, "")
    return f'<{tag} class="lvl-{c.level.value}">{mark}{esc(c.text)}{note}</{tag}>'


def table(t: Table) -> str:
    if not t.columns:
        return f"<p>{esc(t.title)}</p>"
    head = "".join(f"<th>{esc(c)}</th>" for c in t.columns)
    rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in t.rows)
    return (
        f"<table><caption>{esc(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def problems(status: SiteStatus) -> str:
    items = [
        f'<li class="fail">{esc(h.name)} unreachable: {esc(h.error)}</li>'
        for h in status.hosts
        if not h.reachable
    ]
    for p in status.problems:
        where = f" ({esc(p.host)})" if p.host else ""
        items.append(
            f'<li class="{"warn" if p.level is Level.WARN else "fail"}"><b>{esc(p.what)}</b>{where}: {esc(p.actual)} '
            f'<span class="note">(expected {esc(p.expected)})</span> — fix: <code>{esc(p.fix)}</code></li>'
        )
    if status.drift is not None:
        for d in status.drift.items:
            items.append(
                f'<li class="fail">drift: <b>{esc(d.get("what", ""))}</b> ({esc(d.get("host", ""))}): '
                f"{esc(d.get('actual', ''))} — fix: <code>{esc(d.get('fix', ''))}</code></li>"
            )
    if not items:
        return (
            '<section id="problems"><h2>Not as it should be</h2><p class="verdict-ok">Nothing.</p></section>'
        )
    return f'<section id="problems"><h2>Not as it should be</h2><ul class="problems">{"".join(items)}</ul></section>'


def _sections(status: SiteStatus) -> Iterable[str]:
    yield f'<section id="hosts"><h2>Hosts</h2>{table(hosts_table(status))}</section>'
    for s in status.sections:
        tables = "".join(table(t) for t in s.tables)
        yield (
            f'<section class="component" data-component="{esc(s.component)}"><h2>{esc(s.title)}</h2>'
            f'<p class="summary">{_cell(s.summary, "span")}</p>{tables}</section>'
        )
    if status.drift is not None:
        yield f'<section id="drift"><h2>Drift</h2><p>{_cell(drift_line(status.drift, time.time()), "span")}</p></section>'


def page(status: SiteStatus) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(status.taken))
    verdict = (
        '<span class="verdict-ok">OK</span>' if status.ok else '<span class="verdict-fail">NOT OK</span>'
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>nr status: {esc(status.site)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>Site {esc(status.site)}</h1><p class="meta">{verdict} · read at {esc(when)} in '
        f"{status.seconds:.1f} s by <code>nr status</code></p></header>"
        f'<section id="picture"><h2>Picture</h2>{picture(status)}</section>'
        f"{problems(status)}{''.join(_sections(status))}</body></html>\n"
    )


def write_page(path: Path, status: SiteStatus) -> None:
    """Write the page atomically (temp file + rename): a browser or web server never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page(status), encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
