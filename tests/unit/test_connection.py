"""The SSH connection against a real SSH peer in this process (paramiko's server side) behind a TCP
relay that can go silent: what nr says, and how fast, when a host dies, freezes or is interrupted.

The lab tests do the same with real sshd hosts (docker pause, Ctrl-C to `nr run`); here each fault
is exact and fast: a host that closes the connection during authentication, one that stops
answering mid-command (the relay drops everything, as a cut cable or a paused VM does), one that
dies mid-command, and a Ctrl-C while a command runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from nr import interrupt
from nr.connect_options import nodelay_transport
from nr.connection import FabricConnection, HostLost
from nr.errors import NrError
from nr.machines.lab import new_keypair
from nr.ssh_trust import ConnectionFailed, HostKeyRejected


class Peer(paramiko.ServerInterface):
    """One SSH server connection; ``mode`` says how it behaves."""

    def __init__(self, mode: str, transport: paramiko.Transport) -> None:
        self.mode = mode
        self.transport = transport
        self.sessions = 0  # open now ("max2": sshd with MaxSessions 2)
        self.most = 0
        self.lock = threading.Lock()
        self.together = threading.Barrier(4, timeout=5)  # "together": four commands must run at once
        self.client_keys: list[str] = []  # the public keys the client authenticated with

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.client_keys.append(key.get_base64())
        if self.mode == "drop-during-auth":
            self.transport.close()  # the host died (or sshd was killed) during the handshake
            return paramiko.AUTH_FAILED
        return paramiko.AUTH_FAILED if self.mode == "reject" else paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        with self.lock:
            # past MaxSessions, OpenSSH's session_new finds no slot and server_input_channel_open answers
            # "open failed", reason SSH2_OPEN_CONNECT_FAILED (serverloop.c, session.c)
            if (self.mode == "max2" and self.sessions >= 2) or self.mode == "no-sessions":
                return paramiko.OPEN_FAILED_CONNECT_FAILED
            self.sessions += 1
            self.most = max(self.most, self.sessions)
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._exec, args=(channel,), daemon=True).start()
        return True

    def _exec(self, channel: paramiko.Channel) -> None:
        while channel.recv(65536):  # the script, until EOF
            pass
        if self.mode == "slow":
            time.sleep(3)  # longer than the keepalive window of the test: answering keepalives meanwhile
        if self.mode in ("together", "max2"):
            try:
                if self.mode == "together":
                    self.together.wait()
                else:
                    time.sleep(0.1)
                channel.sendall(b"ok\n")
                channel.send_exit_status(0)
            except threading.BrokenBarrierError:
                channel.send_exit_status(1)
            with self.lock:  # freed before the client sees the close
                self.sessions -= 1
            channel.close()
        if self.mode in ("echo", "slow"):
            channel.sendall(b"ok\n")
            channel.send_exit_status(0)
            channel.close()
        elif self.mode == "late-status":  # EOF first, the exit status a moment later (sshd may)
            channel.sendall(b"ok\n")
            channel.shutdown_write()
            time.sleep(0.3)
            channel.send_exit_status(0)
            channel.close()
        elif self.mode == "die":
            time.sleep(0.3)
            self.transport.sock.close()  # killed: the connection just ends
        # "hang": a command that runs for a long time


@dataclass
class Host:
    """An SSH server on loopback behind a relay (``port``) that ``freeze()`` makes silent."""

    port: int
    host_key: paramiko.PKey
    frozen: threading.Event
    peers: list[Peer]

    def freeze(self) -> None:
        self.frozen.set()


def _pump(src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            while frozen.is_set():  # a silent host: nothing goes through, nothing is refused
                time.sleep(0.05)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def serve(mode: str, host_key: paramiko.PKey) -> Host:
    backend = socket.create_server(("127.0.0.1", 0))
    relay = socket.create_server(("127.0.0.1", 0))
    frozen = threading.Event()

    def accept_ssh() -> None:
        sock, _ = backend.accept()
        t = paramiko.Transport(sock)
        t.add_server_key(host_key)
        peers.append(Peer(mode, t))
        t.start_server(server=peers[-1])

    def accept_relay() -> None:
        client, _ = relay.accept()
        upstream = socket.create_connection(backend.getsockname())
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b, frozen), daemon=True).start()

    peers: list[Peer] = []
    threading.Thread(target=accept_ssh, daemon=True).start()
    threading.Thread(target=accept_relay, daemon=True).start()
    return Host(relay.getsockname()[1], host_key, frozen, peers)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, paramiko.PKey]:
    folder = tmp_path_factory.mktemp("keys")
    client, _ = new_keypair()
    (folder / "id").write_bytes(client)
    (folder / "id").chmod(0o600)
    server, _ = new_keypair()
    (folder / "host").write_bytes(server)
    return folder / "id", paramiko.Ed25519Key.from_private_key_file(str(folder / "host"))


@pytest.fixture(autouse=True)
def _not_cancelled() -> Iterator[None]:
    interrupt.CANCELLED.clear()
    yield
    interrupt.CANCELLED.clear()


def connect(
    host: Host, key: Path, tmp_path: Path, known: paramiko.PKey | None = None, **extra: Any
) -> FabricConnection:
    known_hosts = tmp_path / "known_hosts"
    k = known or host.host_key
    known_hosts.write_text(f"[127.0.0.1]:{host.port} {k.get_name()} {k.get_base64()}\n")
    extras = {"key_filename": str(key), "known_hosts": str(known_hosts), "connect_timeout": 5, **extra}
    conn = FabricConnection()
    conn.open("127.0.0.1", "root", None, host.port, None, extras)
    return conn


def test_a_command_runs(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> None:
    conn = connect(serve("echo", keys[1]), keys[0], tmp_path)
    try:
        assert conn.connection.run("true").stdout == "ok\n"
    finally:
        conn.close()


def run_at_once(conn: FabricConnection, count: int) -> list[str]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: conn.connection.run("true", check=False).stdout, range(count)))


def test_commands_on_one_connection_run_at_the_same_time(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    """The reads of several components share a host's connection, each on its own channel: they must
    run side by side (a lock held for a whole command made every host's reads run one after another)."""
    host = serve("together", keys[1])
    conn = connect(host, keys[0], tmp_path)
    try:
        assert run_at_once(conn, 4) == ["ok\n"] * 4  # each waits on the server until all four are in
    finally:
        conn.close()
    assert host.peers[0].most == 4


def test_a_session_sshd_refuses_past_its_max_sessions_waits_for_one_of_ours(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = serve("max2", keys[1])
    conn = connect(host, keys[0], tmp_path)
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    try:
        assert run_at_once(conn, 6) == ["ok\n"] * 6
    finally:
        conn.close()
    assert host.peers[0].most == 2
    refused = [r for r in caplog.records if r.levelno >= logging.ERROR and "open FAILED" in r.getMessage()]
    assert refused == []  # paramiko's ERROR line for each refusal would reach stderr


def test_a_host_that_refuses_every_session_says_so(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> None:
    conn = connect(serve("no-sessions", keys[1]), keys[0], tmp_path)
    try:
        with pytest.raises(
            NrError, match=r"^root@127\.0\.0\.1: sshd refused to open a session .*MaxSessions"
        ) as err:
            conn.connection.run("true")
        assert not isinstance(err.value, HostLost)
    finally:
        conn.close()


def test_the_connection_sends_each_packet_at_once(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> None:
    """TCP_NODELAY from the first packet on (set by the Transport factory, before the handshake): with
    Nagle's algorithm each small SSH packet waited for the ACK of the one before, which the server
    delays, about 40 ms a time (nr.connect_options.nodelay_transport)."""
    conn = connect(serve("echo", keys[1]), keys[0], tmp_path)
    try:
        sock = conn.connection.conn.client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()


def test_a_transport_over_a_gateway_channel_is_left_as_it_is() -> None:
    """A ProxyCommand or a gateway's channel is no TCP socket: nothing is set on it."""
    a, b = socket.socketpair()  # AF_UNIX: like a ProxyCommand's pipe, TCP options do not apply
    try:
        transport = nodelay_transport(a)
        assert isinstance(transport, paramiko.Transport) and transport.sock is a
    finally:
        a.close()
        b.close()


def test_waiting_for_the_exit_status_after_eof_does_not_spin(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After EOF paramiko keeps a channel's pipe readable: select() there returns at once. The wait for
    the exit status must block, not loop (it cost CPU per host on every command: issue 12)."""
    import nr.channel

    calls = []
    real = nr.channel.select.select

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    conn = connect(serve("late-status", keys[1]), keys[0], tmp_path)
    monkeypatch.setattr(nr.channel.select, "select", counting)
    try:
        result = conn.connection.run("true")
    finally:
        conn.close()
    assert result.stdout == "ok\n" and result.exited == 0
    assert len(calls) < 20


def test_a_busy_host_that_answers_keepalives_is_not_lost(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    conn = connect(serve("slow", keys[1]), keys[0], tmp_path, keepalive_interval=1, keepalive_count=2)
    try:
        assert conn.connection.run("sleep 3").stdout == "ok\n"
    finally:
        conn.close()


def test_a_host_that_goes_away_during_authentication_is_not_an_authentication_failure(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    with pytest.raises(ConnectionFailed) as err:
        connect(serve("drop-during-auth", keys[1]), keys[0], tmp_path)
    assert "authentication failed" not in str(err.value).lower()
    assert "closed during SSH authentication: the host went away" in str(err.value)
    with pytest.raises(ConnectionFailed, match=r"SSH authentication failed for 127\.0\.0\.1"):
        connect(serve("reject", keys[1]), keys[0], tmp_path)  # a real refusal still says so


def going_silent(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> FabricConnection:
    """A connection (keepalives every second, lost after two unanswered) to a host that falls silent
    half a second from now, while its commands run."""
    host = serve("hang", keys[1])
    conn = connect(host, keys[0], tmp_path, keepalive_interval=1, keepalive_count=2, command_timeout=120)
    threading.Timer(0.5, host.freeze).start()
    return conn


def test_a_silent_host_is_lost_within_the_keepalive_window(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    conn = going_silent(keys, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(HostLost) as err:
        conn.connection.run("sleep 600")
    took = time.monotonic() - t0
    conn.close()
    assert took < 10, took  # the keepalive window (2 s) plus a tick, not command_timeout (120 s)
    assert "host stopped answering (no reply to SSH keepalives for 2 s" in str(err.value)
    assert "did not finish within" not in str(err.value)


def test_commands_running_together_on_a_silent_host_are_all_named_lost(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    """One watchdog for the commands that run at once on a connection: it outlives the first to end."""
    conn = going_silent(keys, tmp_path)

    def one(_: int) -> str:
        try:
            conn.connection.run("sleep 600")
        except HostLost as exc:
            return str(exc)
        return "finished"

    with ThreadPoolExecutor(3) as pool:
        said = list(pool.map(one, range(3)))
    conn.close()
    assert all("host stopped answering (no reply to SSH keepalives for 2 s" in s for s in said), said


def test_a_host_that_dies_mid_command_is_named_lost_at_once(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    conn = connect(serve("die", keys[1]), keys[0], tmp_path, command_timeout=120)
    t0 = time.monotonic()
    with pytest.raises(HostLost, match=r"SSH connection lost .*the host closed it"):
        conn.connection.run("sleep 600")
    assert time.monotonic() - t0 < 5
    conn.close()


def test_ctrl_c_ends_a_running_command_at_once(keys: tuple[Path, paramiko.PKey], tmp_path: Path) -> None:
    conn = connect(serve("hang", keys[1]), keys[0], tmp_path, command_timeout=120)
    threading.Timer(0.5, interrupt.interrupt).start()
    t0 = time.monotonic()
    with pytest.raises(
        interrupt.Interrupted, match="interrupted \\(Ctrl-C\\); a remote command was cut short"
    ):
        conn.connection.run("sleep 600")
    assert time.monotonic() - t0 < 2
    with pytest.raises(interrupt.Interrupted):  # and nothing new starts
        conn.connection.run("true")
    conn.close()


def test_a_changed_host_key_names_the_file_and_the_command(
    keys: tuple[Path, paramiko.PKey], tmp_path: Path
) -> None:
    host = serve("echo", keys[1])
    other = paramiko.Ed25519Key.from_private_key(io.StringIO(new_keypair()[0].decode()))
    with pytest.raises(HostKeyRejected) as err:
        connect(host, keys[0], tmp_path, known=other)
    text = str(err.value)
    assert f"host key of 127.0.0.1 CHANGED: {tmp_path / 'known_hosts'} has ssh-ed25519" in text
    assert f"ssh-keygen -R '[127.0.0.1]:{host.port}' -f {tmp_path / 'known_hosts'}" in text
    assert "~/.ssh" not in text


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    conn = FabricConnection()
    with pytest.raises(NrError, match=f"key_filename {tmp_path / 'nope'}: no such file"):
        conn.open("127.0.0.1", "root", None, 1, None, {"key_filename": str(tmp_path / "nope")})
