"""Container HEALTHCHECK: ``python -m services.aeroalpes.healthcheck`` exits 0 when /health answers up."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def check(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200 and bool(json.load(response).get("status") == "up")
    except (OSError, ValueError):
        return False


def main() -> int:
    port = os.environ.get("PORT", "5000")
    url = sys.argv[1] if len(sys.argv) > 1 else f"http://127.0.0.1:{port}/health"
    healthy = check(url)
    print("healthy" if healthy else f"unhealthy: {url}")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
