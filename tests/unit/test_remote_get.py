"""Fetching files from a host: ``SshRemote.get`` against a real SSH/SFTP peer in this process (paramiko's
server side, serving a folder), and :func:`nr.ops.fetch.fetch` (stage as root, SFTP, check) against a
scripted host: a file arrives byte for byte, a missing or corrupt one is named and never left behind,
and a host that dies mid-transfer is reported lost."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from nr import interrupt
from nr.connection import FabricConnection, HostLost
from nr.errors import NrError
from nr.machines.lab import new_keypair
from nr.ops.fetch import fetch, stage_script
from tests.fakes.remote import Reply, ScriptedRemote


class Handle(paramiko.SFTPHandle):
    def __init__(self, path: Path, die_after: int | None, transport: paramiko.Transport) -> None:
        super().__init__(0)
        self.readfile = path.open("rb")
        self.die_after = die_after
        self.transport = transport
        self.sent = 0

    def read(self, offset: int, length: int) -> bytes | int:
        if self.die_after is not None and self.sent >= self.die_after:
            self.transport.sock.close()  # the host dies mid-transfer
            return paramiko.SFTP_FAILURE
        self.readfile.seek(offset)
        data = self.readfile.read(length)
        self.sent += len(data)
        return data

    def stat(self) -> paramiko.SFTPAttributes | int:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


class Folder(paramiko.SFTPServerInterface):
    """Serves ``root`` read-only; ``die_after`` bytes into a read, the connection drops."""

    root: Path
    die_after: int | None = None

    def __init__(self, server: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.transport: paramiko.Transport = server.transport

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        p = self._path(path)
        if not p.exists():
            return paramiko.SFTP_NO_SUCH_FILE
        return paramiko.SFTPAttributes.from_stat(p.stat())

    lstat = stat

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        p = self._path(path)
        if not p.exists():
            return paramiko.SFTP_NO_SUCH_FILE
        return Handle(p, self.die_after, self.transport)

    def canonicalize(self, path: str) -> str:
        return "/" + path.lstrip("/")


class Peer(paramiko.ServerInterface):
    def __init__(self, transport: paramiko.Transport) -> None:
        self.transport = transport

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED


def serve(root: Path, host_key: paramiko.PKey, die_after: int | None = None) -> int:
    folder = type("ServedFolder", (Folder,), {"root": root, "die_after": die_after})
    sock = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = sock.accept()
        t = paramiko.Transport(conn)
        t.add_server_key(host_key)
        t.set_subsystem_handler("sftp", paramiko.SFTPServer, folder)
        t.start_server(server=Peer(t))

    threading.Thread(target=accept, daemon=True).start()
    port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def peer(tmp_path: Path) -> tuple[Path, Path, paramiko.PKey]:
    client, _ = new_keypair()
    key = tmp_path / "id"
    key.write_bytes(client)
    key.chmod(0o600)
    server, _ = new_keypair()
    (tmp_path / "host").write_bytes(server)
    served = tmp_path / "served"
    served.mkdir()
    return key, served, paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "host"))


def connect(port: int, key: Path, host_key: paramiko.PKey, tmp_path: Path) -> FabricConnection:
    return open_with(port, key, host_key, tmp_path)


def test_get_copies_a_file_byte_for_byte(peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path) -> None:
    key, served, host_key = peer
    data = os.urandom(3 * 1024 * 1024 + 17)
    (served / ".nr-upload-get-1").write_bytes(data)
    conn = connect(serve(served, host_key), key, host_key, tmp_path)
    try:
        conn.connection.get(".nr-upload-get-1", tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == data
        assert conn.connection.stats.transfers == 1
    finally:
        conn.close()


def test_a_missing_remote_file_is_named_and_nothing_is_left_here(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path
) -> None:
    key, served, host_key = peer
    conn = connect(serve(served, host_key), key, host_key, tmp_path)
    try:
        with pytest.raises(NrError, match=r"copying nope to .*out failed") as err:
            conn.connection.get("nope", tmp_path / "out")
        assert not isinstance(err.value, HostLost)
        assert not (tmp_path / "out").exists()
    finally:
        conn.close()


def test_a_host_that_dies_mid_transfer_is_lost_and_the_partial_copy_removed(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path
) -> None:
    key, served, host_key = peer
    (served / "big").write_bytes(os.urandom(2 * 1024 * 1024))
    conn = connect(serve(served, host_key, die_after=64 * 1024), key, host_key, tmp_path)
    escaped: list[BaseException | None] = []
    hook, threading.excepthook = threading.excepthook, lambda args: escaped.append(args.exc_value)
    try:
        with pytest.raises(HostLost, match=r"the download of big was cut short"):
            conn.connection.get("big", tmp_path / "out")
        assert not (tmp_path / "out").exists()
    finally:
        conn.close()
        for t in threading.enumerate():  # Paramiko's read-ahead thread of that file
            if "_prefetch_thread" in t.name:
                t.join(10)
        threading.excepthook = hook
    assert escaped == []  # the lost connection is nr's error above, not a traceback from a thread


# -- fetch: stage as root, SFTP, check ------------------------------------------------------------------
def staging(remote: ScriptedRemote, content: bytes, *, corrupt: bool = False) -> None:
    """The host answers the staging script with the staged copy's sha256 and size, and serves it."""

    def stage(script: str) -> str:
        name = re.search(r"cp \S+ (\S+)", script)
        assert name
        remote.files[name.group(1)] = content + (b"x" if corrupt else b"")
        return f"{hashlib.sha256(content).hexdigest()}\n{len(content)}\n"

    remote.expect(Reply("umask 077", stage), Reply("rm -f .nr-upload-get-"))


