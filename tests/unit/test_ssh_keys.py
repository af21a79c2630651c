"""nr.ssh_keys: the inventory's key parsed once per run, and paramiko's MAC checks in C, still strict."""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from paramiko.packet import Packetizer

from nr import ssh_keys
from tests.unit.test_connection import connect, serve


def paramiko_loop(a: bytes | str, b: bytes | str) -> bool:
    """paramiko's own comparison (util.py), as it answers."""
    if len(a) != len(b):
        return False
    return not any((x if isinstance(x, int) else ord(x)) ^ (y if isinstance(y, int) else ord(y))
                   for x, y in zip(a, b, strict=True))  # fmt: skip


def samples() -> list[tuple[bytes, bytes]]:
    rng = random.Random(7)
    pairs = [
        (b"", b""),
        (b"a", b""),
        (b"abc", b"abd"),
        (b"abc", b"abcd"),
        (b"\x00" * 32, b"\x00" * 31 + b"\x01"),
    ]
    for _ in range(200):
        a = rng.randbytes(rng.randrange(0, 40))
        b = a if rng.random() < 0.3 else bytearray(a)
        if b is not a and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        pairs.append((a, bytes(b)))
    return pairs


def test_bytes_and_text_compare_as_paramiko_compares_them() -> None:
    for a, b in samples():
        assert ssh_keys._equal(a, b) is paramiko_loop(a, b), (a, b)
        text_a, text_b = a.decode("latin-1") + "é", b.decode("latin-1") + "é"
        assert ssh_keys._equal(text_a, text_b) is paramiko_loop(text_a, text_b), (a, b)
    assert ssh_keys._equal("|1|é", "|1|e") is False and ssh_keys._equal("ü", "ü") is True


def test_paramiko_uses_the_comparison_in_c() -> None:
    import nr.connection  # noqa: F401 (installs it)

    assert paramiko.util.constant_time_bytes_eq is ssh_keys._equal
    assert paramiko.hostkeys.constant_time_bytes_eq is ssh_keys._equal  # type: ignore[attr-defined]


def packetizers() -> tuple[Packetizer, socket.socket, socket.socket, Packetizer]:
    """A sender and a receiver with AES-CTR and HMAC-SHA256, and the wire between them in our hands."""
    out_a, out_b = socket.socketpair()
    in_a, in_b = socket.socketpair()
    key, iv, mac_key = b"k" * 16, b"i" * 16, b"m" * 32
    tx, rx = Packetizer(out_a), Packetizer(in_b)
    aes = Cipher(algorithms.AES(key), modes.CTR(iv))
    tx.set_outbound_cipher(aes.encryptor(), 16, hashlib.sha256, 32, mac_key, sdctr=True)
    rx.set_inbound_cipher(aes.decryptor(), 16, hashlib.sha256, 32, mac_key)
    return tx, out_b, in_a, rx


@pytest.mark.parametrize("tamper", [False, True])
def test_a_packet_whose_mac_does_not_match_is_refused(tamper: bool) -> None:
    import nr.connection  # noqa: F401 (the comparison in C)

    tx, wire_out, wire_in, rx = packetizers()
    message = paramiko.Message()
    message.add_byte(b"\x5e")  # MSG_CHANNEL_DATA
    message.add_string(b"x" * 100)
    tx.send_message(message)
    raw = bytearray(wire_out.recv(65536))
    if tamper:
        raw[-1] ^= 1  # the MAC's last byte
    wire_in.sendall(bytes(raw))
    if tamper:
        with pytest.raises(paramiko.SSHException, match="Mismatched MAC"):
            rx.read_message()
    else:
        _, got = rx.read_message()
        assert got.get_string() == b"x" * 100


def test_a_hashed_known_hosts_name_matches_its_host_only(tmp_path: Path) -> None:
    import nr.connection  # noqa: F401

    write_key(tmp_path / "id")
    key = paramiko.PKey.from_path(tmp_path / "id")
    hashed = paramiko.HostKeys.hash_host("192.0.2.7")
    (tmp_path / "kh").write_text(f"{hashed} {key.get_name()} {key.get_base64()}\n")
    known = paramiko.HostKeys(str(tmp_path / "kh"))
    found = known.lookup("192.0.2.7")
    assert found is not None and found[key.get_name()] == key
    assert known.lookup("192.0.2.70") is None and known.lookup("192.0.2.") is None


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, paramiko.PKey]:
    """The client's key file and the server's host key."""
    write_key(tmp_path / "id")
    write_key(tmp_path / "host")
    return tmp_path / "id", paramiko.PKey.from_path(tmp_path / "host")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each path paramiko parses a private key from (PKey.from_path), from a clean cache."""
    monkeypatch.setattr(ssh_keys, "_loaded", {})
    seen: list[str] = []
    real = paramiko.PKey.from_path

    def counting(path: Any, password: Any = None) -> paramiko.PKey:
        seen.append(str(path))
        return real(path, password)

    monkeypatch.setattr(paramiko.PKey, "from_path", staticmethod(counting))
    return seen


def test_three_connections_parse_the_key_once_and_authenticate_with_it(
    keys: tuple[Path, paramiko.PKey],
    tmp_path: Path,
    loads: list[str],
) -> None:
    public = paramiko.PKey.from_path(keys[0]).get_base64()
    loads.clear()
    for _ in range(3):
        host = serve("echo", keys[1])
        conn = connect(host, keys[0], tmp_path)
        try:
            assert conn.connection.run("true").stdout == "ok\n"
        finally:
            conn.close()
        assert host.peers[0].client_keys == [public]
    assert loads == [str(keys[0])]


def write_key(path: Path, password: bytes | None = None) -> None:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())  # fmt: skip
    path.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))  # fmt: skip
    path.chmod(0o600)


def test_the_first_key_goes_in_loaded_and_the_others_stay_named(tmp_path: Path, loads: list[str]) -> None:
    write_key(tmp_path / "id")
    kwargs: dict[str, Any] = {"key_filename": [str(tmp_path / "id"), "/etc/ssh_config/identity"]}
    ssh_keys.preload(kwargs)
    assert isinstance(kwargs["pkey"], paramiko.Ed25519Key) and kwargs["key_filename"] == [
        "/etc/ssh_config/identity"
    ]
    again: dict[str, Any] = {"key_filename": str(tmp_path / "id")}
    ssh_keys.preload(again)
    assert again == {"pkey": kwargs["pkey"]} and loads == [str(tmp_path / "id")]


def test_a_changed_key_file_is_parsed_again(tmp_path: Path, loads: list[str]) -> None:
    write_key(tmp_path / "id")
    first = ssh_keys.load_once(tmp_path / "id")
    write_key(tmp_path / "id")
    second = ssh_keys.load_once(tmp_path / "id")
    assert first is not None and second is not None and first != second and len(loads) == 2


@pytest.mark.parametrize("kind", ["encrypted", "garbage", "missing"])
def test_a_key_paramiko_cannot_load_alone_is_left_to_it_by_name(
    tmp_path: Path, loads: list[str], kind: str
) -> None:
    path = tmp_path / "id"
    if kind == "encrypted":
        write_key(path, b"secret")
    elif kind == "garbage":
        path.write_text("not a key\n")
    kwargs: dict[str, Any] = {"key_filename": [str(path)]}
    ssh_keys.preload(kwargs)
    assert kwargs == {"key_filename": [str(path)]}
