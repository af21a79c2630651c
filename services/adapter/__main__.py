"""``aeroalpes-adapter``: serve vuelos.Vuelos until SIGTERM/SIGINT, then shut down gracefully."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from services import jsonlog
from services.adapter import config
from services.secret import ConfigError

log = logging.getLogger("aeroalpes.adapter")


def main() -> None:
    try:
        settings = config.from_env()
        jsonlog.configure(settings.log_level)
    except (ConfigError, ValueError) as exc:
        jsonlog.configure()
        log.error("invalid configuration", extra={"error": str(exc)})
        sys.exit(2)

    try:
        from services.adapter.server import BindError, start
    except ImportError as exc:  # the tool's install (pipx install .) has no server libraries
        log.error(
            "missing library", extra={"error": str(exc), "fix": "pip install 'nr-orchestrator[services]'"}
        )
        sys.exit(2)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = start(settings)
    except BindError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        sys.exit(1)
    while not stop.wait(3600):
        pass
    server.stop(settings.grace)
    log.info("stopped")


if __name__ == "__main__":
    main()
