"""Output without Rich, for a stream that is no terminal (a pipe, a log, cron's mail, a CI job).

There Rich would only strip its own markup and draw tables cut to 80 columns, and importing it costs
tens of milliseconds at every start: a scheduled ``nr drift`` or a no-op ``nr run`` pays that for
nothing. :class:`PlainConsole` prints the same text itself: markup removed as Rich removes it
(:func:`strip_markup`, escapes honoured), a :class:`TextTable` drawn with Rich's default box but never
wrapped, so a fix command in a cell stays one line to paste. Anything else (a Rich renderable) goes
to a Rich console made on first use, so every caller keeps working.

:class:`TextTable` is also a Rich renderable (``__rich__``): on a terminal the same table is Rich's.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# Rich's markup tag: "[" then a letter, "#", "/" or "@", up to the first "]" with no "[" before it;
# the backslashes just before it say whether it is a tag (an even count) or literal text (odd).
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
# What Rich removes from any text it prints: bell, backspace, vertical tab, form feed, carriage return
_RICH_STRIPS = dict.fromkeys((7, 8, 11, 12, 13))


def escape_markup(text: str) -> str:
    """``text`` that Rich prints as itself (what ``rich.markup.escape`` returns): each tag-like ``[...]``
    gets one more backslash in front (and the backslashes already there are doubled); one trailing
    backslash is doubled too, so it cannot escape a tag that follows it in a longer string."""

    def one(m: re.Match[str]) -> str:
        slashes = m.group(1)
        return slashes * 2 + "\\" + m.group(2)

    out = _TAG.sub(one, text)
    return out + "\\" if out.endswith("\\") and not out.endswith("\\\\") else out


def strip_markup(text: str) -> str:
    """What Rich prints for ``text`` with markup on and no colours: tags dropped, escaped ones kept,
    and (as Rich does outside tags) ``\\[`` printed as ``[``. Emoji codes (``:smile:``) stay text."""
    if "[" not in text:
        return text
    parts, position = [], 0
    for m in _TAG.finditer(text):
        parts.append(text[position : m.start()].replace("\\[", "["))
        kept, escaped = divmod(len(m.group(1)), 2)
        parts.append("\\" * kept + (m.group(2) if escaped else ""))
        position = m.end()
    parts.append(text[position:].replace("\\[", "["))
    return "".join(parts)


def plain_text(text: str, markup: bool = True) -> str:
    """``text`` as Rich prints it without colours: markup stripped (unless ``markup`` is off), the
    control codes Rich drops removed, tabs expanded to 8 columns."""
    return (strip_markup(text) if markup else text).translate(_RICH_STRIPS).expandtabs(8)


def width(text: str) -> int:
    """Terminal cells ``text`` takes: East Asian wide characters two, combining marks none."""
    if text.isascii():
        return len(text)
    total = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        total += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return total


class Box(NamedTuple):
    """A table's box: each rule as left, line, crossing and right characters; each row's bar."""

    top: str
    head: str
    head_rule: str
    row_rule: str
    bar: str
    bottom: str


HEAVY_HEAD = Box("┏━┳┓", "┃", "┡━╇┩", "├─┼┤", "│", "└─┴┘")  # Rich's default (rich.box.HEAVY_HEAD)
ASCII_BOX = Box("+--+", "|", "|-+|", "|-+|", "|", "+--+")  # what Rich draws instead (rich.box.ASCII)

Justify = Literal["left", "right"]
Overflow = Literal["fold", "crop", "ellipsis"]  # Rich's, on a terminal: "fold" breaks long words


@dataclass
class Column:
    header: str
    justify: Justify = "left"
    overflow: Overflow = "ellipsis"


@dataclass
class TextTable:
    """A titled table of markup cells: :class:`PlainConsole` draws it, and Rich (``__rich__``) on a terminal."""

    title: str = ""
    show_lines: bool = False  # a rule between rows too
    columns: list[Column] = field(default_factory=list)
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def add_column(self, header: str, justify: Justify = "left", overflow: Overflow = "ellipsis") -> None:
        self.columns.append(Column(header, justify, overflow))

    def add_row(self, *cells: str) -> None:
        self.rows.append(tuple(cells))

    def __rich__(self) -> Table:
        from rich.table import Table

        table = Table(title=self.title or None, title_justify="left", show_lines=self.show_lines)
        for c in self.columns:
            table.add_column(c.header, justify=c.justify, overflow=c.overflow)
        for row in self.rows:
            table.add_row(*row)
        return table

    def render(self, ascii_only: bool = False) -> str:
        """The table as Rich draws it with its default box when wide enough (``ascii_only``: the box
        Rich substitutes for a stream whose encoding is not UTF); cells are never wrapped."""
        box = ASCII_BOX if ascii_only else HEAVY_HEAD
        heads = [[plain_text(c.header)] for c in self.columns]
        body = [[plain_text(cell).split("\n") for cell in self._full(row)] for row in self.rows]
        widths = [max(width(line) for line in h) for h in heads]
        for row in body:
            widths = [max(w, *(width(line) for line in cell)) for w, cell in zip(widths, row, strict=True)]
        right = [c.justify == "right" for c in self.columns]
        lines = [plain_text(self.title)] if self.title else []
        lines.append(_rule(box.top, widths))
        lines += _cells(heads, widths, right, box.head)
        lines.append(_rule(box.head_rule, widths))
        for i, row in enumerate(body):
            if i and self.show_lines:
                lines.append(_rule(box.row_rule, widths))
            lines += _cells(row, widths, right, box.bar)
        lines.append(_rule(box.bottom, widths))
        return "\n".join(lines)

    def _full(self, row: tuple[str, ...]) -> tuple[str, ...]:
        return (row + ("",) * len(self.columns))[: len(self.columns)]


def _rule(chars: str, widths: list[int]) -> str:
    return chars[0] + chars[2].join(chars[1] * (w + 2) for w in widths) + chars[3]


def _cells(cells: list[list[str]], widths: list[int], right: list[bool], bar: str) -> list[str]:
    out = []
    for i in range(max((len(c) for c in cells), default=1)):
        parts = []
        for lines, w, r in zip(cells, widths, right, strict=True):
            text = lines[i] if i < len(lines) else ""
            pad = " " * (w - width(text))
            parts.append(f" {pad}{text} " if r else f" {text}{pad} ")
        out.append(bar + bar.join(parts) + bar)
    return out


class PlainConsole:
    """Prints markup text and :class:`TextTable` as plain text on ``sys.stdout`` (or ``sys.stderr``),
    looked up at each print as Rich does; hands anything else to a Rich console with ``options``."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._rich: Console | None = None

    def print(
        self, *objects: Any, sep: str = " ", end: str = "\n", markup: bool = True, **style: Any
    ) -> None:
        """Rich's ``print``: styles (``highlight``, ``style``, ...) mean nothing without colours."""
        if any(not isinstance(o, (str, TextTable)) for o in objects):
            self.rich().print(*objects, sep=sep, end=end, markup=markup, **style)
            return
        stream: IO[str] | None = self.file
        if stream is None:  # closed (``nr drift >&-``): Rich prints to nothing then too
            return
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower()
        ascii_only = not encoding.startswith("utf")
        text = sep.join(
            o.render(ascii_only) if isinstance(o, TextTable) else plain_text(o, markup) for o in objects
        )
        with self._lock:
            try:
                stream.write(text + end)
            except UnicodeEncodeError:  # a ✓ under a Latin-1 locale: shown as "?" rather than failing
                stream.write((text + end).encode(encoding, "replace").decode(encoding))
            stream.flush()

    @property
    def file(self) -> IO[str]:
        return sys.stderr if self._options.get("stderr") else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return False

    def rich(self) -> Console:
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(**self._options)
        return self._rich

    def __getattr__(self, name: str) -> Any:  # the rest of Rich's Console API
        return getattr(self.rich(), name)


def wants_rich(stderr: bool) -> bool:
    """Whether output to this stream should go through Rich: a terminal, or colours forced (as Rich
    reads ``FORCE_COLOR`` and ``TTY_COMPATIBLE``)."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    stream = sys.stderr if stderr else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
