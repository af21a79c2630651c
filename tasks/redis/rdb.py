"""What an RDB file says about itself (pure): its version, the Redis that wrote it, and how many keys.

A backup records, for each shard, how many keys its RDB holds, and the restore checks that the
master that loaded it holds as many. The count is read from the file, not asked of the instance: a
running instance's DBSIZE moves with every write, the file's count is the snapshot's. Redis writes it
at the start of each database section (``RDB_OPCODE_RESIZEDB``: the database's key count and how many
of those keys expire, taken in the forked child, so exact for the snapshot; src/rdb.c ``rdbSaveDb``).

Layout read (src/rdb.h, src/rdb.c ``rdbLoadRioWithLoadingCtx``): ``REDIS`` + 4 version digits, then
opcodes: ``0xFA`` AUX (two strings: ``redis-ver``, ``ctime``, ``repl-id`` ...), ``0xF5``/``0xF6``
functions (one string), ``0xFE`` SELECTDB (a length), ``0xFB`` RESIZEDB (two lengths), ``0xFF`` EOF.
Lengths: 6, 14, 32 or 64 bits; strings: a length and the bytes, an integer (8/16/32 bits), or LZF
(compressed and plain lengths, then the compressed bytes). A Redis Cluster node has only database 0,
so reading stops at its RESIZEDB; a file with no database section holds no keys.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b"REDIS"
OP_FUNCTION, OP_FUNCTION2 = 0xF6, 0xF5
OP_AUX, OP_RESIZEDB, OP_SELECTDB, OP_EOF = 0xFA, 0xFB, 0xFE, 0xFF
ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF = 0, 1, 2, 3

# The newest RDB version each Redis release writes and loads (src/rdb.h RDB_VERSION): a release refuses
# files of a newer version ("Can't handle RDB format version").
RDB_VERSION_OF = {(6, 0): 9, (6, 2): 9, (7, 0): 10, (7, 2): 11, (7, 4): 12, (8, 0): 12}


class RdbError(ValueError):
    """Not an RDB file, or one this reader cannot follow (the message says where)."""


@dataclass(frozen=True)
class RdbSummary:
    version: int
    keys: int
    expires: int
    aux: dict[str, str] = field(default_factory=dict)

    @property
    def redis_version(self) -> str:
        return self.aux.get("redis-ver", "")


def newest_loadable(redis_version: str) -> int | None:
    """The newest RDB version ``redis_version`` (``7.0.15``) loads, when known."""
    parts = redis_version.split(".")
    try:
        key = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return None
    return RDB_VERSION_OF.get(key)


class _Reader:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise RdbError(f"the file ends early (at byte {self.fh.tell()})")
        return data

    def byte(self) -> int:
        return self.take(1)[0]

    def length(self) -> tuple[int, bool]:
        """(length, is_encoded): the 2 top bits say 6, 14, 32/64 bits, or a special string encoding."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return struct.unpack(">I", self.take(4))[0], False
        if first == 0x81:
            return struct.unpack(">Q", self.take(8))[0], False
        raise RdbError(f"unknown length encoding 0x{first:02x} at byte {self.fh.tell() - 1}")

    def plain_length(self) -> int:
        n, encoded = self.length()
        if encoded:
            raise RdbError(f"a length was expected at byte {self.fh.tell() - 1}")
        return n

    def string(self) -> bytes:
        n, encoded = self.length()
        if not encoded:
            return self.take(n)
        if n == ENC_INT8:
            return str(struct.unpack("b", self.take(1))[0]).encode()
        if n == ENC_INT16:
            return str(struct.unpack("<h", self.take(2))[0]).encode()
        if n == ENC_INT32:
            return str(struct.unpack("<i", self.take(4))[0]).encode()
        if n == ENC_LZF:
            compressed, _plain = self.plain_length(), self.plain_length()
            self.take(compressed)
            return b"<lzf>"
        raise RdbError(f"unknown string encoding {n} at byte {self.fh.tell() - 1}")


def summarize(fh: BinaryIO) -> RdbSummary:
    r = _Reader(fh)
    head = r.take(9)
    if not head.startswith(MAGIC) or not head[5:].isdigit():
        raise RdbError("not an RDB file (no REDIS magic)")
    version = int(head[5:])
    aux: dict[str, str] = {}
    while True:
        op = r.byte()
        if op == OP_AUX:
            key, value = r.string(), r.string()
            aux[key.decode(errors="replace")] = value.decode(errors="replace")
        elif op in (OP_FUNCTION, OP_FUNCTION2):
            r.string()
        elif op == OP_SELECTDB:
            r.plain_length()
        elif op == OP_RESIZEDB:
            return RdbSummary(version, r.plain_length(), r.plain_length(), aux)
        elif op == OP_EOF:
            return RdbSummary(version, 0, 0, aux)
        else:
            raise RdbError(
                f"opcode 0x{op:02x} at byte {fh.tell() - 1} before the key count (not read by nr: "
                "modules or an RDB version it does not know)"
            )


def summarize_file(path: Path) -> RdbSummary:
    with path.open("rb") as fh:
        try:
            return summarize(fh)
        except RdbError as exc:
            raise RdbError(f"{path}: {exc}") from None