def test_fetch_stages_as_root_copies_and_removes_the_staged_file(tmp_path: Path) -> None:
    remote = ScriptedRemote("vm1")
    staging(remote, b"RDB data")
    got = fetch(remote, "/var/lib/redis/7003/dump-7003.rdb", tmp_path / "x" / "shard.rdb")
    assert got.local.read_bytes() == b"RDB data" and got.size == 8
    assert oct(got.local.stat().st_mode & 0o777) == "0o600"
    staged = remote.gets[0][0]
    assert staged.startswith(".nr-upload-get-")  # in the login user's home, cleaned like uploads
    assert remote.scripts[-1] == f"rm -f {staged}" and remote.unused() == []


def test_fetch_refuses_a_corrupt_copy_and_keeps_nothing(tmp_path: Path) -> None:
    remote = ScriptedRemote("vm1")
    staging(remote, b"RDB data", corrupt=True)
    with pytest.raises(NrError, match=r"vm1: the copy of /data/x is corrupt"):
        fetch(remote, "/data/x", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_fetch_names_a_missing_file_and_its_host(tmp_path: Path) -> None:
    remote = ScriptedRemote("vm2", [Reply("umask 077", stderr="/data/x: no such file", exited=3)])
    with pytest.raises(NrError, match=r"^vm2: cannot read /data/x: /data/x: no such file$"):
        fetch(remote, "/data/x", tmp_path / "x")
    assert remote.gets == []


def test_the_staging_script_really_stages_a_readable_copy(tmp_path: Path) -> None:
    import subprocess

    src = tmp_path / "src"
    src.write_bytes(b"abc")
    src.chmod(0o600)
    out = subprocess.run(
        ["sh", "-c", stage_script(str(src), "staged")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    digest, size = out.stdout.split()
    assert digest == hashlib.sha256(b"abc").hexdigest() and size == "3"
    assert (tmp_path / "staged").read_bytes() == b"abc"
    assert oct((tmp_path / "staged").stat().st_mode & 0o777) == "0o600"
    missing = subprocess.run(
        ["sh", "-c", stage_script(str(tmp_path / "nope"), "s")], cwd=tmp_path, check=False
    )
    assert missing.returncode == 3


# -- sshd with MaxSessions 1: the SFTP session Fabric keeps open must not starve commands ---------------
class OneSession(Peer):
    """sshd with ``MaxSessions 1``: a session asked for while one is open is refused, as OpenSSH refuses it
    (reason SSH2_OPEN_CONNECT_FAILED: serverloop.c, session.c); commands answer "ok" after ``hold`` s."""

    hold = 0.0

    def __init__(self, transport: paramiko.Transport) -> None:
        super().__init__(transport)
        self.refused = 0

    def check_channel_request(self, kind: str, chanid: int) -> int:
        channels = self.transport._channels.values()  # type: ignore[attr-defined]
        if any(not ch.closed for ch in channels):  # the new one is not in the map yet
            self.refused += 1
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._exec, args=(channel,), daemon=True).start()
        return True

    def _exec(self, channel: paramiko.Channel) -> None:
        while channel.recv(65536):
            pass
        time.sleep(self.hold)
        with contextlib.suppress(OSError):  # the client may have given up meanwhile
            channel.sendall(b"ok\n")
            channel.send_exit_status(0)
        channel.close()


def serve_one_session(root: Path, host_key: paramiko.PKey, hold: float = 0.0) -> tuple[int, list[OneSession]]:
    folder = type("ServedFolder", (Folder,), {"root": root})
    peer = type("Peer", (OneSession,), {"hold": hold})
    sock = socket.create_server(("127.0.0.1", 0))
    peers: list[OneSession] = []

    def accept() -> None:
        conn, _ = sock.accept()
        t = paramiko.Transport(conn)
        t.add_server_key(host_key)
        t.set_subsystem_handler("sftp", paramiko.SFTPServer, folder)
        peers.append(peer(t))
        t.start_server(server=peers[-1])

    threading.Thread(target=accept, daemon=True).start()
    return sock.getsockname()[1], peers


def test_a_command_after_a_copy_gets_the_only_session(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path
) -> None:
    """Fabric keeps its SFTP session open after a copy: with MaxSessions 1 every later command was refused
    ("sshd refused to open a session"). The idle SFTP session is closed for it, and opened again."""
    key, served, host_key = peer
    (served / "f").write_bytes(b"data")
    port, peers = serve_one_session(served, host_key)
    conn = connect(port, key, host_key, tmp_path)
    try:
        conn.connection.get("f", tmp_path / "one")
        assert conn.connection.run("true").stdout == "ok\n"
        conn.connection.get("f", tmp_path / "two")
        assert conn.connection.run("true").stdout == "ok\n"
        assert (tmp_path / "two").read_bytes() == b"data" and peers[0].refused == 2
    finally:
        conn.close()


def open_with(
    port: int, key: Path, host_key: paramiko.PKey, tmp_path: Path, **extras: Any
) -> FabricConnection:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    conn = FabricConnection()
    conn.open(
        "127.0.0.1", "nr", None, port, None, {"key_filename": str(key), "known_hosts": str(known), **extras}
    )
    return conn


@contextlib.contextmanager
def session_taken(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path, hold: float, **extras: Any
) -> Iterator[tuple[FabricConnection, OneSession, list[BaseException]]]:
    """A host allowing one session, a file ``f`` on it, and a command holding that session for ``hold``
    seconds (what it raised, if anything, in the list) while the body runs."""
    key, served, host_key = peer
    (served / "f").write_bytes(b"data")
    port, peers = serve_one_session(served, host_key, hold=hold)
    conn = open_with(port, key, host_key, tmp_path, **extras)
    raised: list[BaseException] = []

    def command() -> None:
        try:
            conn.connection.run("true", timeout=10)
        except NrError as exc:
            raised.append(exc)

    running = threading.Thread(target=command)
    try:
        running.start()
        time.sleep(0.2)  # the command holds the only session
        yield conn, peers[0], raised
        running.join(10)
    finally:
        interrupt.CANCELLED.clear()
        conn.close()


def test_a_copy_waits_for_the_running_command_to_end(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path
) -> None:
    with session_taken(peer, tmp_path, hold=0.5) as (conn, host, raised):
        started = time.monotonic()
        conn.connection.get("f", tmp_path / "out")
        assert time.monotonic() - started >= 0.2 and (tmp_path / "out").read_bytes() == b"data"
        assert host.refused >= 1
    assert raised == []


def test_a_copy_that_finds_no_free_session_in_time_says_so(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path
) -> None:
    with session_taken(peer, tmp_path, hold=3.0, command_timeout=1) as (conn, _, _):
        started = time.monotonic()
        with pytest.raises(NrError, match=r"no SSH session free for a file copy within 1 s") as err:
            conn.connection.get("f", tmp_path / "out")
        assert time.monotonic() - started < 2.5 and not isinstance(err.value, HostLost)  # waited once
        assert not (tmp_path / "out").exists()


def test_ctrl_c_while_a_copy_waits_for_a_session_is_an_interruption(
    peer: tuple[Path, Path, paramiko.PKey], tmp_path: Path
) -> None:
    with session_taken(peer, tmp_path, hold=3.0) as (conn, _, raised):
        threading.Timer(0.3, interrupt.CANCELLED.set).start()
        with pytest.raises(interrupt.Interrupted, match="interrupted"):
            conn.connection.get("f", tmp_path / "out")
    assert [type(e) for e in raised] == [interrupt.Interrupted]  # the command is interrupted too
