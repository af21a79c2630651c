"""Read a host's state in one round trip: files (stat, hash, small contents) and command outputs.

Tasks describe what they need to know; :func:`gather` builds one script, runs it once and parses
the answer. Planning then works on the returned :class:`Facts` without touching the host again.

Each command's stdout and stderr are kept apart: parsers read stdout only (tools such as kubectl
print warnings and discovery errors on stderr while their stdout is a valid document), and stderr
is shown when a command fails. A :class:`Fact` pairs a command with its parser (pyinfra's shape).
"""

from __future__ import annotations

import base64
import secrets
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from nr.errors import NrError
from nr.transport import Remote

T = TypeVar("T")

CONTENT_LIMIT = 256 * 1024


@dataclass(frozen=True)
class FileState:
    path: str
    exists: bool
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    size: int | None = None
    sha256: str | None = None
    content: bytes | None = None  # None when the file is missing or larger than CONTENT_LIMIT

    @property
    def text(self) -> str | None:
        return None if self.content is None else self.content.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Output:
    rc: int
    text: str  # stdout
    err: str = ""  # stderr, kept apart (shown when the command fails, never parsed)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def explain(self, limit: int = 800) -> str:
        """Why the command failed, for a message: its stderr (else stdout) tail and exit code."""
        tail = (self.err.strip() or self.text.strip())[-limit:]
        return f"exit {self.rc}" + (f": {tail}" if tail else "")


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A read-only command and the parser of its output."""

    name: str
    command: str
    parse: Callable[[Output], T]


@dataclass
class Facts:
    files: dict[str, FileState] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)

    def out(self, name: str) -> str:
        return self.outputs[name].text

    def rc(self, name: str) -> int:
        return self.outputs[name].rc

    def err(self, name: str) -> str:
        return self.outputs[name].err

    def get(self, fact: Fact[T]) -> T:
        return fact.parse(self.outputs[fact.name])

    def file(self, path: str) -> FileState:
        return self.files.get(path) or FileState(path, False)


def gather_script(marker: str, files: Iterable[str], commands: Mapping[str, str]) -> str:
    """The shell script :func:`gather` runs (pure, so it can be tested and inspected)."""
    lines = [
        f"M={shlex.quote(marker)}",
        "E=$(mktemp) || exit 1; trap 'rm -f \"$E\"' EXIT",
        "nr_file() {",
        '  if [ -f "$1" ]; then',
        '    printf "%s file %s\\n" "$M" "$1"',
        '    set -- "$1" $(stat -c \'%a %U %G %s\' "$1")',
        '    echo "$2 $3 $4 $5"',
        '    h=$(sha256sum < "$1"); echo "${h%% *}"',
        f'    if [ "$5" -le {CONTENT_LIMIT} ]; then base64 -w0 "$1"; fi',
        "    echo",
        '  else printf "%s nofile %s\\n" "$M" "$1"; fi',
        "}",
    ]
    lines += [f"nr_file {shlex.quote(p)}" for p in files]
    for name, cmd in commands.items():
        lines.append(f'printf "%s cmd %s\\n" "$M" {shlex.quote(name)}')
        lines.append(f'( {cmd}\n) 2>"$E"')
        lines.append('printf "\\n%s rc %s\\n" "$M" "$?"')
        lines.append('base64 -w0 < "$E"; echo')
    lines.append('printf "%s end\\n" "$M"')
    return "\n".join(lines)


def parse_gather(marker: str, text: str) -> Facts:
    """Parse the output of :func:`gather_script` (pure)."""
    facts = Facts()
    lines = text.split("\n")
    i = 0
    saw_end = False
    while i < len(lines):
        line = lines[i]
        if not line.startswith(marker + " "):
            i += 1
            continue
        kind, _, arg = line[len(marker) + 1 :].partition(" ")
        if kind == "end":
            saw_end = True
            break
        if kind == "nofile":
            facts.files[arg] = FileState(arg, False)
            i += 1
        elif kind == "file":
            mode, owner, group, size = lines[i + 1].split(" ")
            digest = lines[i + 2].strip()
            b64 = lines[i + 3].strip()
            content = base64.b64decode(b64) if b64 or int(size) == 0 else None
            facts.files[arg] = FileState(arg, True, int(mode, 8), owner, group, int(size), digest, content)
            i += 4
        elif kind == "cmd":
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].startswith(marker + " rc "):
                body.append(lines[i])
                i += 1
            rc = int(lines[i][len(marker) + 4 :]) if i < len(lines) else -1
            out = "\n".join(body)
            if out.endswith("\n"):
                out = out[:-1]
            err = base64.b64decode(lines[i + 1].strip()) if i + 1 < len(lines) else b""
            facts.outputs[arg] = Output(rc, out, err.decode("utf-8", errors="replace"))
            i += 2
        else:
            i += 1
    if not saw_end:
        raise NrError("gathering facts was cut short (no end marker in the output)")
    return facts


def gather(
    remote: Remote,
    *,
    files: Iterable[str] = (),
    commands: Mapping[str, str] | None = None,
    facts: Iterable[Fact[object]] = (),
) -> Facts:
    """One round trip: stat/hash/read ``files`` and run read-only ``commands`` and ``facts`` (as root).

    A remote that read this ahead (:class:`nr.readahead.ReadAheadRemote`) answers without a round trip.
    """
    marker = "@@NR-" + secrets.token_hex(6) + "@@"
    wanted = dict(commands or {})
    wanted.update({f.name: f.command for f in facts})
    files = list(files)
    prefetched = getattr(remote, "prefetched", None)
    if prefetched is not None:
        early: Facts | None = prefetched(files, wanted)
        if early is not None:
            return early
    script = gather_script(marker, files, wanted)
    result = remote.run(script, check=False)
    if result.exited != 0:
        raise NrError(
            f"{remote.name}: gathering facts failed (exit {result.exited}): {result.stderr.strip()[-500:]}"
        )
    return parse_gather(marker, result.stdout)
