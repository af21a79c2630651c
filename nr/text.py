"""Text nr prints: control characters escaped, quoted values bounded, commands shell-quoted.

Whatever reaches the operator's terminal may come from a hostile place (an inventory value, a
remote program's stderr, a lock file). :func:`printable` escapes C0 and C1 control characters
(``ESC`` becomes the four characters ``\\x1b``) so no such text can move the cursor, rewrite lines
or set the window title; :func:`show` also escapes Rich markup. :func:`clip` bounds a value quoted
in a message; :func:`command` builds a command line an operator can paste.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from nr.plain import escape_markup

# C0 (but newline and tab), DEL and C1; also the Unicode line/paragraph separators and bidi overrides
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b", "\x07": "\\a", "\x1b": "\\x1b"}
CLIP = 80


def _escape_one(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters shown as escapes (newlines and tabs kept unless told)."""
    out = _CONTROL.sub(_escape_one, text)
    return out if newlines else out.replace("\n", "\\n")


def show(text: object) -> str:
    """``text`` safe to hand to a Rich console: control characters and markup escaped."""
    return escape_markup(printable(str(text)))


def clip(value: object, limit: int = CLIP) -> str:
    """``value`` as one printable line of at most ``limit`` characters (for quoting in messages)."""
    text = printable(value if isinstance(value, str) else repr(value), newlines=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def command(*words: str | Iterable[str]) -> str:
    """A command line to paste in a shell: every word quoted (``command("ssh-keygen", "-R", host)``)."""
    flat: list[str] = []
    for w in words:
        flat.extend([w] if isinstance(w, str) else list(w))
    return shlex.join(flat)
