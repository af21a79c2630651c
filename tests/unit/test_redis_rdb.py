"""Reading an RDB file's version, writer and key count (tasks/redis/rdb.py): files written by a real
redis-server 7.0 (fixtures: 4 keys with one expiring and a Lua function library; an empty database),
hand-built files for every length and string encoding, and the files it must refuse."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from tasks.redis.rdb import RdbError, newest_loadable, summarize, summarize_file

FIXTURES = Path(__file__).parent / "fixtures" / "redis"


def test_a_file_written_by_redis_7_0_counts_its_keys_and_expires() -> None:
    s = summarize_file(FIXTURES / "small.rdb")  # SET a, SET b (300 bytes), SET c EX, RPUSH l; FUNCTION LOAD
    assert (s.version, s.keys, s.expires, s.redis_version) == (10, 4, 1, "7.0.15")


def test_an_empty_database_holds_no_keys() -> None:
    s = summarize_file(FIXTURES / "empty.rdb")
    assert (s.version, s.keys, s.expires) == (10, 0, 0)


def length(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 2**32:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def string(s: bytes) -> bytes:
    return length(len(s)) + s


@pytest.mark.parametrize("keys", [0, 5, 63, 64, 16383, 16384, 2**32 - 1, 2**32 + 5])
def test_every_length_encoding(keys: int) -> None:
    body = (
        b"REDIS0011"
        + b"\xfa"
        + string(b"redis-ver")
        + string(b"7.2.4")
        + b"\xfe\x00\xfb"
        + length(keys)
        + length(3)
    )
    s = summarize(io.BytesIO(body + b"\x00"))
    assert (s.version, s.keys, s.expires, s.redis_version) == (11, keys, 3, "7.2.4")


def test_integer_and_lzf_strings_in_aux_fields_are_skipped() -> None:
    aux = (
        b"\xfa" + string(b"ctime") + b"\xc2" + struct.pack("<i", 1700000000)  # 32-bit integer string
        + b"\xfa" + string(b"bits") + b"\xc0\x40"  # 8-bit integer
        + b"\xfa" + string(b"x") + b"\xc1" + struct.pack("<h", -7)  # 16-bit integer
        + b"\xfa" + string(b"big") + b"\xc3" + length(4) + length(100) + b"\x01\x02\x03\x04"  # LZF
        + b"\xf5" + string(b"#!lua name=lib ...")  # a function library
    )  # fmt: skip
    s = summarize(io.BytesIO(b"REDIS0010" + aux + b"\xfe\x00\xfb" + length(12) + length(0)))
    assert s.keys == 12 and s.aux["ctime"] == "1700000000" and s.aux["bits"] == "64" and s.aux["x"] == "-7"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"NOTRDB0010", "not an RDB file"),
        (b"REDIS0010\xfa\x09redis", "the file ends early"),
        (b"REDIS0010\xf7\x00", "opcode 0xf7 at byte 9 before the key count"),
        (b"REDIS0010\xfe\xc0", "a length was expected"),
    ],
)
def test_files_it_cannot_read_are_refused_saying_where(data: bytes, message: str) -> None:
    with pytest.raises(RdbError, match=message):
        summarize(io.BytesIO(data))


def test_the_newest_loadable_version_of_a_release() -> None:
    assert (
        newest_loadable("7.0.15") == 10 and newest_loadable("7.2.4") == 11 and newest_loadable("6.2.1") == 9
    )
    assert newest_loadable("9.9.9") is None and newest_loadable("garbage") is None
