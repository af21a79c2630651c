"""Secret references: ``env:NAME`` or ``file:PATH``, never the secret itself.

Inventories name where a secret lives; :func:`resolve` reads it when a task needs it. A resolved
:class:`Secret` never shows its value in ``repr``/``str``/f-strings, and every resolved value is
remembered by :data:`REDACTOR` so run output, ``--json`` documents and error messages can be
scrubbed before they are printed.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from nr.inventory.files import SECRET_FILE, file_problem

MASK = "********"
_REF = re.compile(r"^(env|file):(.+)$")
# A secret shorter than this is refused where it is read: masking it in output would also mask
# ordinary words (and show where the secret's letters are), so it could not be masked safely.
MIN_LENGTH = 8


class SecretError(ValueError):
    """A secret reference is malformed or cannot be read (the message never holds the value)."""


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. ``base_dir`` anchors relative ``file:`` paths (the inventory folder)."""

    kind: str
    target: str
    base_dir: Path | None = None

    @classmethod
    def parse(cls, text: object, base_dir: Path | None = None) -> SecretRef:
        if isinstance(text, SecretRef):  # already parsed (the validator keeps references typed)
            return text
        if not isinstance(text, str):
            raise SecretError("must be a secret reference 'env:NAME' or 'file:PATH', not a plain value")
        m = _REF.match(text.strip())
        if not m:
            raise SecretError(
                "must be a secret reference 'env:NAME' or 'file:PATH'; secrets are never stored in the inventory"
            )
        kind, target = m.group(1), m.group(2).strip()
        if kind == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target):
            raise SecretError(f"'env:{target}' is not a valid environment variable name")
        return cls(kind, target, base_dir)

    @property
    def path(self) -> Path:
        p = Path(os.path.expanduser(self.target))
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    def resolve(self) -> Secret:
        if self.kind == "env":
            value = os.environ.get(self.target)
            if value is None or value == "":
                raise SecretError(f"environment variable {self.target} is not set")
            where = f"environment variable {self.target}"
        else:
            value = self._read_file()
            where = f"secret file {self.path}"
        if len(value) < MIN_LENGTH:
            raise SecretError(
                f"{where} holds {len(value)} character(s); secrets shorter than {MIN_LENGTH} are refused "
                "(they cannot be masked in output safely)"
            )
        REDACTOR.add(value)
        return Secret(value, str(self))

    def _read_file(self) -> str:
        path = self.path
        problem = file_problem(path, SECRET_FILE)
        if problem is None and not path.exists():
            problem = f"{path} cannot be read: no such file"
        if problem:
            raise SecretError(f"secret file {problem}")
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeError) as exc:  # changed since the check
            raise SecretError(f"secret file {path} cannot be read: {exc}") from None
        if not value:
            raise SecretError(f"secret file {path} is empty")
        return value


class Secret:
    """A resolved secret. Its value is only available through :meth:`reveal`."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str = "literal") -> None:
        self._value = value
        self._source = source
        REDACTOR.add(value)

    def reveal(self) -> str:
        return self._value

    @property
    def source(self) -> str:
        return self._source

    def __repr__(self) -> str:
        return f"Secret({self._source}, {MASK})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Redactor:
    """Remembers every secret value resolved in this process and masks it in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Mask ``value`` from now on, whatever its length (short secrets are refused where read)."""
        if value:
            with self._lock:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


REDACTOR = Redactor()


def redact(text: str) -> str:
    """Mask every secret resolved so far in ``text``."""
    return REDACTOR(text)


def write_secret_file(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` with mode 0600 from the first byte on (no window at 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    REDACTOR.add(value)
