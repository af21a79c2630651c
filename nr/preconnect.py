"""Connections opened early: each host's SSH handshake starts as soon as the inventory is read.

A run used to open its connections when the first component asked for them, after the components'
modules were imported, their contracts validated and their reads declared: ~0.1-0.3 s of controller
work in which the network sat idle. Here every host the run may touch (``--limit``, else all) starts
its handshake in a thread of its own right after the inventory is loaded, and the controller's work
goes on meanwhile; the first step that needs a host's connection waits for that handshake to finish
(:meth:`nr.runstate.RunState.open`: one lock per host, so nothing connects twice). Before the SSH
libraries are even imported, each host's TCP connect is dialled (:mod:`nr.early_tcp`).

A host that cannot be reached fails once: its error is kept and given to the first step that asks
(no second connect timeout). Validation still comes first for everything that changes a host: an
early connection only authenticates (host key checked as strictly as always) and runs nothing, and a
host whose key a connection would record (``accept_new``, key not yet known) is not connected early:
a run that validation refuses leaves known_hosts as it was.
A connection finished after the run ended (``RunState.ended``) is closed at once.
``NR_CONNECT_EARLY=0`` turns this off (connections are then opened on first use).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from typing import TYPE_CHECKING

from nr import early_tcp
from nr.play import CONNECTION_NAME

if TYPE_CHECKING:
    from nornir.core.inventory import Host

    from nr.play import PlayContext

ENV = "NR_CONNECT_EARLY"


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def start(ctx: PlayContext) -> None:
    """Start connecting to every host ``ctx`` may touch (``ctx.hosts()``: ``--limit``, else all), each in
    a thread of its own; the steps of the run then share those connections."""
    if not enabled():
        return
    hosts = [host for host in ctx.hosts() if _early(host)]
    for host in hosts:  # TCP first: the handshakes and the hosts' sshd start while the SSH libraries load
        _dial(host)
    importlib.import_module("nr.connection")  # registers the plugin (here, not in several threads at once)
    for host in hosts:
        threading.Thread(target=_open, args=(ctx, host), name=f"nr-connect-{host.name}", daemon=True).start()


def _dial(host: Host) -> None:
    params = host.get_connection_parameters(CONNECTION_NAME)
    if params.hostname:
        timeout = float((params.extras or {}).get("connect_timeout") or early_tcp.DEFAULT_CONNECT_TIMEOUT)
        early_tcp.dial(str(params.hostname), int(params.port or 22), timeout)


def _early(host: Host) -> bool:
    """False for a host whose connection would write its key into known_hosts (``accept_new`` and the
    key not known yet, or an ssh_config that may rename it): that waits for validation."""
    params = host.get_connection_parameters(CONNECTION_NAME)
    extras = dict(params.extras or {})
    if not extras.get("accept_new"):
        return True
    if extras.get("ssh_config"):
        return False
    from nr.ssh_trust import records_new_key

    return not records_new_key(extras, str(params.hostname), int(params.port or 22))


def _open(ctx: PlayContext, host: Host) -> None:
    try:
        ctx.open_ahead(host)
    except Exception:  # kept by the run's state for the first step that asks for this host
        return
    if ctx.ended:  # the run ended (e.g. bad input) while this host was connecting
        with contextlib.suppress(Exception):
            host.close_connection(CONNECTION_NAME)
