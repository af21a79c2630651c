"""The local lab: Docker containers that behave like small VMs (systemd as PID 1, sshd, apt).

``nr lab up`` builds (once) a Debian bookworm base image with debootstrap — no registry needed —
starts N containers on a Docker network in the benchmarking range 198.18.0.0/15, gives each its
own SSH host keys and the lab's key for user ``nr`` (passwordless sudo, like a cloud image's
default user), records the host keys in a known_hosts file (read through ``docker exec``, a channel
we trust, so strict host-key checking holds) and writes an inventory.

The container recipe avoids ``--privileged`` (it fails where the bounding set lacks
CAP_SYS_RESOURCE) and works on an ordinary Docker host too: all capabilities but SYS_RESOURCE,
unconfined seccomp/apparmor, writable /proc/sys, the host's cgroup namespace with /sys/fs/cgroup
mounted read-write (what systemd needs on cgroup v1 and v2), tmpfs on /run and /tmp.
Where debootstrap is not available (or not root) the base image is built from ``debian:bookworm``
with ``docker build`` instead.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from nr.errors import NrError
from nr.secrets import write_secret_file

IMAGE = "nr-lab-base:bookworm-2"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "iproute2",
    "ca-certificates",
]
MIRROR = os.environ.get("NR_LAB_MIRROR", "http://deb.debian.org/debian")
LABEL = "nr.lab"
USER = "nr"
FIRST_HOST_OFFSET = 11  # lab hosts get .11, .12, ... of the subnet
# systemd as PID 1 without --privileged (see the module docstring).
CONTAINER_FLAGS = (
    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined", "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",  # writable /proc/sys, as on a VM
    "--cgroupns=host", "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs=/run", "--tmpfs=/run/lock", "--tmpfs=/tmp:exec",
    "--stop-signal=SIGRTMIN+3", "--stop-timeout=10",  # systemd halts cleanly on SIGRTMIN+3
)  # fmt: skip


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    state: str


@dataclass(frozen=True)
class LabInfo:
    hosts: list[str]
    inventory: Path


def docker(*args: str, check: bool = True, timeout: float = 300, input: str | None = None) -> str:
    """Run the docker CLI; raise NrError with its stderr on failure."""
    exe = shutil.which("docker")
    if exe is None:
        raise NrError("docker is not installed (the lab needs a Docker engine)")
    proc = subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=timeout, check=False, input=input
    )
    if check and proc.returncode != 0:
        raise NrError(f"docker {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def new_keypair() -> tuple[bytes, str]:
    """An Ed25519 key pair: (OpenSSH private key bytes, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + " nr-lab"


def host_address(subnet: str, index: int) -> str:
    net = ipaddress.ip_network(subnet, strict=False)
    addr = net.network_address + FIRST_HOST_OFFSET + index - 1
    if addr not in net or addr == net.broadcast_address:
        raise NrError(f"subnet {subnet} has no room for lab host {index}")
    return str(addr)


def check_subnet(subnet: str) -> None:
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError as exc:
        raise NrError(f"--subnet {subnet}: {exc}") from None
    if not net.subnet_of(ipaddress.ip_network("198.18.0.0/15")):  # type: ignore[arg-type]
        raise NrError(f"--subnet {subnet}: lab networks must be inside 198.18.0.0/15 (benchmarking range)")


@dataclass(frozen=True)
class LabOptions:
    """Choices made at `nr lab up`, remembered in <state dir>/lab.json for later `up`s."""

    k3s_binary: str | None = None  # a local k3s binary for the k3s play (air-gapped delivery path)
    docker_socket: bool = False  # mount the Docker engine's socket into the hosts

    @classmethod
    def load(cls, state_dir: Path) -> LabOptions:
        path = state_dir / "lab.json"
        if not path.exists():
            return cls()
        doc = json.loads(path.read_text())
        return cls(doc.get("k3s_binary"), bool(doc.get("docker_socket")))

    def merged(self, k3s_binary: str | None, docker_socket: bool | None) -> LabOptions:
        return LabOptions(
            k3s_binary if k3s_binary is not None else self.k3s_binary,
            docker_socket if docker_socket is not None else self.docker_socket,
        )

    def save(self, state_dir: Path) -> None:
        doc = {"k3s_binary": self.k3s_binary, "docker_socket": self.docker_socket}
        (state_dir / "lab.json").write_text(json.dumps(doc, indent=1) + "\n")


def lab_inventory(
    hosts: list[tuple[str, str]], state_dir: Path, options: LabOptions = LabOptions()
) -> dict[str, dict[str, Any]]:
    """hosts/groups/defaults documents for the lab (pure). First host is the k3s server."""
    out_hosts: dict[str, Any] = {}
    for i, (name, address) in enumerate(hosts):
        groups = ["k3s_servers" if i == 0 else "k3s_agents"]
        if len(hosts) >= 3:
            groups.append("redis")
        out_hosts[name] = {"hostname": address, "groups": groups}
    defaults = {
        "username": USER,
        "data": {
            "site_name": "lab",
            "redis_password": "file:../secrets/redis_password",
            "image_base": IMAGE,  # the service images build offline on the lab's own base image
            **({"k3s_binary": options.k3s_binary} if options.k3s_binary else {}),
        },
        "connection_options": {
            "fabric": {"extras": {"key_filename": "../id_ed25519", "known_hosts": "../known_hosts"}}
        },
    }
    groups_doc: dict[str, Any] = {
        "k3s_servers": {"data": {}},
        "k3s_agents": {"data": {}},
        "redis": {"data": {}},
    }
    return {"hosts": out_hosts, "groups": groups_doc, "defaults": defaults}


_PREPARE = r"""
set -e
for i in $(seq 1 100); do
  s=$(systemctl is-system-running 2>/dev/null || true)
  case "$s" in running|degraded) break;; esac
  sleep 0.1
done
if [ ! -e /etc/ssh/.nr-host-keys ]; then
  rm -f /etc/ssh/ssh_host_*
  ssh-keygen -A >/dev/null
  touch /etc/ssh/.nr-host-keys
  systemctl restart ssh
fi
id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}
install -d -m 700 -o {user} -g {user} /home/{user}/.ssh
printf '%s\n' '{pubkey}' > /home/{user}/.ssh/authorized_keys
chown {user}:{user} /home/{user}/.ssh/authorized_keys
chmod 600 /home/{user}/.ssh/authorized_keys
echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-{user}
chmod 440 /etc/sudoers.d/90-{user}
systemctl is-active --quiet ssh || systemctl start ssh
cat /etc/ssh/ssh_host_ed25519_key.pub
"""


class Lab:
    def __init__(
        self,
        name: str = "nr-lab",
        subnet: str = "198.18.0.0/24",
        state_dir: Path = Path(".nr-lab"),
        log: Console | None = None,
        k3s_binary: Path | None = None,
        docker_socket: bool | None = None,
    ) -> None:
        self.options = LabOptions.load(state_dir).merged(
            str(k3s_binary.resolve()) if k3s_binary is not None else None, docker_socket
        )
        self.name = name
        self.subnet = subnet
        self.state_dir = state_dir
        self.log = log
        self.network = f"{name}-net"

    def _say(self, msg: str) -> None:
        if self.log is not None:
            self.log.print(msg)

    def host_name(self, index: int) -> str:
        return f"{self.name}{index}"

    # -- image ------------------------------------------------------------------------------
    def ensure_image(self) -> str:
        if docker("images", "-q", IMAGE).strip():
            return IMAGE
        self._say(f"Building the lab base image {IMAGE} (once; about a minute)…")
        if shutil.which("debootstrap") and os.geteuid() == 0:
            self._build_with_debootstrap()
        else:
            self._build_with_docker()
        return IMAGE

    def _build_with_debootstrap(self) -> None:
        with tempfile.TemporaryDirectory(prefix="nr-lab-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    "bookworm",
                    str(rootfs),
                    MIRROR,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=1800,
            )
            if proc.returncode != 0:
                raise NrError(
                    f"debootstrap failed: {proc.stderr.strip()[-800:] or proc.stdout.strip()[-800:]}"
                )
            # apt lists are fetched again by the plays, as on a fresh VM; keep the image small.
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (rootfs / sub).glob("*.deb" if "archives" in sub else "*_*"):
                    p.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(
                ["docker", "import", "-c", 'CMD ["/sbin/init"]', "-", IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                check=False,
            )
            tar.wait()
            if imp.returncode != 0:
                raise NrError(f"docker import failed: {imp.stderr.strip()}")

    def _build_with_docker(self) -> None:
        dockerfile = (
            "FROM debian:bookworm\n"
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(PACKAGES)
            + " && rm -rf /var/lib/apt/lists/*\n"
            'CMD ["/sbin/init"]\n'
        )
        with tempfile.TemporaryDirectory(prefix="nr-lab-build-") as tmp:
            (Path(tmp) / "Dockerfile").write_text(dockerfile)
            docker("build", "-t", IMAGE, tmp, timeout=1800)

    # -- hosts ------------------------------------------------------------------------------
    def _containers(self) -> list[dict[str, Any]]:
        text = docker("ps", "-a", "--filter", f"label={LABEL}={self.name}", "--format", "{{json .}}")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def status(self) -> list[LabHost]:
        hosts = []
        for c in self._containers():
            info = json.loads(docker("inspect", c["Names"]))[0]
            nets = info["NetworkSettings"]["Networks"]
            addr = nets.get(self.network, {}).get("IPAddress", "") or info["Config"]["Labels"].get(
                "nr.lab.address", ""
            )
            hosts.append(LabHost(c["Names"], addr, info["State"]["Status"]))
        return sorted(hosts, key=lambda h: (len(h.name), h.name))

    def _ensure_network(self) -> None:
        existing = docker(
            "network", "ls", "--filter", f"name=^{self.network}$", "--format", "{{.Name}}"
        ).split()
        if self.network in existing:
            info = json.loads(docker("network", "inspect", self.network))[0]
            subnets = [c.get("Subnet") for c in info.get("IPAM", {}).get("Config") or []]
            if str(ipaddress.ip_network(self.subnet, strict=False)) not in subnets:
                raise NrError(
                    f"network {self.network} exists with subnet {subnets}, not {self.subnet}; "
                    f"run nr lab down --name {self.name} first"
                )
            return
        docker("network", "create", "--subnet", self.subnet, "--label", f"{LABEL}={self.name}", self.network)

    def _run_container(self, index: int) -> None:
        name = self.host_name(index)
        address = host_address(self.subnet, index)
        labels = ["--label", f"{LABEL}={self.name}", "--label", f"nr.lab.address={address}"]
        net = ["--network", self.network, "--ip", address]
        if self.options.docker_socket:
            net += ["--volume", "/var/run/docker.sock:/var/run/docker.sock"]
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            *labels,
            *CONTAINER_FLAGS,
            *net,
            IMAGE,
            "/sbin/init",
        )

    def _prepare(self, name: str, pubkey: str) -> str:
        script = _PREPARE.replace("{user}", USER).replace("{pubkey}", pubkey)
        out = docker("exec", "-i", name, "sh", "-s", input=script, timeout=120)
        lines = [line for line in out.splitlines() if line.startswith("ssh-ed25519 ")]
        if not lines:
            raise NrError(f"lab host {name}: could not read its SSH host key")
        return lines[-1]

    def up(self, count: int) -> LabInfo:
        check_subnet(self.subnet)
        if self.options.k3s_binary and not Path(self.options.k3s_binary).is_file():
            raise NrError(f"--k3s-binary {self.options.k3s_binary}: no such file")
        docker("info", timeout=30)
        self.ensure_image()
        self._ensure_network()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key = self.state_dir / "id_ed25519"
        pub = self.state_dir / "id_ed25519.pub"
        if not key.exists():
            private, public = new_keypair()
            write_secret_file(key, private.decode().rstrip("\n"))
            pub.write_text(public + "\n")
        pubkey = pub.read_text().strip()
        existing = {c["Names"]: c for c in self._containers()}
        started: list[str] = []
        for i in range(1, count + 1):
            name = self.host_name(i)
            c = existing.get(name)
            if c is None:
                self._run_container(i)
                started.append(name)
            elif c["State"] != "running":
                docker("start", name)
        names = [self.host_name(i) for i in range(1, count + 1)]
        if started:
            self._say(f"Started {', '.join(started)}")
        first = self.host_name(1)
        if self.options.docker_socket and first in existing:
            mounts = docker("inspect", "-f", "{{range .Mounts}}{{.Destination}} {{end}}", first).split()
            if "/var/run/docker.sock" not in mounts:
                self._say(
                    f"[yellow]{first} was started without --docker-socket: run `nr lab down` and `nr lab up` "
                    "again for the k3s stand-in to run the app's pods[/yellow]"
                )
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            hostkeys = list(pool.map(lambda n: self._prepare(n, pubkey), names))
        pairs = [(n, host_address(self.subnet, i + 1)) for i, n in enumerate(names)]
        known = "".join(
            f"{addr} {hk.split()[0]} {hk.split()[1]}\n" for (_, addr), hk in zip(pairs, hostkeys, strict=True)
        )
        (self.state_dir / "known_hosts").write_text(known)
        secret = self.state_dir / "secrets" / "redis_password"
        if not secret.exists():
            write_secret_file(secret, secrets.token_urlsafe(24))
        inv_dir = self.state_dir / "inventory"
        inv_dir.mkdir(parents=True, exist_ok=True)
        self.options.save(self.state_dir)
        docs = lab_inventory(pairs, self.state_dir, self.options)
        header = f"# Written by `nr lab up` for lab '{self.name}'; rewritten on every `nr lab up`.\n"
        for fname, doc in docs.items():
            (inv_dir / f"{fname}.yaml").write_text(header + yaml.safe_dump(doc, sort_keys=False))
        gitignore = self.state_dir / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")
        return LabInfo(names, inv_dir)

    def down(self) -> int:
        names = [c["Names"] for c in self._containers()]
        if names:
            docker("rm", "-f", *names, timeout=120)
        nets = docker("network", "ls", "--filter", f"name=^{self.network}$", "--format", "{{.Name}}").split()
        if self.network in nets:
            # whatever else the hosts started on the lab network (pods run through the Docker socket),
            # running or not
            attached = docker("ps", "-aq", "--filter", f"network={self.network}", check=False).split()
            if attached:
                docker("rm", "-f", *attached, timeout=120, check=False)
            docker("network", "rm", self.network, check=False)
        for f in ("known_hosts",):
            (self.state_dir / f).unlink(missing_ok=True)
        inv = self.state_dir / "inventory"
        if inv.exists():
            shutil.rmtree(inv)
        return len(names)

    def wait_ssh(self, timeout: float = 30) -> None:
        """Block until every running lab host accepts TCP connections on port 22."""
        import socket

        deadline = time.monotonic() + timeout
        for h in self.status():
            if h.state != "running":
                continue
            while True:
                try:
                    with socket.create_connection((h.address, 22), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise NrError(f"lab host {h.name}: sshd not reachable on {h.address}:22") from None
                    time.sleep(0.2)
