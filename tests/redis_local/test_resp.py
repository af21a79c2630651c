"""The controller's Redis client (tasks.redis.resp) against a real redis-server, and against sockets that
misbehave as a network does (no answer, a reply cut short, garbage)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.redis.observe import Access, classify
from tasks.redis.resp import AuthError, Client, NotServing, RedisError, ReplyError, Unreachable, encode
from tests.redis_local.conftest import REDIS_SERVER, _die_with_parent, pick_ports

PASSWORD = "nr-resp-" + secrets.token_hex(8)


class Server:
    def __init__(self, root: Path, port: int, password: str | None) -> None:
        self.root, self.port, self.password = root, port, password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        args += ["--dir", str(self.root)] + (["--requirepass", self.password] if self.password else [])
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets PDEATHSIG
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self, password: str | None = PASSWORD, **kw: object) -> Client:
        return Client("127.0.0.1", self.port, password, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """One redis-server with requirepass, one without."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    first, second = pick_ports(["127.0.0.1"], gap=1)
    pair = (
        Server(tmp_path_factory.mktemp("resp"), first, PASSWORD),
        Server(tmp_path_factory.mktemp("resp"), second, None),
    )
    try:
        for server in pair:
            server.start()
        yield pair
    finally:
        for server in pair:
            server.stop()


def test_replies_come_raw_as_the_protocol_gives_them(servers: tuple[Server, Server]) -> None:
    client = servers[0].client()
    assert client.execute_command("PING") == b"PONG"
    assert client.execute_command("SET", "k:é", b"\x00\r\nbinary") == b"OK"
    assert client.execute_command("GET", "k:é") == b"\x00\r\nbinary"
    assert client.execute_command("GET", "nothing-here") is None
    assert client.execute_command("INCRBY", "n", 41) == 41 and client.execute_command("INCR", "n") == 42
    assert client.execute_command("INCRBYFLOAT", "f", 0.5) == b"0.5"
    client.execute_command("RPUSH", "l", "a", "b")
    assert client.execute_command("LRANGE", "l", 0, -1) == [b"a", b"b"]
    assert client.execute_command("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", b"noeviction"]
    client.close()


def test_a_pipeline_reads_every_reply_then_raises_the_first_error(servers: tuple[Server, Server]) -> None:
    client = servers[0].client()
    me = client.execute_command("CLIENT", "ID")
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("SET", "p", 1).execute_command("LPUSH", "p", "x").execute_command("INCR", "p")
    with pytest.raises(ReplyError, match=r"^WRONGTYPE Operation against a key") as err:
        pipe.execute()
    assert err.value.code == "WRONGTYPE"
    assert client.execute_command("GET", "p") == b"2"  # the INCR after the error ran
    assert client.execute_command("CLIENT", "ID") == me  # and the connection was kept: every reply was read
    pipe.execute_command("DBSIZE").execute_command("PING")
    assert pipe.execute()[1] == b"PONG" and pipe.execute() == []
    with pytest.raises(ValueError, match="MULTI/EXEC"):
        client.pipeline(transaction=True)


def test_credentials_are_told_apart_as_redis_py_did(servers: tuple[Server, Server]) -> None:
    protected, open_ = servers
    wrong = protected.client("not-" + PASSWORD)
    with pytest.raises(AuthError, match=r"^WRONGPASS ") as err:
        wrong.execute_command("PING")
    assert classify(err.value, "not-" + PASSWORD)[0] is Access.WRONG_PASSWORD
    assert PASSWORD not in str(err.value)
    with pytest.raises(AuthError, match=r"^NOAUTH ") as err:
        protected.client(None).execute_command("PING")
    assert classify(err.value, None) == (
        Access.WRONG_PASSWORD,
        f"authentication required: no password was sent ({err.value})",
    )
    with pytest.raises(AuthError, match="without any password configured") as err:
        open_.client().execute_command("PING")
    assert classify(err.value, PASSWORD)[0] is Access.NO_PASSWORD
    assert open_.client(None).execute_command("PING") == b"PONG"


def test_a_username_is_sent_with_the_password(servers: tuple[Server, Server]) -> None:
    admin = servers[0].client()
    assert admin.execute_command("ACL", "SETUSER", "nr-ops", "on", ">ops-secret", "~*", "+@all") == b"OK"
    ops = servers[0].client("ops-secret", username="nr-ops")
    assert ops.execute_command("ACL", "WHOAMI") == b"nr-ops"
    with pytest.raises(AuthError, match=r"^WRONGPASS"):
        servers[0].client("wrong", username="nr-ops").execute_command("PING")


