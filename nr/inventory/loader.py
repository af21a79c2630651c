"""Read one inventory YAML file, refusing what would hurt: duplicate keys, alias bombs, huge or
non-UTF-8 files. Every error names the file (and the line when YAML knows it). A file read before
with the same bytes comes from :mod:`nr.inventory.parse_cache` (no YAML parser is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nr.errors import InventoryError
from nr.inventory import parse_cache

MAX_BYTES = 4 * 1024 * 1024  # an inventory of a thousand hosts is well under 1 MiB

__all__ = ["InventoryError", "load_yaml"]


def _read(path: Path) -> tuple[bytes, str]:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InventoryError(
                [f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB; not an inventory file"]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        line = raw[: exc.start].count(b"\n") + 1
        raise InventoryError(
            [f"{path}: line {line}: not UTF-8 text (byte 0x{bad} at offset {exc.start}); save it as UTF-8"]
        ) from None


def load_yaml(path: Path, *, required: bool) -> Any:
    """Read one YAML file; a missing optional file reads as ``{}``. Errors name the file and line."""
    if not path.exists():
        if required:
            raise InventoryError([f"{path}: file not found"])
        return {}
    raw, text = _read(path)
    data = parse_cache.lookup(raw)
    if data is parse_cache.MISS:
        from nr.inventory.yaml_parse import parse

        data = parse(path, text)
        parse_cache.store(raw, data)
    return {} if data is None else data
