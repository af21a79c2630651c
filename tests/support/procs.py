"""Start the services as real subprocesses on free loopback ports, and stop them without leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class StartError(RuntimeError):
    """A service did not become ready; the message ends with the tail of its log."""


@dataclass
class ServiceProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group (worker processes included)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # our own session: only what we started
        code = self.popen.wait(5)
        self._log.close()
        return code


def start_process(
    name: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float = 30.0,
    cwd: Path | None = None,
) -> ServiceProcess:
    """Starts ``argv`` in its own session and waits until ``ready()`` is true."""
    log_file = log_path.open("wb")
    popen = subprocess.Popen(
        argv, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
    )
    proc = ServiceProcess(name, popen, log_path, log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            proc.stop()
            raise StartError(f"{name} exited with {popen.returncode}:\n{proc.log_tail()}")
        if ready():
            return proc
        time.sleep(0.05)
    proc.stop()
    raise StartError(f"{name} not ready after {timeout:.0f}s:\n{proc.log_tail()}")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def grpc_serving(target: str) -> bool:
    from services.adapter.healthcheck import check

    return check(target, timeout=1.0) == "SERVING"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "AEROALPES_", "ADAPTER_"))}
    env.update(PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")
    env.update(extra)
    return env


def start_aeroalpes(
    redis_nodes: str,
    log_path: Path,
    *,
    password_file: Path | None = None,
    port: int | None = None,
    workers: int = 1,
    cwd: Path | None = None,
    **extra_env: str,
) -> tuple[ServiceProcess, str]:
    """``python -m services.aeroalpes`` on loopback; returns the process and its base URL. With
    ``cwd``, the ``services`` package of that checkout runs (``python -m`` looks there first)."""
    port = port or free_port()
    env = base_env(
        PORT=str(port),
        HOST=LOOPBACK,
        REDIS_NODES=redis_nodes,
        AEROALPES_WORKERS=str(workers),
        **({"REDIS_PASSWORD_FILE": str(password_file)} if password_file else {}),
        **extra_env,
    )
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "services.aeroalpes"]
    proc = start_process(
        f"aeroalpes:{port}", argv, env=env, log_path=log_path, ready=lambda: http_ok(f"{url}/health"), cwd=cwd
    )
    return proc, url


def start_adapter(
    aeroalpes_url: str, log_path: Path, *, port: int | None = None, cwd: Path | None = None, **extra_env: str
) -> tuple[ServiceProcess, str]:
    """``python -m services.adapter`` on loopback; returns the process and its target host:port."""
    port = port or free_port()
    env = base_env(PORT=str(port), HOST=LOOPBACK, AEROALPES_URL=aeroalpes_url, **extra_env)
    target = f"{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "services.adapter"]
    proc = start_process(
        f"adapter:{port}", argv, env=env, log_path=log_path, ready=lambda: grpc_serving(target), cwd=cwd
    )
    return proc, target


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON objects of a log (lines that are not JSON are skipped)."""
    out = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out
