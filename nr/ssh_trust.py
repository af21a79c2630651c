"""SSH trust and connection errors: host keys checked strictly, and failures named by their cause.

Host keys are checked against ``~/.ssh/known_hosts`` and the inventory's ``known_hosts`` file. An
unknown key is refused unless ``accept_new`` is set (OpenSSH's ``StrictHostKeyChecking=accept-new``);
a *changed* key is always refused.
"""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path
from typing import Any

import paramiko

from nr.errors import NrError
from nr.inventory.files import private_problem
from nr.secrets import redact
from nr.text import command


class ConnectionFailed(NrError):
    """The SSH connection could not be opened (message names host and cause)."""


class HostKeyRejected(ConnectionFailed):
    """The host's key is unknown (and accept_new is off) or differs from known_hosts."""


class HostLost(ConnectionFailed):
    """The connection went away while a command or an upload ran (host silent or connection closed)."""


_known_hosts_lock = threading.Lock()


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record the key of a host not yet known; paramiko itself refuses *changed* keys."""

    def __init__(self, save_to: Path) -> None:
        self.save_to = save_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with _known_hosts_lock:
            self.save_to.parent.mkdir(parents=True, exist_ok=True)
            with self.save_to.open("a", encoding="utf-8") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            client.get_host_keys().add(hostname, key.get_name(), key)


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        where = ", ".join(str(f) for f in self.files)
        raise HostKeyRejected(
            f"host key of {hostname} ({key.get_name()} {key.fingerprint}) is not in known_hosts ({where}); "
            "verify it and add it, or set connection_options.fabric.extras.accept_new: true"
        )


_parsed: dict[tuple[str, int, int], paramiko.HostKeys] = {}


def _known(path: Path) -> paramiko.HostKeys:
    """``path`` parsed once per run (and again only when it changed): paramiko builds a key object for
    every line, so each host loading the whole file made opening N connections cost N^2 parses."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _known_hosts_lock:
        keys = _parsed.get(key)
        if keys is None:
            keys = _parsed[key] = paramiko.HostKeys(str(path))
        return keys


def known_name(host: str, port: int = 22) -> str:
    """How known_hosts names ``host``."""
    return host if port == 22 else f"[{host}]:{port}"


def _lookup(extras: dict[str, Any], name: str) -> tuple[Any, list[Path], Path | None, Path]:
    """The known keys of ``name`` (~/.ssh/known_hosts first, then the inventory's), the files consulted,
    the inventory's file and the system one."""
    files: list[Path] = []
    found = None
    system = Path("~/.ssh/known_hosts").expanduser()
    if system.is_file():
        found = _known(system).lookup(name)
        files.append(system)
    own = Path(str(extras["known_hosts"])).expanduser() if extras.get("known_hosts") else None
    if own is not None:
        if own.is_file() and found is None:
            found = _known(own).lookup(name)
        files.append(own)
    return found, files, own, system


def records_new_key(extras: dict[str, Any], host: str, port: int = 22) -> bool:
    """Would connecting to ``host`` write its key into a known_hosts file (accept_new, key not known)?"""
    return bool(extras.get("accept_new")) and _lookup(extras, known_name(host, port))[0] is None


def trust_host_keys(
    client: paramiko.SSHClient, extras: dict[str, Any], host: str, port: int = 22
) -> list[Path]:
    """Give ``client`` the known keys of ``host`` from ~/.ssh/known_hosts, else from the inventory's
    known_hosts (paramiko's order: its "system" keys win); refuse unknown keys unless accept_new.
    Returns the files consulted (for messages naming the one that holds a key)."""
    name = known_name(host, port)
    found, files, own, system = _lookup(extras, name)
    for keytype, key in (found or {}).items():
        client.get_host_keys().add(name, keytype, key)
    if extras.get("accept_new"):
        client.set_missing_host_key_policy(_AcceptNewPolicy(own or system))
    else:
        client.set_missing_host_key_policy(_RejectPolicy(files))
    return files


