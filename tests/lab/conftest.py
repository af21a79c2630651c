"""Fixtures for tests against the local lab: real containers running systemd and sshd.

One lab (3 hosts on 198.18.1.0/24) is shared by the whole session; modules run in file order
(test_01_base first, while the hosts are still fresh). NR_TEST_LAB and NR_TEST_SUBNET give the lab
another name and network, so that several test sessions (e.g. in separate worktrees) can run on one
machine at once. Without a Docker engine the lab tests are
skipped, unless NR_REQUIRE_LAB=1 (set by scripts/test in CI), where that is an error.
"""

from __future__ import annotations

import ipaddress
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
import yaml

from nr.machines.lab import Lab
from tests.conftest import REPO

LAB_NAME = os.environ.get("NR_TEST_LAB", "nrt")
LAB_SUBNET = os.environ.get("NR_TEST_SUBNET", "198.18.1.0/24")
SVC_API = f"{LAB_NAME}-svc-api"


def neighbour_subnet() -> str:
    """The /24 after the test lab's: for labs a test makes by hand (as the workspace rules give N+1)."""
    net = ipaddress.ip_network(LAB_SUBNET, strict=False)
    return str(ipaddress.ip_network((int(net.network_address) + 256, 24)))


SVC_ADAPTER = f"{LAB_NAME}-svc-adapter"


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
        if args and args[0] in ("run", "check", "drift", "inventory", "status") and "-i" not in args:
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


def pin_site_name(inventory: Path, site: str) -> None:
    """The lab names its site after itself (LAB_NAME); tests/lab/test_03_k3s.py still expects the
    kubeconfig context 'lab'. Set as an operator would (`nr lab up` keeps the edit) until it uses
    LAB_NAME. Each test session has its own KUBECONFIG, so labs do not collide here."""
    path = inventory / "defaults.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["data"]["site_name"] = site
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    if not docker_ok():
        if os.environ.get("NR_REQUIRE_LAB") == "1":
            pytest.fail("NR_REQUIRE_LAB=1 but no Docker engine answers `docker info`")
        pytest.skip("no Docker engine: lab tests need one (scripts/bootstrap starts dockerd)")
    state_dir = tmp_path_factory.mktemp("lab")
    lab = Lab(
        name=LAB_NAME,
        subnet=LAB_SUBNET,
        state_dir=state_dir,
        data={"k3s_binary": str(REPO / "tests" / "fakes" / "k3s")},
        docker_socket=True,
    )
    # the k3s play merges the cluster into $KUBECONFIG: keep the tests out of the operator's ~/.kube
    os.environ["KUBECONFIG"] = str(state_dir / "kubeconfig")
    lab.down()  # leftovers of an interrupted run
    info = lab.up(3)
    pin_site_name(info.inventory, "lab")
    try:
        yield LabEnv(lab, state_dir, info.inventory)
    finally:
        if os.environ.get("NR_KEEP_LAB") != "1":
            lab.down()


@dataclass
class Services:
    """The real AeroAlpes images running as containers on the lab network, backed by the lab's Redis Cluster."""

    aeroalpes: str  # address of the REST container
    adapter: str  # address of the adapter container

    @property
    def adapter_target(self) -> str:
        return f"{self.adapter}:50051"


SERVICE_LABEL = "nr.test.services"


def _docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="session")
def images() -> list[str]:
    """Both service images, built offline on the lab's base image (or $BASE_IMAGE), unless Docker has
    them already: the tag is the one `nr run deploy` uses (it names the sources), and it does not build
    them again either. A rebuild gives the same tag another image id (the project wheel is not
    byte-reproducible), so every lab on this machine that has them deployed would show drift."""
    from tasks.deploy.images import IMAGES, build_images, image_ref, source_tag

    tag = source_tag()
    refs = [image_ref(spec, tag) for spec in IMAGES.values()]
    if all(subprocess.run(["docker", "image", "inspect", r], capture_output=True, check=False).returncode == 0
           for r in refs):  # fmt: skip
        return refs
    base = os.environ.get("BASE_IMAGE") or Lab().ensure_image()
    return build_images(base_image=base, tag=tag)


@pytest.fixture(scope="session")
def services(lab: LabEnv, images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    for play in ("base", "redis"):  # the Redis Cluster the services keep reservations in
        res = lab.nr("run", play)
        assert res.code == 0, res.stdout + res.stderr
    statuses = lab.lab.status()
    nodes = ",".join(f"{h.address}:{p}" for h in statuses[:3] for p in (7000, 7003))
    secret = tmp_path_factory.mktemp("svc") / "redis-password"
    secret.write_text((lab.state_dir / "secrets" / "redis_password").read_text())
    secret.chmod(0o444)  # read by the container's uid 10001 (a Kubernetes Secret volume does the same)
    net = lab.lab.network
    base = statuses[0].address.rsplit(".", 1)[0]
    api_ip, adapter_ip = f"{base}.60", f"{base}.61"
    _docker("rm", "-f", SVC_API, SVC_ADAPTER)
    aeroalpes, adapter = images
    _docker("run", "-d", "--name", SVC_API, "--label", SERVICE_LABEL, "--network", net, "--ip", api_ip,
            "-e", f"REDIS_NODES={nodes}", "-e", "REDIS_PASSWORD_FILE=/run/secrets/redis",
            "-v", f"{secret}:/run/secrets/redis:ro", "--read-only", "--tmpfs=/tmp", aeroalpes)  # fmt: skip
    _docker("run", "-d", "--name", SVC_ADAPTER, "--label", SERVICE_LABEL, "--network", net, "--ip", adapter_ip,
            "-e", f"AEROALPES_URL=http://{api_ip}:5000", "--read-only", "--tmpfs=/tmp", adapter)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = _docker("inspect", "-f", "{{.State.Health.Status}}", SVC_API, SVC_ADAPTER).split()
            if states == ["healthy", "healthy"]:
                break
            time.sleep(1)
        else:
            logs = _docker("logs", "--tail", "20", SVC_API)
            raise AssertionError(f"service containers not healthy: {states}\n{logs}")
        yield Services(api_ip, adapter_ip)
    finally:
        if os.environ.get("NR_KEEP_LAB") != "1":
            subprocess.run(["docker", "rm", "-f", SVC_API, SVC_ADAPTER], capture_output=True, check=False)
