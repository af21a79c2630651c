"""Local files an inventory names (keys, known_hosts, ssh_config, secrets, component paths), checked
before anything connects: a directory, a FIFO, an unreadable or non-UTF-8 file, or a private key
that others can read would otherwise fail later, host by host, or with a traceback."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from nr.text import command

TEXT_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileRule:
    """What a path must be: ``required`` to exist; ``private`` (no group/other access, like OpenSSH
    demands of a private key); ``text`` (UTF-8)."""

    required: bool = False
    private: bool = False
    text: bool = False


ANY_FILE = FileRule()
PRIVATE_KEY = FileRule(private=True)
TEXT_FILE = FileRule(text=True)
SECRET_FILE = FileRule(private=True, text=True)


def private_problem(path: Path, mode: int) -> str | None:
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"{path} is accessible by group/others (mode {stat.S_IMODE(mode):04o}); "
            f"run: {command('chmod', '600', str(path))}"
        )
    return None


def utf8_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(TEXT_LIMIT + 1)
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if len(data) > TEXT_LIMIT:
        return f"{path} is larger than {TEXT_LIMIT // (1024 * 1024)} MiB"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"{path} is not UTF-8 text (byte 0x{data[exc.start : exc.start + 1].hex()} at offset {exc.start})"
        )
    return None


def _kind_problem(path: Path, rule: FileRule) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path}: no such file" if rule.required else ""
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    return private_problem(path, st.st_mode) if rule.private else None


def file_problem(path: Path, rule: FileRule = ANY_FILE) -> str | None:
    """Why ``path`` cannot serve as the file ``rule`` describes, or None (a missing optional file is fine)."""
    problem = _kind_problem(path, rule)
    if problem is not None:
        return problem or None  # "": missing, and that is allowed
    if rule.text:
        return utf8_problem(path)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    return None
