"""The Fabric connection plugin: one SSH connection per host per run, strict host keys.

Registered as the Nornir connection plugin ``fabric``. Tasks get the open :class:`SshRemote` (a :class:`nr.transport.Remote`) with
``remote(task)`` (or ``task.host.get_connection("fabric", task.nornir.config)``); the first call
opens the connection and every later task of the run reuses it.

Transport rules:

* Host keys are checked against ``~/.ssh/known_hosts`` and the inventory's ``known_hosts`` file.
  An unknown key is refused unless ``accept_new`` is set (OpenSSH's ``StrictHostKeyChecking=
  accept-new``); a *changed* key is always refused.
* ``~/.ssh/config`` (or the ``ssh_config`` extra) is honoured: HostName, User, Port, IdentityFile.
* Every command is a shell script sent on **stdin** to ``sh -s`` (through ``sudo`` when the login
  user is not root), so nothing a task passes — secrets included — appears on a remote command
  line or in the remote process list. The sudo password, when needed, is sent first on stdin.
* Connect and command timeouts are bounded; errors are short messages naming host and cause.
"""

from __future__ import annotations

import select
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection
from nornir.core.configuration import Config as NornirConfig
from nornir.core.task import Task

from nr.errors import NrError
from nr.secrets import Secret, SecretError, SecretRef, redact
from nr.ssh_trust import ConnectionFailed, connect_error, trust_host_keys
from nr.transport import CommandFailed, CommandResult

CONNECTION_NAME = "fabric"
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_COMMAND_TIMEOUT = 900
_SUDO_NEEDS_PASSWORD = "a password is required"


@dataclass
class TransportStats:
    """What one connection did in a run: counted, so benchmarks and reports can show round trips."""

    commands: int = 0
    transfers: int = 0
    seconds: float = 0.0
    connect_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "commands": self.commands,
            "transfers": self.transfers,
            "seconds": round(self.seconds, 3),
            "connect_seconds": round(self.connect_seconds, 3),
        }


_ssh_configs: dict[str | None, paramiko.SSHConfig] = {}
_ssh_configs_lock = threading.Lock()
SSH_CONFIG_FILES = ("/etc/ssh/ssh_config", "~/.ssh/config")


def _ssh_config(path: str | None) -> paramiko.SSHConfig:
    """The parsed ssh_config (``path``, else the system's and the user's files), parsed once per run."""
    with _ssh_configs_lock:
        parsed = _ssh_configs.get(path)
        if parsed is None:
            parsed = paramiko.SSHConfig()
            for name in [path] if path else SSH_CONFIG_FILES:
                file = Path(name).expanduser()
                if file.is_file():
                    with file.open(encoding="utf-8") as fh:
                        parsed.parse(fh)
            _ssh_configs[path] = parsed
        return parsed