def key_holders(files: list[Path], name: str, key: paramiko.PKey) -> list[Path]:
    """The known_hosts files among ``files`` that hold ``key`` for ``name`` (``host`` or ``[host]:port``)."""
    found = []
    for f in files:
        try:
            entries = paramiko.HostKeys(str(f)).lookup(name)
        except (OSError, UnicodeError, paramiko.SSHException):
            continue
        if entries is not None and any(k == key for k in entries.values()):
            found.append(f)
    return found


def _changed_key(
    host: str, port: int, exc: paramiko.BadHostKeyException, files: list[Path]
) -> HostKeyRejected:
    name = host if port == 22 else f"[{host}]:{port}"  # how known_hosts names it
    holders = key_holders(files, name, exc.expected_key) or files
    where = ", ".join(str(f) for f in holders) or "known_hosts"
    remove = "; ".join(command("ssh-keygen", "-R", name, "-f", str(f)) for f in holders)
    return HostKeyRejected(
        f"host key of {host} CHANGED: {where} has {exc.expected_key.get_name()} "
        f"{exc.expected_key.fingerprint}, the host sent {exc.key.get_name()} {exc.key.fingerprint}; "
        f"refusing to connect (possible man-in-the-middle). If the host was rebuilt, verify the new key "
        f"on its console, then remove the old one: {remove or command('ssh-keygen', '-R', name)}"
    )


def connect_error(
    host: str, port: int, exc: BaseException, *, files: list[Path] | None = None, alive: bool = True
) -> ConnectionFailed:
    """The error for a connection that could not be opened; ``alive``: whether the SSH transport was
    still up when it failed (paramiko reports a connection that died during authentication as an
    authentication failure)."""
    if isinstance(exc, HostKeyRejected):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return _changed_key(host, port, exc, files or [])
    if isinstance(exc, paramiko.AuthenticationException):
        if not alive:
            return ConnectionFailed(
                f"connection to {host}:{port} closed during SSH authentication: the host went away or "
                "its sshd dropped the connection (look at the host and its sshd log)"
            )
        return ConnectionFailed(f"SSH authentication failed for {host}:{port}: {exc}")
    return ConnectionFailed(f"cannot connect to {host}:{port}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """Why a connection could not be opened, in a few words."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return ", ".join(sorted({getattr(e, "strerror", None) or str(e) for e in exc.errors.values()}))
    if isinstance(exc, EOFError) or (isinstance(exc, paramiko.SSHException) and "banner" in str(exc)):
        return f"no SSH handshake: the host closed the connection or did not answer in time ({exc or 'EOF'})"
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return redact(str(exc)) or type(exc).__name__


# paramiko's SSHClient._auth tries these under ~/.ssh when look_for_keys is on (no key named).
DEFAULT_KEYS = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")


def unprotected_key(connect_kwargs: dict[str, Any], home: Path | None = None) -> str | None:
    """The first private key this connection may use that group/others can access, as a problem.

    OpenSSH refuses such a key ("UNPROTECTED PRIVATE KEY FILE", ``sshkey_perm_ok`` in authfile.c);
    paramiko would use it. This covers the keys the inventory does not name: ssh_config's IdentityFile
    (Fabric puts them in ``key_filename``) and ``~/.ssh/id_*`` (paramiko's look_for_keys).
    """
    names = connect_kwargs.get("key_filename") or []
    paths = [Path(n).expanduser() for n in ([names] if isinstance(names, str) else names)]
    if connect_kwargs.get("look_for_keys", True):
        paths += [(home or Path.home()) / ".ssh" / name for name in DEFAULT_KEYS]
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        problem = private_problem(path, mode) if stat.S_ISREG(mode) else None
        if problem:
            return f"private key {problem} (OpenSSH refuses such a key too)"
    return None
