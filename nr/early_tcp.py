"""TCP connections to the hosts dialled while nr is still importing its SSH libraries.

Opening a host's connection starts with TCP's handshake (a round trip) and the host's sshd starting a
process for it (~13 ms on a lab host before its banner is sent: OpenSSH forks and re-executes itself
for every connection). Both only wait on the network and the host, and the controller spends ~90 ms
importing Paramiko, Fabric and Invoke before it can open anything: :func:`dial` starts them first
(:mod:`nr.preconnect`), each on a thread of its own, and the connection plugin hands the socket to
Paramiko (``SSHClient.connect(sock=...)``) with :func:`take`. The socket is used only when the
connection goes where it was dialled: no gateway or ProxyCommand, and ssh_config did not move the
host or the port; otherwise it is closed unused.
"""

from __future__ import annotations

import contextlib
import socket
import threading

Address = tuple[str, int]
DEFAULT_CONNECT_TIMEOUT = 10  # seconds (the inventory's connect_timeout; nr.connection's default too)


class Dialled:
    """One TCP connect in progress: :meth:`result` waits for its socket, or raises its error."""

    def __init__(self, address: Address, timeout: float) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self.error: OSError | None = None
        self._done = threading.Event()
        name = f"nr-dial-{address[0]}"
        threading.Thread(target=self._dial, args=(timeout,), name=name, daemon=True).start()

    def _dial(self, timeout: float) -> None:
        try:
            self.sock = socket.create_connection(self.address, timeout=timeout)
        except OSError as exc:  # refused, unreachable, timed out, no such name: the plugin reports it
            self.error = exc
        finally:
            self._done.set()

    def result(self) -> socket.socket:
        self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.sock is not None
        return self.sock

    def close(self) -> None:
        """Drop it unused (at once, or once the connect finishes)."""
        threading.Thread(target=self._close, name="nr-dial-close", daemon=True).start()

    def _close(self) -> None:
        self._done.wait()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()


_dialled: dict[Address, Dialled] = {}
_lock = threading.Lock()


def dial(host: str, port: int, timeout: float) -> None:
    """Start connecting to ``host``:``port`` (once per address until it is taken)."""
    with _lock:
        if (host, port) not in _dialled:
            _dialled[(host, port)] = Dialled((host, port), timeout)


def take(host: str, port: int) -> Dialled | None:
    """The connect dialled to ``host``:``port`` (now the caller's, to use or to close), or None."""
    with _lock:
        return _dialled.pop((host, port), None)
