"""bench/delay_proxy.py, which the WAN figures of bench/README.md rest on: bytes pass unchanged, each
round trip costs the RTT asked for (and the first one the handshake's), and its firewall rules leave
with it. Runs as root with iptables (CI does; elsewhere it skips)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "delay_proxy.py"
ADDRESS = "127.0.0.77"  # a loopback address nothing else uses: only this test's connections are delayed


def nat_rules() -> str:
    return subprocess.run(
        ["iptables", "-w", "-t", "nat", "-S", "OUTPUT"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("iptables"), reason="needs root and iptables")
def test_bytes_pass_unchanged_each_round_trip_costs_the_rtt_and_the_rules_leave_with_it() -> None:
    listener = socket.create_server((ADDRESS, 0))
    port = listener.getsockname()[1]

    def echo() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    idle = None
    proxy = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--rtt", "100", ADDRESS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        assert f"nr-bench-delay-{proxy.pid}" in nat_rules()
        payload = os.urandom(300_000)
        with socket.create_connection((ADDRESS, port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
            first = time.monotonic() - started
            started = time.monotonic()
            sock.sendall(b"pong")
            assert sock.recv(4) == b"pong"
            second = time.monotonic() - started
            sock.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += sock.recv(65536)
        assert got == payload
        idle = socket.create_connection((ADDRESS, port), timeout=10)  # still open when the proxy stops
        idle.sendall(b"x")
        time.sleep(0.3)
        assert first >= 0.19  # the handshake (1 RTT) and the round trip
        assert second >= 0.095  # one round trip
    finally:
        proxy.terminate()
        _, errors = proxy.communicate(timeout=10)
        listener.close()
        if idle is not None:
            idle.close()
    assert "nr-bench-delay-" not in nat_rules()
    assert proxy.returncode == 0 and errors == ""  # stopped cleanly, open connections included