def test_a_restarted_server_is_reached_again_by_the_same_client(servers: tuple[Server, Server]) -> None:
    server = servers[1]
    client = server.client(None, timeout=2.0)
    assert client.execute_command("PING") == b"PONG"
    server.stop()
    with pytest.raises(Unreachable) as err:
        client.execute_command("PING")
    assert classify(err.value, None)[0] is Access.UNREACHABLE
    with pytest.raises(
        Unreachable, match=rf"^cannot connect to 127\.0\.0\.1:{server.port}: Connection refused$"
    ):
        client.execute_command("PING")
    server.start()
    assert client.execute_command("PING") == b"PONG"


def test_a_connection_the_server_closed_while_idle_is_replaced(servers: tuple[Server, Server]) -> None:
    """redis.conf ``timeout`` or CLIENT KILL closes an idle client: its next command opens a new connection
    instead of failing (redis-py checks an idle connection before reuse too)."""
    client, admin = servers[0].client(), servers[0].client()
    first = client.execute_command("CLIENT", "ID")
    assert admin.execute_command("CLIENT", "KILL", "ID", first) == 1
    deadline = time.monotonic() + 5
    while admin.execute_command("CLIENT", "LIST", "ID", first) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = client.execute_command("CLIENT", "ID")
    assert second != first
    assert client.execute_command("CLIENT", "ID") == second  # and that one is kept
    client.close()
    admin.close()


def test_an_instance_that_cannot_serve_yet_is_unreachable_not_an_error(
    servers: tuple[Server, Server],
) -> None:
    """LOADING and a full client table are connection errors in redis-py (EXCEPTION_CLASSES): an instance
    restarting with a big data set is reported like one that is down, not as a failed command."""
    loading = b"-LOADING Redis is loading the dataset in memory\r\n"
    with (
        fake_server(lambda conn: conn.sendall(loading)) as port,
        pytest.raises(NotServing, match=r"^LOADING ") as err,
    ):
        Client("127.0.0.1", port, timeout=2).execute_command("PING")
    assert err.value.code == "LOADING" and classify(err.value, None)[0] is Access.UNREACHABLE
    server = servers[1]
    holder = server.client(None)
    assert holder.execute_command("CONFIG", "SET", "maxclients", 1) == b"OK"
    try:
        with pytest.raises(NotServing, match="max number of clients reached") as err:
            server.client(None).execute_command("PING")
        assert classify(err.value, None)[0] is Access.UNREACHABLE
    finally:
        holder.execute_command("CONFIG", "SET", "maxclients", 10000)
        holder.close()
    with pytest.raises(ReplyError) as plain_err:
        server.client(None).execute_command("NO-SUCH-COMMAND")
    assert not isinstance(plain_err.value, OSError)
    assert classify(plain_err.value, None)[0] is Access.ERROR


def test_threads_take_turns_on_one_connection(servers: tuple[Server, Server]) -> None:
    client = servers[0].client()
    client.execute_command("DEL", "counter")

    def work() -> None:
        for _ in range(200):
            client.execute_command("INCR", "counter")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.execute_command("GET", "counter") == b"1600"


@contextlib.contextmanager
def fake_server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection TCP server that reads a command and answers with ``answer``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)


def test_no_answer_is_a_timeout_named_with_the_endpoint() -> None:
    with fake_server(lambda conn: time.sleep(1.0)) as port:
        started = time.monotonic()
        with pytest.raises(Unreachable, match=rf"^no answer from 127\.0\.0\.1:{port} within 0\.2 s$"):
            Client("127.0.0.1", port, timeout=0.2).execute_command("PING")
        assert time.monotonic() - started < 0.9


def test_a_reply_cut_short_or_garbage_drops_the_connection() -> None:
    with (
        fake_server(lambda conn: conn.sendall(b"$10\r\nabc")) as port,
        pytest.raises(Unreachable, match="closed by the server mid-reply"),
    ):
        Client("127.0.0.1", port, timeout=2).execute_command("GET", "k")
    with fake_server(lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as port:
        client = Client("127.0.0.1", port, timeout=2)
        with pytest.raises(RedisError, match="not a RESP2 reply") as err:
            client.execute_command("PING")
        assert not isinstance(err.value, OSError)
        assert classify(err.value, None)[0] is Access.ERROR
    with pytest.raises(Unreachable, match="cannot connect to"):  # dropped: the next command connects anew
        client.execute_command("PING")


def test_arguments_are_encoded_as_bulk_strings() -> None:
    assert encode(["SET", b"k", 7, 0.25]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n$4\r\n0.25\r\n"
    with pytest.raises(TypeError, match="cannot be a bool"):
        encode(["SET", "k", True])
    with pytest.raises(TypeError, match="cannot be a NoneType"):
        encode(["GET", None])
