"""``aeroalpes-api``: the REST service (configuration: see ``config``; process model: ``workers``)."""

from __future__ import annotations

import logging
import sys

from services import jsonlog
from services.aeroalpes import config
from services.secret import ConfigError

log = logging.getLogger("aeroalpes")


def main() -> None:
    try:
        settings = config.from_env()
    except ConfigError as exc:
        jsonlog.configure()
        log.error("invalid configuration", extra={"error": str(exc)})
        sys.exit(2)
    jsonlog.configure(settings.log_level, settings.secrets())
    try:
        from services.aeroalpes.workers import bind, run_worker, supervise
    except ImportError as exc:  # the tool's install (pipx install .) has no server libraries
        log.error(
            "missing library", extra={"error": str(exc), "fix": "pip install 'nr-orchestrator[services]'"}
        )
        sys.exit(2)
    try:
        sock = bind(settings)
    except OSError as exc:
        log.error("cannot listen", extra={"host": settings.host, "port": settings.port, "error": str(exc)})
        sys.exit(1)
    limits = settings.limits
    log.info(
        "starting",
        extra={
            "port": settings.port,
            "workers": settings.workers,
            "max_connections": limits.max_connections,
            "request_budget": limits.request_budget,
            "redis_nodes": [f"{h}:{p}" for h, p in settings.redis.nodes],
        },
    )
    if settings.workers == 1:
        run_worker(settings, sock)
    else:
        supervise(settings, sock)
    log.info("stopped")


if __name__ == "__main__":
    main()
