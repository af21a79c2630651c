"""How nr opens an SSH connection: the ssh_config parsed once per run, Fabric's Config, paramiko's
connect() arguments (the inventory's key only, secrets resolved from their references, TCP_NODELAY)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config

from nr.secrets import SecretError, SecretRef
from nr.ssh_trust import ConnectionFailed

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


def fabric_config(ssh_config: str | None) -> Config:
    """A Fabric ``Config`` of its own for one connection (invoke's config objects are not safe to
    share between threads), on the ssh_config parsed once (lookups do not change it)."""
    return Config(ssh_config=_ssh_config(ssh_config))


def secret_option(value: object, what: str) -> SecretRef | None:
    if not value:
        return None
    try:
        return SecretRef.parse(value)
    except SecretError as exc:
        raise ConnectionFailed(f"{what}: {exc}") from None


def nodelay_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """paramiko's Transport on ``sock``, with TCP_NODELAY on a TCP socket (not on a gateway's channel or
    ProxyCommand): each SSH packet (the auth request, a channel's open and exec, a script's stdin and its
    EOF) leaves at once instead of waiting, under Nagle's algorithm, for the ACK of the one before, which
    the server delays (40 ms on Linux). On a lab host: authentication 49.5 -> 7.5 ms (bench/README.md)."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return paramiko.Transport(sock, **kwargs)


def connect_kwargs(extras: dict[str, Any], password: str | None, timeout: int) -> dict[str, Any]:
    """paramiko's connect() arguments: the inventory's key only (no agent, no ~/.ssh guessing) when one
    is named; the login password resolved from its secret reference; TCP_NODELAY on the connection."""
    kwargs: dict[str, Any] = {
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "transport_factory": nodelay_transport,
    }
    if extras.get("key_filename"):
        key = Path(str(extras["key_filename"])).expanduser()
        if not key.is_file():
            raise ConnectionFailed(f"key_filename {key}: no such file (the private key for SSH)")
        kwargs["key_filename"] = [str(key)]
        kwargs["look_for_keys"] = False
        kwargs["allow_agent"] = False
    ref = secret_option(password, "password")
    if ref is not None:
        try:
            kwargs["password"] = ref.resolve().reveal()
        except SecretError as exc:
            raise ConnectionFailed(f"password: {exc}") from None
    return kwargs
