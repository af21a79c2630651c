"""nr.plain prints what Rich prints when the output is no terminal: the same text for markup, the same
table (never wrapped), with Rich itself as the reference."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.text import Text

from nr import console as nr_console
from nr.plain import PlainConsole, TextTable, escape_markup, strip_markup
from nr.text import show

TRICKY = [
    "",
    "plain",
    "[red]x[/]",
    "a [b] c",
    "list[0] and [/] and [#fff]",
    "\\[red] escaped",
    "\\\\[red]x[/red] two slashes",
    "\\\\\\[red] three",
    "ends with \\",
    "ends with \\\\",
    "[bold red]FAIL[/] — [link=http://x]x[/link]",
    "[1, 2] [a=b] [@click] [ not a tag",
    "nested [[red]x[/]]",
]


def fuzz(n: int) -> list[str]:
    rnd = random.Random(12)
    return ["".join(rnd.choice("[]\\/a#@ =x") for _ in range(rnd.randint(0, 14))) for _ in range(n)]


@pytest.mark.parametrize("text", TRICKY + fuzz(400))
def test_escaping_is_rich_s_own(text: str) -> None:
    assert escape_markup(text) == escape(text)


@pytest.mark.parametrize("text", TRICKY + fuzz(400))
def test_stripping_gives_what_rich_prints(text: str) -> None:
    try:
        expected = Text.from_markup(text).plain
    except MarkupError:  # Rich refuses a closing tag with nothing open; nr never prints one
        return
    assert strip_markup(text) == expected
    assert strip_markup(show(text)) == Text.from_markup(show(text)).plain


def rich_text(*objects: object) -> str:
    out = io.StringIO()
    Console(file=out, width=300, highlight=False, soft_wrap=True, color_system=None).print(*objects)
    return out.getvalue()


def sample(show_lines: bool = False) -> TextTable:
    table = TextTable(title="base", show_lines=show_lines)
    table.add_column("host")
    table.add_column("ok", justify="right")
    table.add_column("fix", overflow="fold")
    table.add_row("[red]nr-lab1[/]", "1", show("nr run base [x] --limit nr-lab1"))
    table.add_row("two\nlines", "22", "")
    table.add_row("東京", "3", "naïve")
    return table


@pytest.mark.parametrize("show_lines", [False, True])
def test_a_table_is_drawn_as_rich_draws_it_when_wide_enough(show_lines: bool) -> None:
    table = sample(show_lines)
    assert table.render() + "\n" == rich_text(table)  # rich_text draws it through __rich__
    assert "│ nr-lab1 │  1 │ nr run base [x] --limit nr-lab1 │" in table.render()


def test_a_long_cell_stays_on_one_line() -> None:
    table = TextTable(title="Drift")
    table.add_column("fix", overflow="fold")
    fix = (
        "nr run deploy -i /a/very/long/inventory/path/that/rich/would/fold/at/eighty/columns --limit nr-lab3"
    )
    table.add_row(fix)
    assert f"│ {fix} │" in table.render()


def test_the_plain_console_writes_where_sys_stdout_is_at_print_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, err = PlainConsole(), PlainConsole(stderr=True)
    out.print("[green]OK[/]:", "3 host(s)")
    err.print("[red]x[/]", markup=False)
    out.print(sample())
    captured = capsys.readouterr()
    assert captured.out.startswith("OK: 3 host(s)\nbase\n┏")
    assert captured.err == "[red]x[/]\n"


def test_what_it_cannot_draw_goes_to_rich(capsys: pytest.CaptureFixture[str]) -> None:
    PlainConsole(highlight=False).print(Text("from rich", style="bold"))
    assert capsys.readouterr().out == "from rich\n"


def test_a_lazy_console_is_plain_on_a_pipe_and_rich_when_colours_are_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    plain = nr_console.lazy_console()
    assert plain.is_terminal is False
    assert isinstance(plain._console, PlainConsole)  # type: ignore[attr-defined]
    monkeypatch.setenv("FORCE_COLOR", "1")
    forced = nr_console.lazy_console()
    forced.print("[red]x[/]")
    assert isinstance(forced._console, Console)  # type: ignore[attr-defined]


@pytest.mark.parametrize("markup", [True, False])
def test_control_codes_rich_removes_are_removed(capsys: pytest.CaptureFixture[str], markup: bool) -> None:
    text = "a\rb\x07c\x08d\x0be\x0cf\tg [red]h[/]"
    PlainConsole().print(text, markup=markup)
    out = io.StringIO()
    Console(file=out, highlight=False, soft_wrap=True, color_system=None).print(text, markup=markup)
    assert capsys.readouterr().out == out.getvalue()


def test_a_stream_that_is_not_utf_gets_rich_s_ascii_box_and_no_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO()
    latin = io.TextIOWrapper(raw, encoding="latin-1")
    monkeypatch.setattr("sys.stdout", latin)
    PlainConsole().print(sample(show_lines=True))
    PlainConsole().print("  [green]✓ nr-lab1[/] ok")
    latin.flush()
    rich_out = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    table = TextTable(title="base", show_lines=True)  # only what Latin-1 can print, for Rich
    table.add_column("host")
    table.add_column("ok", justify="right")
    table.add_row("[red]nr-lab1[/]", "1")
    table.add_row("two\nlines", "22")
    Console(file=rich_out, width=300, highlight=False, soft_wrap=True).print(table)
    rich_out.flush()
    mine = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr("sys.stdout", mine)
    PlainConsole().print(table)
    mine.flush()
    assert mine.buffer.getvalue() == rich_out.buffer.getvalue()  # type: ignore[attr-defined]
    printed = raw.getvalue().decode("latin-1")
    assert "+-" in printed and "┏" not in printed and "? nr-lab1 ok" in printed


def test_a_closed_stdout_prints_nothing_and_does_not_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", None)
    PlainConsole().print("No drift")
