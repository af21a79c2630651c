"""Fixtures for tests against the local lab: real containers running systemd and sshd.

One lab (3 hosts on 198.18.1.0/24) is shared by the whole session; modules run in file order
(test_01_base first, while the hosts are still fresh). Without a Docker engine the lab tests are
skipped, unless NR_REQUIRE_LAB=1 (set by scripts/test in CI), where that is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nr.lab import Lab

LAB_NAME = "nrt"
LAB_SUBNET = "198.18.1.0/24"


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@dataclass
class NrResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class LabEnv:
    lab: Lab
    state_dir: Path
    inventory: Path

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.lab.status()]

    def nr(
        self,
        *args: str,
        inventory: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> NrResult:
        """Run the real CLI in a subprocess against the lab inventory (or ``inventory``)."""
        cmd = [sys.executable, "-m", "nr", *args]
        if args and args[0] in ("run", "check", "drift", "inventory") and "-i" not in args:
            cmd += ["-i", str(inventory or self.inventory)]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
        return NrResult(proc.returncode, proc.stdout, proc.stderr)

    def exec(self, host: str, script: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["docker", "exec", "-i", host, "sh", "-s"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker exec {host} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def stop(self, host: str) -> None:
        subprocess.run(["docker", "stop", host], capture_output=True, check=True)

    def start(self, host: str) -> None:
        subprocess.run(["docker", "start", host], capture_output=True, check=True)
        self.lab.wait_ssh(60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = self.exec(host, "systemctl is-system-running || true", check=False).strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.3)
        raise AssertionError(f"{host} did not finish booting")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    if not docker_ok():
        if os.environ.get("NR_REQUIRE_LAB") == "1":
            pytest.fail("NR_REQUIRE_LAB=1 but no Docker engine answers `docker info`")
        pytest.skip("no Docker engine: lab tests need one (scripts/bootstrap starts dockerd)")
    state_dir = tmp_path_factory.mktemp("lab")
    lab = Lab(name=LAB_NAME, subnet=LAB_SUBNET, state_dir=state_dir)
    lab.down()  # leftovers of an interrupted run
    info = lab.up(3)
    try:
        yield LabEnv(lab, state_dir, info.inventory)
    finally:
        if os.environ.get("NR_KEEP_LAB") != "1":
            lab.down()
