"""A string that never shows itself in ``repr``/``str`` (so it cannot leak into logs or tracebacks)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""


def secret_from_env(env: Mapping[str, str], name: str) -> Secret | None:
    """``NAME`` or ``NAME_FILE`` (file content, trailing newline dropped); both set is an error."""
    direct, file_name = env.get(name), env.get(f"{name}_FILE")
    if direct and file_name:
        raise ConfigError(f"set only one of {name} and {name}_FILE")
    if file_name:
        try:
            return Secret(Path(file_name).read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name} ({exc.strerror})") from None
    return Secret(direct) if direct else None
