"""Live progress of long steps: silent unless enabled (a terminal, no --json), transient when shown."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from rich.console import Console

from nr import progress


@pytest.fixture(autouse=True)
def _off() -> Iterator[None]:
    yield
    progress.disable()


def test_nothing_is_shown_or_kept_unless_enabled() -> None:
    assert not progress.enabled()
    with progress.track("upload x", total=10) as line:
        line.advance(5)
        line.say("still")
    assert line is progress.NULL


def test_an_upload_line_shows_bytes_and_rate_then_goes_away() -> None:
    out = io.StringIO()
    progress.enable(Console(file=out, force_terminal=True, width=120))
    data = io.BytesIO(b"x" * 3_000_000)
    with progress.track("upload image.tar to vm1", total=3_000_000) as line:
        reader = progress.CountingReader(data, line)  # type: ignore[arg-type]
        while reader.read(1_000_000):
            time.sleep(0.3)
    text = out.getvalue()
    assert "upload image.tar to vm1" in text and "3.0/3.0 MB" in text and "MB/s" in text
    assert text.endswith("\x1b[?25h") or "\x1b[2K" in text  # transient: erased, cursor back


def test_a_wait_says_what_it_awaits() -> None:
    out = io.StringIO()
    progress.enable(Console(file=out, force_terminal=True, width=120))
    with progress.track("waiting for 2 node(s) Ready") as line:
        line.say("waiting for vm2: NotReady \x1b[2J")
        time.sleep(0.6)
    assert "waiting for vm2: NotReady \\x1b[2J" in out.getvalue()
