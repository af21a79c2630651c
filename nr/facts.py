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
# Where nr, when it installs a large file (nr.ops.files.plan_upload), notes the file's identity (STAMP_ID)
# and sha256: /var/lib/nr/digests/<the file's path>, root's. A read takes the digest from there while the
# identity still matches, so a no-op run does not hash a 70 MB binary (or an image tarball of hundreds of
# MB) again. Any later write, rename or chmod of the file changes its ctime: the stamp no longer matches.
STAMPS = "/var/lib/nr/digests"
STAMP_ID = "%d %i %s %y %z"  # stat(1): device, inode, size, mtime and ctime (to the nanosecond)


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


def gather_script(
    marker: str, files: Iterable[str], commands: Mapping[str, str], *, stamps: str = STAMPS
) -> str:
    """The shell script :func:`gather` runs (pure, so it can be tested and inspected).

    It starts few processes, since each costs the host about a millisecond of CPU and a no-op run
    is mostly this script and the SSH login: the regular files among ``files`` are stat-ed in one
    ``stat`` and hashed in one ``sha256sum`` (one ``base64`` each for their contents), but for those
    whose stamp in ``stamps`` still matches them (:data:`STAMPS`: nr installed them); if either
    fails (a file went away meanwhile), each file is read on its own instead. Each command runs in
    the command substitution that captures its stderr (no temporary file; encoded only when there is
    some), its stdout going straight out on fd 3 and its exit code printed by an EXIT trap, so an
    ``exit`` ends only that command. A command that sets an EXIT trap of its own replaces that one:
    its exit code is then the substitution's status (the same), and its stderr loses trailing newlines.
    """
    files = list(files)
    lines = [f"M={shlex.quote(marker)}", "exec 3>&1"]
    if files:
        lines += [f"D={shlex.quote(stamps)}", *_FILES_FUNCTIONS]
        lines.append("nr_files " + " ".join(shlex.quote(p) for p in files))
    for name, cmd in commands.items():
        lines.append(f'printf "%s cmd %s\\n" "$M" {shlex.quote(name)}')
        lines.append(f'X=$(trap \'printf "%s rc %s" "$M" "$?"\' EXIT; {{ {cmd}\n}} 2>&1 1>&3 3>&-)')
        lines.append('r=$?; case $X in *"$M rc "*) r=${X##*"$M rc "}; X=${X%"$M rc "*};; esac')
        lines.append('printf "\\n%s rc %s\\n" "$M" "$r"')
        lines.append('if [ -n "$X" ]; then printf %s "$X" | base64 -w0; fi; echo')
    lines.append('printf "%s end\\n" "$M"')
    return "\n".join(lines)


# nr_record PATH STAT HASH: one regular file's record (stat's "MODE OWNER GROUP SIZE", the digest first in
# HASH), then its contents when small.
# nr_file PATH: that record, or nofile when PATH is not a regular file (or stopped being one before it was read).
# nr_files PATH...: the same for all of them, with one stat for all the regular files and one sha256sum for
# those without a matching stamp (the outputs hold one line per file, in order; sha256sum starts a line with
# a backslash when it escapes the name), falling back to nr_file for each when either fails. Each file's
# path, stat and stamped digest wait in _pN, _sN, _hN (numbered: sh has no arrays).
_FILES_FUNCTIONS = [
    "nr_record() {",
    '  printf "%s file %s\\n%s\\n%s\\n" "$M" "$1" "$2" "${3%% *}"',
    f'  if [ "${{2##* }}" -le {CONTENT_LIMIT} ]; then base64 -w0 -- "$1"; fi',
    "  echo",
    "}",
    "nr_file() {",
    '  if [ -f "$1" ] && s=$(stat -c \'%a %U %G %s\' -- "$1") && h=$(sha256sum < "$1"); then',
    '    nr_record "$1" "$s" "$h"',
    '  else printf "%s nofile %s\\n" "$M" "$1"; fi',
    "}",
    "nr_files() {",
    "  for p do",
    "    shift",
    '    if [ -f "$p" ]; then set -- "$@" "$p"; else printf "%s nofile %s\\n" "$M" "$p"; fi',
    "  done",
    '  [ "$#" -gt 0 ] || return 0',
    f"  if ! S=$(stat -c '%a %U %G %s|{STAMP_ID}' -- \"$@\"); then",
    '    for p do nr_file "$p"; done',
    "    return 0",
    "  fi",
    "  N='",
    "'",
    "  _n=0",
    "  for p do",
    '    shift; _n=$((_n + 1)); s=${S%%"$N"*}; S=${S#*"$N"}; _i=${s#*|}; s=${s%%|*}',
    '    if [ -f "$D$p" ] && { IFS= read -r _a && IFS= read -r h; } < "$D$p" && [ "$_a" = "$_i" ] && [ "${#h}" -eq 64 ]',
    '    then :; else h=; set -- "$@" "$p"; fi',
    '    eval "_p$_n=\\$p _s$_n=\\$s _h$_n=\\$h"',
    "  done",
    '  if [ "$#" -gt 0 ] && ! H=$(sha256sum -- "$@"); then',
    '    _j=0; while [ "$_j" -lt "$_n" ]; do _j=$((_j + 1)); eval "nr_file \\"\\$_p$_j\\""; done',
    "    return 0",
    "  fi",
    '  _j=0; while [ "$_j" -lt "$_n" ]; do',
    '    _j=$((_j + 1)); eval "p=\\$_p$_j s=\\$_s$_j h=\\$_h$_j"',
    '    if [ -z "$h" ]; then h=${H%%"$N"*}; H=${H#*"$N"}; h=${h#\\\\}; fi',
    '    nr_record "$p" "$s" "$h"',
    "  done",
    "}",
]


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
