"""AeroAlpes configuration, read only from the environment.

===========================  ===================================================  ===================
variable                     meaning                                              default
===========================  ===================================================  ===================
PORT                         HTTP port                                            5000
HOST                         bind address                                         0.0.0.0
AEROALPES_WORKERS            event-loop processes sharing the port                1
AEROALPES_MAX_CONNECTIONS    open connections per worker (then the oldest idle    512
                             or slow one is closed; none: the new one gets 503)
AEROALPES_HEADER_TIMEOUT     seconds to receive a request's line and headers      5
AEROALPES_BODY_TIMEOUT       seconds to receive a request's whole body            10
AEROALPES_KEEPALIVE_TIMEOUT  seconds an idle keep-alive connection is kept        15
AEROALPES_REQUEST_BUDGET     seconds a request may spend on Redis, retries        15
                             included (must exceed cluster-node-timeout +
                             election: see services/README.md)
AEROALPES_GRACE              seconds in-flight requests get on SIGTERM            10
LOG_LEVEL                    DEBUG, INFO, WARNING, ERROR                          INFO
REDIS_NODES                  comma-separated host:port seed nodes                 (required)
REDIS_PASSWORD               cluster password (or REDIS_PASSWORD_FILE)            none
REDIS_TIMEOUT                one Redis command's connect/read timeout, seconds    2
REDIS_MAX_CONNECTIONS        Redis commands in flight per worker                  64
REDIS_KEY_PREFIX             key prefix of the reservations                       aeroalpes:reserva:
===========================  ===================================================  ===================

``AEROALPES_THREADS`` and ``AEROALPES_TIMEOUT`` (gunicorn's gthread settings) are gone: one event loop
per worker serves every connection (``AEROALPES_MAX_CONNECTIONS`` bounds them), and a request's time
is bounded by the timeouts above.
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
    max_connections: int = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """What one worker allows its clients (see the module's table)."""

    max_connections: int = 512
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    request_budget: float = 15.0
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 32 * 1024
    max_url_bytes: int = 4096


@dataclass(frozen=True, slots=True)
class Settings:
    redis: RedisSettings
    host: str = "0.0.0.0"
    port: int = 5000
    workers: int = 1
    limits: Limits = Limits()
    grace: float = 10.0
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
        max_connections=env_int(env, "REDIS_MAX_CONNECTIONS", 64, minimum=1, maximum=10000),
    )


def limits_from_env(env: Mapping[str, str]) -> Limits:
    return Limits(
        max_connections=env_int(env, "AEROALPES_MAX_CONNECTIONS", 512, minimum=2, maximum=100000),
        header_timeout=env_float(env, "AEROALPES_HEADER_TIMEOUT", 5.0),
        body_timeout=env_float(env, "AEROALPES_BODY_TIMEOUT", 10.0),
        keepalive_timeout=env_float(env, "AEROALPES_KEEPALIVE_TIMEOUT", 15.0),
        request_budget=env_float(env, "AEROALPES_REQUEST_BUDGET", 15.0),
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
        workers=env_int(env, "AEROALPES_WORKERS", 1, minimum=1, maximum=64),
        limits=limits_from_env(env),
        grace=env_float(env, "AEROALPES_GRACE", 10.0),
        log_level=log_level,
    )
