"""The Fabric connection plugin: one SSH connection per host per run, strict host keys.

Registered as the Nornir connection plugin ``fabric``. ``remote(task)`` gives a task the host's open
:class:`SshRemote` (a :class:`nr.transport.Remote`), opened at the first call and reused all the run.

Transport rules:

* Host keys are checked against ``~/.ssh/known_hosts`` and the inventory's ``known_hosts`` file.
  An unknown key is refused unless ``accept_new`` is set (OpenSSH's ``StrictHostKeyChecking=
  accept-new``); a *changed* key is always refused.
* ``~/.ssh/config`` (or the ``ssh_config`` extra) is honoured: HostName, User, Port, IdentityFile.
* Every command is a shell script sent on **stdin** to ``sh -s`` (through ``sudo`` when the login
  user is not root), so nothing a task passes — secrets included — appears on a remote command
  line or in the remote process list. The sudo password, when needed, is sent first on stdin.
* Connect and command timeouts are bounded; errors are short messages naming host and cause.
* While a command or an upload runs, keepalives (:mod:`nr.keepalive`) notice a host that went
  silent, and the channel loop (:mod:`nr.channel`) leaves as soon as the connection is gone or the
  run is interrupted: a lost host is reported as lost (never as slow), within seconds.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from nornir.core.configuration import Config as NornirConfig
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.core.task import Task

from nr import early_tcp, interrupt, progress, sftp_errors, ssh_keys
from nr.channel import Cancelled, ChannelClosed, SessionGate, TransportStats, exec_channel
from nr.connect_options import connect_kwargs, fabric_config, secret_option
from nr.errors import NrError
from nr.keepalive import DEFAULT_COUNT, DEFAULT_INTERVAL, KeepaliveSettings, SharedWatchdog, Watchdog
from nr.secrets import Secret, SecretError, SecretRef, redact
from nr.sftp_session import SftpSession
from nr.ssh_trust import ConnectionFailed, HostLost, connect_error, trust_host_keys, unprotected_key
from nr.transport import CommandFailed, CommandResult

__all__ = ["FabricConnection", "HostLost", "SshRemote", "TransportStats", "quote", "remote"]

CONNECTION_NAME = "fabric"
DEFAULT_CONNECT_TIMEOUT = early_tcp.DEFAULT_CONNECT_TIMEOUT
DEFAULT_COMMAND_TIMEOUT = 900
_SUDO_NEEDS_PASSWORD = "a password is required"


class SshRemote:
    """A thin transport over one Fabric ``Connection`` (Fabric's ``Connection`` is the model).

    ``run`` executes a shell script with root rights (``sudo`` when the login user is not root);
    ``put`` copies a local file over SFTP. Output is redacted of every known secret.
    """

    def __init__(
        self,
        name: str,
        conn: Connection,
        *,
        command_timeout: int,
        sudo_password: SecretRef | None,
        keepalive: KeepaliveSettings | None = None,
    ) -> None:
        self.name = name
        self.conn = conn
        self.command_timeout = command_timeout
        self.stats = TransportStats()
        self._sudo_ref = sudo_password
        self._sudo_password: Secret | None = None
        self._sudo_mode: str | None = None  # None: not known yet; "nopasswd"; "password"
        self.keepalive = keepalive or KeepaliveSettings()
        self._dogs = SharedWatchdog(self.keepalive)
        self._sessions = SessionGate()  # sshd's MaxSessions: a refused session waits for one of ours
        self._sftp = SftpSession(name, conn, self._sessions, command_timeout)  # one copy at a time

    @property
    def user(self) -> str:
        return str(self.conn.user)

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    # -- commands ---------------------------------------------------------------------------
    def run(
        self, script: str, *, sudo: bool = True, timeout: float | None = None, check: bool = True
    ) -> CommandResult:
        """Run ``script`` with ``sh -s`` (the script travels on stdin, never on the command line).

        With ``check`` a non-zero exit raises :class:`CommandFailed` carrying the output.
        """
        use_sudo = sudo and not self.is_root
        if not use_sudo:
            result = self._exec("sh -s", script, timeout)
        else:
            result = self._run_sudo(script, timeout)
        if check and not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise CommandFailed(f"{self.name}: remote command failed (exit {result.exited}): {tail}", result)
        return result

    def _run_sudo(self, script: str, timeout: float | None) -> CommandResult:
        if self._sudo_mode != "password":
            result = self._exec("sudo -n sh -s", script, timeout)
            if result.exited != 1 or _SUDO_NEEDS_PASSWORD not in result.stderr:
                self._sudo_mode = "nopasswd"
                return result
            if self._sudo_ref is None:
                raise NrError(
                    f"{self.name}: sudo needs a password for user {self.user}; set "
                    "connection_options.fabric.extras.sudo_password to a secret reference (env:NAME or file:PATH)"
                )
            self._sudo_mode = "password"
        if self._sudo_password is None:
            assert self._sudo_ref is not None
            try:
                self._sudo_password = self._sudo_ref.resolve()
            except SecretError as exc:
                raise NrError(f"{self.name}: sudo_password: {exc}") from None
        # -k: ignore cached credentials so sudo always reads the password line we send first.
        result = self._exec(
            "sudo -k -S -p '' sh -s", script, timeout, prefix=self._sudo_password.reveal() + "\n"
        )
        if result.exited == 1 and (
            "incorrect password" in result.stderr or "Sorry, try again" in result.stderr
        ):
            raise NrError(
                f"{self.name}: sudo refused the password of user {self.user} (sudo_password is wrong)"
            )
        return result

    def _exec(self, command: str, script: str, timeout: float | None, *, prefix: str = "") -> CommandResult:
        interrupt.check(self.name)
        t0 = time.perf_counter()
        limit = timeout if timeout is not None else self.command_timeout
        # The whole script is one compound command reading /dev/null: sh parses it completely before
        # running it, and no command inside can swallow the rest of the script from stdin.
        payload = prefix + "{\n" + script + "\n} </dev/null\n"
        try:
            with self._watchdog() as dog:
                exited, stdout, stderr = exec_channel(
                    dog.transport,
                    command,
                    payload.encode(),
                    limit,
                    self._sessions,
                    self.name,
                    self._sftp.release,
                )
        except TimeoutError:
            raise NrError(
                f"{self.name}: remote command did not finish within {limit:.0f} s (command_timeout); "
                "it may still be running on the host"
            ) from None
        except (ChannelClosed, Cancelled, paramiko.SSHException, OSError, EOFError) as exc:
            raise self._gone(exc, "a remote command") from None
        finally:
            with self.stats.lock:
                self.stats.commands += 1
                self.stats.seconds += time.perf_counter() - t0
        return CommandResult(exited, redact(stdout), redact(stderr), time.perf_counter() - t0)

    def _watchdog(self) -> contextlib.AbstractContextManager[Watchdog]:
        return self._dogs.watch(self._live_transport())

    def _live_transport(self) -> paramiko.Transport:
        transport: paramiko.Transport | None = self.conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise ChannelClosed
        return transport

    def _gone(self, exc: BaseException, doing: str) -> NrError:
        """Why an operation ended early: interrupted, host silent, or connection closed (in that order)."""
        cut = f"{doing} was cut short and may have been half done"
        if interrupt.CANCELLED.is_set():
            return interrupt.Interrupted(f"{self.name}: interrupted (Ctrl-C); {cut}")
        if self._dogs.lost:
            return HostLost(
                f"{self.name}: host stopped answering (no reply to SSH keepalives for "
                f"{self.keepalive.window:.0f} s: down, paused or cut off the network); {cut}"
            )
        reason = "" if isinstance(exc, ChannelClosed) else f": {redact(str(exc)) or type(exc).__name__}"
        return HostLost(
            f"{self.name}: SSH connection lost{reason} (the host closed it: rebooted, stopped, or sshd "
            f"restarted); {cut}"
        )

    # -- files ------------------------------------------------------------------------------
    def put(self, local: Path, remote_tmp: str) -> None:
        """Copy ``local`` to ``remote_tmp`` over SFTP as the login user (a script then moves it)."""

        def cleanup(gone: bool) -> None:
            if not gone:  # a lost connection cannot remove it: the next apply drops leftovers
                self._sftp.remove(remote_tmp)

        with self._transfer(f"the upload of {quote(str(local))}", str(local), remote_tmp, cleanup):
            self._put(local, remote_tmp)

    def get(self, remote_path: str, local: Path) -> None:
        """Copy ``remote_path`` (readable by the login user) to ``local`` over SFTP; a file cut short
        is removed (callers check the copy against a hash the host computed)."""
        with self._transfer(f"the download of {quote(remote_path)}", remote_path, str(local),
                            lambda gone: local.unlink(missing_ok=True)):  # fmt: skip
            self.conn.get(remote_path, local=str(local))

    @contextlib.contextmanager
    def _transfer(self, what: str, source: str, dest: str, cleanup: Callable[[bool], None]) -> Iterator[None]:
        """One SFTP copy (one at a time on the connection), under its watchdog, counted; on failure
        ``cleanup(gone)`` (of the partial copy), then a lost host (:meth:`_gone`) or a copy error naming
        both ends."""
        interrupt.check(self.name)
        t0 = time.perf_counter()
        try:
            with self._sftp.lock, self._watchdog() as dog:
                self._sftp.open(dog.transport)
                yield
        except (ChannelClosed, Cancelled, paramiko.SSHException, OSError, EOFError) as exc:
            settle = 1.0 if isinstance(exc, (EOFError, ConnectionError)) else 0.0  # transport may lag
            gone = interrupt.CANCELLED.is_set() or not _alive(self, settle)
            cleanup(gone)
            if gone:
                raise self._gone(exc, what) from None
            self._sftp.release()  # the next copy opens a new session
            raise NrError(
                f"{self.name}: copying {quote(source)} to {quote(dest)} failed: "
                f"{redact(str(exc)) or type(exc).__name__}"
            ) from None
        finally:
            with self.stats.lock:
                self.stats.transfers += 1
                self.stats.seconds += time.perf_counter() - t0

    def _put(self, local: Path, remote_tmp: str) -> None:
        """The SFTP copy; on a terminal, with a live line of bytes sent and the rate (:mod:`nr.progress`)."""
        if not progress.enabled():
            self.conn.put(str(local), remote=remote_tmp)
            return
        size = local.stat().st_size
        with progress.track(f"upload {local.name} to {self.name}", size) as line, local.open("rb") as fh:
            self.conn.put(progress.CountingReader(fh, line), remote=remote_tmp)

    def close(self) -> None:
        self.conn.close()


class FabricConnection:
    """Nornir connection plugin (``fabric``): opens a :class:`Remote` for one host."""

    connection: SshRemote

    def open(
        self,
        hostname: str | None,
        username: str | None,
        password: str | None,
        port: int | None,
        platform: str | None,
        extras: dict[str, Any] | None = None,
        configuration: NornirConfig | None = None,
    ) -> None:
        if not hostname:
            raise ConnectionFailed("no address to connect to (hostname is empty)")
        dialled = early_tcp.take(hostname, port or 22)  # nr.preconnect's TCP connect: used, or closed
        try:
            self._open(hostname, username, password, port, dict(extras or {}), dialled)
        except BaseException:
            if dialled is not None:
                dialled.close()
            raise

    def _open(
        self,
        hostname: str,
        username: str | None,
        password: str | None,
        port: int | None,
        extras: dict[str, Any],
        dialled: early_tcp.Dialled | None,
    ) -> None:
        interrupt.check(hostname)
        connect_timeout = int(extras.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        conn = Connection(
            hostname,
            user=username or None,
            port=port or None,
            config=fabric_config(extras.get("ssh_config")),
            connect_timeout=connect_timeout,
            connect_kwargs=connect_kwargs(extras, password, connect_timeout),
            inline_ssh_env=False,
        )
        problem = unprotected_key(conn.connect_kwargs)
        if problem:
            raise ConnectionFailed(problem)
        ssh_keys.preload(conn.connect_kwargs)  # the key parsed once per run, not per host and key class
        files = trust_host_keys(conn.client, extras, str(conn.host), int(conn.port))
        sudo_ref = secret_option(extras.get("sudo_password"), "sudo_password")
        if dialled is not None and not _goes_where_dialled(conn, dialled):
            dialled.close()
            dialled = None
        t0 = time.perf_counter()
        try:
            if dialled is not None:
                conn.connect_kwargs["sock"] = dialled.result()  # its error, if any, is this connect's
            conn.open()
        except Exception as exc:
            transport = conn.client.get_transport()
            alive = transport is not None and transport.is_active()
            conn.close()
            raise connect_error(str(conn.host), int(conn.port), exc, files=files, alive=alive) from None
        finally:  # Fabric re-opens a lost connection (its @opens) with a connect of its own
            conn.connect_kwargs.pop("sock", None)
        self.connection = SshRemote(
            name=f"{conn.user}@{conn.host}",
            conn=conn,
            command_timeout=int(extras.get("command_timeout") or DEFAULT_COMMAND_TIMEOUT),
            sudo_password=sudo_ref,
            keepalive=KeepaliveSettings(
                int(extras.get("keepalive_interval") or DEFAULT_INTERVAL),
                int(extras.get("keepalive_count") or DEFAULT_COUNT),
            ),
        )
        self.connection.stats.connect_seconds = time.perf_counter() - t0

    def close(self) -> None:
        if getattr(self, "connection", None) is not None:
            self.connection.close()


def _goes_where_dialled(conn: Connection, dialled: early_tcp.Dialled) -> bool:
    """Whether the connection goes where the early TCP connect went: no gateway or ProxyCommand, and
    ssh_config kept the address and the port (else that connect is closed unused)."""
    return not conn.gateway and (str(conn.host), int(conn.port)) == dialled.address


def remote(task: Task) -> SshRemote:
    """The host's open :class:`SshRemote` (opened on first use, then reused for the whole run)."""
    conn: SshRemote = task.host.get_connection(CONNECTION_NAME, task.nornir.config)
    return conn


def quote(value: str) -> str:
    """Shell-quote ``value`` for a script line."""
    return shlex.quote(value)


def _alive(remote: SshRemote, settle: float = 0.0) -> bool:
    """Whether the connection is up (waiting up to ``settle`` seconds for it to be seen down)."""
    deadline = time.monotonic() + settle
    while (transport := remote.conn.client.get_transport()) is not None and transport.is_active():
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.02)
    return False


sftp_errors.keep_prefetch_errors_for_the_reader()
ssh_keys.compare_in_c()  # paramiko's MAC checks in C

# Registered here, on the first connection (nr.plugins: no entry-point scan at start). Nornir refuses
# another class under a taken name; its own scan would load this same class, which it accepts.
ConnectionPluginRegister.register(CONNECTION_NAME, FabricConnection)