def _fabric_config(ssh_config: str | None) -> Config:
    """A Fabric ``Config`` of its own for one connection (invoke's config objects are not safe to
    share between threads), on the ssh_config parsed once (lookups do not change it)."""
    return Config(ssh_config=_ssh_config(ssh_config))


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
    ) -> None:
        self.name = name
        self.conn = conn
        self.command_timeout = command_timeout
        self.stats = TransportStats()
        self._sudo_ref = sudo_password
        self._sudo_password: Secret | None = None
        self._sudo_mode: str | None = None  # None: not known yet; "nopasswd"; "password"
        self._lock = threading.Lock()

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
        t0 = time.perf_counter()
        limit = timeout if timeout is not None else self.command_timeout
        # The whole script is one compound command reading /dev/null: sh parses it completely before
        # running it, and no command inside can swallow the rest of the script from stdin.
        payload = prefix + "{\n" + script + "\n} </dev/null\n"
        try:
            with self._lock:
                exited, stdout, stderr = self._exec_channel(command, payload.encode(), limit)
        except TimeoutError:
            raise NrError(f"{self.name}: remote command did not finish within {limit:.0f} s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise NrError(
                f"{self.name}: SSH connection lost: {redact(str(exc)) or type(exc).__name__}"
            ) from None
        finally:
            with self.stats.lock:
                self.stats.commands += 1
                self.stats.seconds += time.perf_counter() - t0
        return CommandResult(exited, redact(stdout), redact(stderr), time.perf_counter() - t0)

    def _exec_channel(self, command: str, stdin: bytes, limit: float) -> tuple[int, str, str]:
        """One SSH channel: exec ``command``, send ``stdin`` then EOF, collect both streams.

        (Invoke's stdin pump reads non-tty streams one byte per 10 ms; a script of a few KiB would
        take seconds, so the channel is driven directly, with select() on both streams.)
        """
        transport = self.conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise paramiko.SSHException("transport is closed")
        deadline = time.monotonic() + limit
        ch = transport.open_session(timeout=limit)
        try:
            ch.exec_command(command)
            ch.sendall(stdin)
            ch.shutdown_write()
            out: list[bytes] = []
            err: list[bytes] = []
            while True:
                while ch.recv_ready():
                    out.append(ch.recv(65536))
                while ch.recv_stderr_ready():
                    err.append(ch.recv_stderr(65536))
                if ch.eof_received and not ch.recv_ready() and not ch.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                select.select([ch], [], [], min(remaining, 5.0))
            while not ch.exit_status_ready():
                if time.monotonic() > deadline:
                    raise TimeoutError
                select.select([ch], [], [], 0.05)
            status = ch.recv_exit_status()
        finally:
            ch.close()
        return status, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")

    # -- files ------------------------------------------------------------------------------
    def put(self, local: Path, remote_tmp: str) -> None:
        """Copy ``local`` to ``remote_tmp`` over SFTP as the login user (a script then moves it)."""
        t0 = time.perf_counter()
        try:
            with self._lock:
                self.conn.put(str(local), remote=remote_tmp)
        except (OSError, paramiko.SSHException) as exc:
            raise NrError(f"{self.name}: copying {local.name} failed: {exc}") from None
        finally:
            with self.stats.lock:
                self.stats.transfers += 1
                self.stats.seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


def _secret_option(value: object, what: str) -> SecretRef | None:
    if not value:
        return None
    try:
        return SecretRef.parse(value)
    except SecretError as exc:
        raise ConnectionFailed(f"{what}: {exc}") from None


def _connect_kwargs(extras: dict[str, Any], password: str | None, timeout: int) -> dict[str, Any]:
    """paramiko's connect() arguments: the inventory's key only (no agent, no ~/.ssh guessing) when one
    is named; the login password resolved from its secret reference."""
    kwargs: dict[str, Any] = {"banner_timeout": timeout, "auth_timeout": timeout}
    if extras.get("key_filename"):
        kwargs["key_filename"] = [str(extras["key_filename"])]
        kwargs["look_for_keys"] = False
        kwargs["allow_agent"] = False
    ref = _secret_option(password, "password")
    if ref is not None:
        try:
            kwargs["password"] = ref.resolve().reveal()
        except SecretError as exc:
            raise ConnectionFailed(f"password: {exc}") from None
    return kwargs


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
        extras = dict(extras or {})
        if not hostname:
            raise ConnectionFailed("no address to connect to (hostname is empty)")
        connect_timeout = int(extras.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        conn = Connection(
            hostname,
            user=username or None,
            port=port or None,
            config=_fabric_config(extras.get("ssh_config")),
            connect_timeout=connect_timeout,
            connect_kwargs=_connect_kwargs(extras, password, connect_timeout),
            inline_ssh_env=False,
        )
        trust_host_keys(conn.client, extras)
        sudo_ref = _secret_option(extras.get("sudo_password"), "sudo_password")
        t0 = time.perf_counter()
        try:
            conn.open()
        except Exception as exc:
            conn.close()
            raise connect_error(str(conn.host), int(conn.port), exc) from None
        self.connection = SshRemote(
            name=f"{conn.user}@{conn.host}",
            conn=conn,
            command_timeout=int(extras.get("command_timeout") or DEFAULT_COMMAND_TIMEOUT),
            sudo_password=sudo_ref,
        )
        self.connection.stats.connect_seconds = time.perf_counter() - t0

    def close(self) -> None:
        if getattr(self, "connection", None) is not None:
            self.connection.close()


def remote(task: Task) -> SshRemote:
    """The host's open :class:`SshRemote` (opened on first use, then reused for the whole run)."""
    conn: SshRemote = task.host.get_connection(CONNECTION_NAME, task.nornir.config)
    return conn


def quote(value: str) -> str:
    """Shell-quote ``value`` for a script line."""
    return shlex.quote(value)
