"""Adapter configuration, read only from the environment.

==================  =====================================================  =====================
variable            meaning                                                default
==================  =====================================================  =====================
PORT                gRPC port                                              50051
HOST                bind address                                           0.0.0.0
AEROALPES_URL       base URL of the AeroAlpes REST API                     http://aeroalpes:5000
AEROALPES_TIMEOUT   REST timeout (s) when the gRPC client set no deadline  20 (> AeroAlpes's
                                                                           request budget, 15)
ADAPTER_WORKERS     keep-alive connections kept open to AeroAlpes          16
                    (RPCs are served concurrently on one event loop)
ADAPTER_GRACE       seconds in-flight RPCs get on SIGTERM                  10
LOG_LEVEL           DEBUG, INFO, WARNING, ERROR                            INFO
==================  =====================================================  =====================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.envconf import env_float, env_int, env_str
from services.secret import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    aeroalpes_url: str = "http://aeroalpes:5000"
    host: str = "0.0.0.0"
    port: int = 50051
    rest_timeout: float = 20.0
    workers: int = 16
    grace: float = 10.0
    log_level: str = "INFO"

    @property
    def bind(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"AEROALPES_URL must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    return Settings(
        aeroalpes_url=check_url(env_str(env, "AEROALPES_URL", "http://aeroalpes:5000")),
        host=env_str(env, "HOST", "0.0.0.0"),
        port=env_int(env, "PORT", 50051, minimum=1, maximum=65535),
        rest_timeout=env_float(env, "AEROALPES_TIMEOUT", 20.0),
        workers=env_int(env, "ADAPTER_WORKERS", 16, minimum=1, maximum=1024),
        grace=env_float(env, "ADAPTER_GRACE", 10.0),
        log_level=env_str(env, "LOG_LEVEL", "INFO").upper(),
    )
