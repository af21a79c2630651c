"""Small typed readers for configuration that comes only from the environment."""

from __future__ import annotations

from collections.abc import Mapping

from services.secret import ConfigError


def env_int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int = 2**31
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= minimum:
        raise ConfigError(f"{name} must be greater than {minimum}, got {value}")
    return value


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def parse_host_port(item: str, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = item.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: {item!r} is not host:port")
    return host, int(port)
