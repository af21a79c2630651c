"""AeroAlpes configuration, read only from the environment.

=====================  =============================================  ==============
variable               meaning                                        default
=====================  =============================================  ==============
PORT                   HTTP port                                      5000
HOST                   bind address                                   0.0.0.0
AEROALPES_WORKERS      gunicorn worker processes                      2
AEROALPES_THREADS      threads per worker (gthread)                   4
AEROALPES_TIMEOUT      gunicorn worker timeout, seconds               30
LOG_LEVEL              DEBUG, INFO, WARNING, ERROR                    INFO
REDIS_NODES            comma-separated host:port seed nodes           (required)
REDIS_PASSWORD         cluster password (or REDIS_PASSWORD_FILE)      none
REDIS_TIMEOUT          Redis connect/read timeout, seconds            2
REDIS_KEY_PREFIX       key prefix of the reservations                 aeroalpes:reserva:
=====================  =============================================  ==============
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envconf import env_float, env_int, env_str, parse_host_port
from services.secret import ConfigError, Secret, secret_from_env


@dataclass(frozen=True, slots=True)
class RedisSettings:
    nodes: tuple[tuple[str, int], ...]
    password: Secret | None
    timeout: float = 2.0
    key_prefix: str = "aeroalpes:reserva:"


@dataclass(frozen=True, slots=True)
class Settings:
    redis: RedisSettings
    host: str = "0.0.0.0"
    port: int = 5000
    workers: int = 2
    threads: int = 4
    timeout: int = 30
    log_level: str = "INFO"

    def secrets(self) -> tuple[str, ...]:
        """Values the logs must never show."""
        return (self.redis.password.reveal(),) if self.redis.password else ()


def redis_from_env(env: Mapping[str, str]) -> RedisSettings:
    raw_nodes = env.get("REDIS_NODES", "").strip()
    if not raw_nodes:
        raise ConfigError("REDIS_NODES is required (comma-separated host:port list)")
    nodes = tuple(parse_host_port(item, "REDIS_NODES") for item in raw_nodes.split(",") if item.strip())
    return RedisSettings(
        nodes=nodes,
        password=secret_from_env(env, "REDIS_PASSWORD"),
        timeout=env_float(env, "REDIS_TIMEOUT", 2.0),
        key_prefix=env_str(env, "REDIS_KEY_PREFIX", "aeroalpes:reserva:"),
    )


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    log_level = env_str(env, "LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    return Settings(
        redis=redis_from_env(env),
        host=env_str(env, "HOST", "0.0.0.0"),
        port=env_int(env, "PORT", 5000, minimum=1, maximum=65535),
        workers=env_int(env, "AEROALPES_WORKERS", 2, minimum=1, maximum=64),
        threads=env_int(env, "AEROALPES_THREADS", 4, minimum=1, maximum=256),
        timeout=env_int(env, "AEROALPES_TIMEOUT", 30, minimum=1),
        log_level=log_level,
    )
