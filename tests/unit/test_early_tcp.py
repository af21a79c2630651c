"""nr.early_tcp: the TCP connect dialled while nr imports its SSH libraries is the one Paramiko uses; a
failed dial is that host's connection error; a host ssh_config moves is connected where it says."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from nr import early_tcp
from nr.connection import FabricConnection
from nr.ssh_trust import ConnectionFailed
from tests.unit.test_connection import connect, serve
from tests.unit.test_ssh_keys import write_key


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, paramiko.PKey]:
    write_key(tmp_path / "id")
    write_key(tmp_path / "host")
    return tmp_path / "id", paramiko.PKey.from_path(tmp_path / "host")


@pytest.fixture(autouse=True)
def _none_left() -> Iterator[None]:
    yield
    early_tcp._dialled.clear()


def test_the_dialled_socket_carries_the_connection(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> None:
    host = serve("echo", keys[1])  # its relay accepts one TCP connection: a second connect would hang
    early_tcp.dial("127.0.0.1", host.port, 5)
    dialled = early_tcp._dialled[("127.0.0.1", host.port)]
    conn = connect(host, keys[0], tmp_path)
    try:
        assert conn.connection.run("true").stdout == "ok\n"
        assert conn.connection.conn.client.get_transport().sock is dialled.result()
        assert early_tcp.take("127.0.0.1", host.port) is None  # used once
    finally:
        conn.close()


def test_a_refused_dial_is_the_hosts_connection_error(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    """Its error is reported as paramiko's own would be, and nothing connects a second time."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed below: nothing listens there
    early_tcp.dial("127.0.0.1", port, 5)
    early_tcp._dialled[("127.0.0.1", port)]._done.wait(5)
    with socket.create_server(("127.0.0.1", port)) as listener:  # listening now: a second connect would land
        listener.settimeout(0.3)
        conn = FabricConnection()
        with pytest.raises(ConnectionFailed, match=rf"cannot connect to 127.0.0.1:{port}: .*[Rr]efused"):
            conn.open(
                "127.0.0.1", "root", None, port, None, {"key_filename": str(keys[0]), "accept_new": True}
            )
        with pytest.raises(TimeoutError):
            listener.accept()


def test_a_dial_the_connection_cannot_use_is_closed(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> None:
    """The host's connection fails before connecting (its key file is missing): the early TCP connect is
    closed (the host sees its end), not left open to the host's sshd until nr exits."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        early_tcp.dial("127.0.0.1", port, 5)
        accepted, _ = listener.accept()
        with accepted:
            with pytest.raises(ConnectionFailed, match="no such file"):
                FabricConnection().open(
                    "127.0.0.1", "root", None, port, None, {"key_filename": str(tmp_path / "x")}
                )
            accepted.settimeout(5)
            assert accepted.recv(100) == b""  # closed by nr, nothing sent
    assert early_tcp._dialled == {}


def run_through_ssh_config(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path, port: int, ssh_config: str, address: str, at: int | None
) -> None:
    """Connect to the inventory's ``address``:``at`` with ``ssh_config`` sending it to the host serving on
    127.0.0.1:``port``, and run a command there."""
    (tmp_path / "ssh_config").write_text(ssh_config)
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {keys[1].get_name()} {keys[1].get_base64()}\n")
    extras = {
        "key_filename": str(keys[0]),
        "known_hosts": str(tmp_path / "known_hosts"),
        "ssh_config": str(tmp_path / "ssh_config"),
    }
    conn = FabricConnection()
    conn.open(address, "root", None, at, None, extras)
    try:
        assert conn.connection.run("true").stdout == "ok\n"
    finally:
        conn.close()


def test_a_host_ssh_config_moves_is_connected_where_it_says(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    host = serve("echo", keys[1])
    early_tcp.dial("vm-alias.invalid", 22, 2)  # the inventory's address: cannot even be resolved
    config = f"Host vm-alias.invalid\n  HostName 127.0.0.1\n  Port {host.port}\n"
    run_through_ssh_config(keys, tmp_path, host.port, config, "vm-alias.invalid", None)


def test_a_dial_ssh_config_sends_elsewhere_is_closed(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    host = serve("echo", keys[1])
    with socket.create_server(("127.0.0.2", host.port)) as listener:  # the inventory's address
        early_tcp.dial("127.0.0.2", host.port, 5)
        accepted, _ = listener.accept()
        with accepted:
            config = "Host 127.0.0.2\n  HostName 127.0.0.1\n"
            run_through_ssh_config(keys, tmp_path, host.port, config, "127.0.0.2", host.port)  # not to it
            accepted.settimeout(5)
            assert accepted.recv(100) == b""  # the dial to the inventory's address is closed, unused
