"""Where nr keeps what it can fetch or compute again: ``$XDG_CACHE_HOME/nr`` (``~/.cache/nr``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nr"
