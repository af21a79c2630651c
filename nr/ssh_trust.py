"""SSH trust and connection errors: host keys checked strictly, and failures named by their cause.

Host keys are checked against ``~/.ssh/known_hosts`` and the inventory's ``known_hosts`` file. An
unknown key is refused unless ``accept_new`` is set (OpenSSH's ``StrictHostKeyChecking=accept-new``);
a *changed* key is always refused.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import paramiko

from nr.errors import NrError
from nr.secrets import redact


class ConnectionFailed(NrError):
    """The SSH connection could not be opened (message names host and cause)."""


class HostKeyRejected(ConnectionFailed):
    """The host's key is unknown (and accept_new is off) or differs from known_hosts."""


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


def trust_host_keys(client: paramiko.SSHClient, extras: dict[str, Any]) -> None:
    """Load ~/.ssh/known_hosts and the inventory's known_hosts; refuse unknown keys unless accept_new."""
    files: list[Path] = []
    system = Path("~/.ssh/known_hosts").expanduser()
    if system.exists():
        client.load_system_host_keys(str(system))
        files.append(system)
    own = Path(str(extras["known_hosts"])).expanduser() if extras.get("known_hosts") else None
    if own is not None:
        if own.exists():
            with _known_hosts_lock:
                client.load_host_keys(str(own))
        files.append(own)
    if extras.get("accept_new"):
        client.set_missing_host_key_policy(_AcceptNewPolicy(own or system))
    else:
        client.set_missing_host_key_policy(_RejectPolicy(files))


def connect_error(host: str, port: int, exc: BaseException) -> ConnectionFailed:
    if isinstance(exc, HostKeyRejected):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRejected(
            f"host key of {host} CHANGED: known_hosts has {exc.expected_key.get_name()} "
            f"{exc.expected_key.fingerprint}, the host sent {exc.key.get_name()} {exc.key.fingerprint}; "
            f"refusing to connect (possible man-in-the-middle). If the host was rebuilt, remove the old "
            f"key (ssh-keygen -R {host}) and verify the new one"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return ConnectionFailed(f"SSH authentication failed for {host}:{port}: {exc}")
    return ConnectionFailed(f"cannot connect to {host}:{port}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """Why a connection could not be opened, in a few words."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return ", ".join(sorted({getattr(e, "strerror", None) or str(e) for e in exc.errors.values()}))
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return redact(str(exc)) or type(exc).__name__
