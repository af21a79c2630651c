"""``aeroalpes-api``: the REST service under gunicorn (configuration: see ``config``)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from services import jsonlog
from services.aeroalpes import config
from services.aeroalpes.http import create_app
from services.aeroalpes.repository import RepositorioRedis, cluster_factory
from services.secret import ConfigError

log = logging.getLogger("aeroalpes")


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(settings: config.Settings) -> dict[str, Any]:
    return {
        "bind": _bind(settings.host, settings.port),
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread",
        "timeout": settings.timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "logconfig_dict": jsonlog.dict_config(settings.log_level, settings.secrets()),
        "proc_name": "aeroalpes",
        "control_socket_disable": True,
        # Heartbeat files in memory: works with a read-only root filesystem.
        **({"worker_tmp_dir": "/dev/shm"} if os.path.isdir("/dev/shm") else {}),  # noqa: S108
    }


class AeroAlpesServer(BaseApplication):  # type: ignore[misc]
    """gunicorn started from Python (no command line, no config file)."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        known = self.cfg.settings
        for key, value in gunicorn_options(self.settings).items():
            if key in known:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        # Each worker builds its own app and (lazily) its own cluster client.
        repo = RepositorioRedis(cluster_factory(self.settings.redis), self.settings.redis.key_prefix)
        return create_app(repo)


def main() -> None:
    try:
        settings = config.from_env()
    except ConfigError as exc:
        jsonlog.configure()
        log.error("invalid configuration", extra={"error": str(exc)})
        sys.exit(2)
    jsonlog.configure(settings.log_level, settings.secrets())
    log.info(
        "starting",
        extra={
            "port": settings.port,
            "workers": settings.workers,
            "threads": settings.threads,
            "redis_nodes": [f"{h}:{p}" for h, p in settings.redis.nodes],
        },
    )
    AeroAlpesServer(settings).run()


if __name__ == "__main__":
    main()
