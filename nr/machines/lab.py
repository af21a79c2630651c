"""The local lab: Docker containers that behave like small VMs (systemd as PID 1, sshd, apt).

``nr lab up`` builds (once) a Debian bookworm base image with debootstrap — no registry needed —
starts N containers on a Docker network in the benchmarking range 198.18.0.0/15, gives each its
own SSH host keys and the lab's key for user ``nr`` (passwordless sudo, like a cloud image's
default user), records the host keys in a known_hosts file (read through ``docker exec``, a channel
we trust, so strict host-key checking holds) and writes an inventory.

The container recipe avoids ``--privileged`` (it fails where the bounding set lacks
CAP_SYS_RESOURCE) and works on an ordinary Docker host too: all capabilities but SYS_RESOURCE,
unconfined seccomp/apparmor, writable /proc/sys, the host's cgroup namespace with /sys/fs/cgroup
mounted read-write (what systemd needs on cgroup v1 and v2), tmpfs on /run and /tmp. A host that
reboots (``systemctl reboot``) comes back by Docker's restart policy, with its address and keys.
Where debootstrap is not available (or not root) the base image is built from ``debian:bookworm``
with ``docker build`` instead.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nr.errors import NrError
from nr.formats import dns_label
from nr.machines.image import IMAGE, DockerTimeout, docker, ensure_image
from nr.machines.labfiles import USER, LabOptions, lab_inventory, write_generated_secrets, write_inventory
from nr.machines.startup import SILENT, check_inotify, died_at_start, inotify_limits
from nr.registry import registry
from nr.secrets import write_secret_file
from nr.text import command

LABEL = "nr.lab"
FIRST_HOST_OFFSET = 11  # lab hosts get .11, .12, ... of the subnet
RESTART_POLICY = "--restart=unless-stopped"
# systemd as PID 1 without --privileged (see the module docstring).
CONTAINER_FLAGS = (
    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined", "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",  # writable /proc/sys, as on a VM
    "--cgroupns=host", "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs=/run", "--tmpfs=/run/lock", "--tmpfs=/tmp:exec",
    "--stop-signal=SIGRTMIN+3", "--stop-timeout=10",  # systemd halts cleanly on SIGRTMIN+3
    # `systemctl reboot` ends PID 1 (reboot(2) in a PID namespace ends its init): Docker starts the
    # container again, with its address (--ip) and its disk (host keys) unchanged, like a VM rebooting.
    # `docker stop` (and `nr lab down`) still stop it for good.
    RESTART_POLICY,
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


PREPARE_TIMEOUT = 180  # seconds for one host's set-up (50 hosts starting at once on 2 slow cores took > 120)
# The host key is ed25519 only (what nr pins in known_hosts): `ssh-keygen -A` also made RSA and ECDSA
# keys, 0.6 s of CPU a host (15 ms for ed25519), which 50 hosts starting on 2 cores could not afford.
_PREPARE = r"""
set -e
for i in $(seq 1 100); do
  s=$(systemctl is-system-running 2>/dev/null || true)
  case "$s" in running|degraded) break;; esac
  sleep 0.1
done
if [ ! -e /etc/ssh/.nr-host-keys ]; then
  rm -f /etc/ssh/ssh_host_*
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
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
        data: dict[str, str] | None = None,
        docker_socket: bool | None = None,
    ) -> None:
        """``data``: data keys the components' lab options set (paths already absolute)."""
        self.options = LabOptions.load(state_dir).merged(dict(data or {}), docker_socket)
        self.name = name
        self.subnet = subnet
        self.state_dir = state_dir
        self.log = log
        self.network = f"{name}-net"

    def _say(self, msg: str) -> None:
        if self.log is not None:
            self.log.print(msg)

    def ensure_image(self) -> str:
        return ensure_image(self.log)

    def host_name(self, index: int) -> str:
        return f"{self.name}{index}"

    # -- image ------------------------------------------------------------------------------
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
                    f"run {command('nr', 'lab', 'down', '--name', self.name)} first"
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
        try:
            out = docker("exec", "-i", name, "sh", "-s", input=script, timeout=PREPARE_TIMEOUT)
        except DockerTimeout as exc:  # running, but never ready: systemd stuck on a limit?
            silent = SILENT.replace("{inotify}", inotify_limits())
            raise died_at_start(name) or NrError(f"lab host {name}: {exc}; {silent}") from None
        except NrError as exc:
            raise died_at_start(name) or exc from None
        lines = [line for line in out.splitlines() if line.startswith("ssh-ed25519 ")]
        if not lines:
            raise NrError(f"lab host {name}: could not read its SSH host key")
        return lines[-1]

    def _start(self, count: int, existing: dict[str, dict[str, Any]]) -> list[str]:
        """Start (or create) hosts 1..count (``existing``: the lab's containers); returns their names."""
        started: list[str] = []
        for i in range(1, count + 1):
            name = self.host_name(i)
            c = existing.get(name)
            if c is None:
                self._run_container(i)
                started.append(name)
            else:
                docker("update", RESTART_POLICY, name)  # a host made before hosts could reboot
                if c["State"] != "running":
                    docker("start", name)
        if started:
            self._say(f"Started {', '.join(started)}")
        first = self.host_name(1)
        if self.options.docker_socket and first in existing:
            mounts = docker("inspect", "-f", "{{range .Mounts}}{{.Destination}} {{end}}", first).split()
            if "/var/run/docker.sock" not in mounts:
                self._say(
                    f"[yellow]{first} was started without --docker-socket: run `nr lab down` and `nr lab up` "
                    "again to mount the Docker socket into the hosts[/yellow]"
                )
        return [self.host_name(i) for i in range(1, count + 1)]

    def _orphans(self, existing: dict[str, dict[str, Any]]) -> list[str]:
        """The lab's containers if they were made for a state folder that is gone, else none: with no
        key in ``state_dir`` this folder is new, and secrets written now would not be the ones the
        hosts' services already hold (a fresh clone on a machine whose Docker kept the lab)."""
        if (self.state_dir / "id_ed25519").exists():
            return []
        return sorted(existing, key=lambda n: (len(n), n))

    def _key(self) -> str:
        """The lab's SSH public key (the key pair is made once)."""
        key = self.state_dir / "id_ed25519"
        pub = self.state_dir / "id_ed25519.pub"
        if not key.exists():
            private, public = new_keypair()
            write_secret_file(key, private.decode().rstrip("\n"))
            pub.write_text(public + "\n")
        return pub.read_text().strip()

    def up(self, count: int) -> LabInfo:
        check_subnet(self.subnet)
        problem = dns_label(self.name)
        if problem:
            raise NrError(f"--name {self.name}: {problem} (it names the site and the hosts)")
        schema = registry().schema
        for opt in schema.lab_options:
            value = self.options.data.get(opt.key)
            if value and opt.is_path and not Path(value).is_file():
                raise NrError(f"{opt.flag} {value}: no such file")
        docker("info", timeout=30)
        existing = {c["Names"]: c for c in self._containers()}
        orphans = self._orphans(existing)
        running = {name for name, c in existing.items() if c["State"] == "running" and name not in orphans}
        check_inotify(sum(self.host_name(i) not in running for i in range(1, count + 1)))
        if orphans:
            self._say(
                f"[yellow]{', '.join(orphans)} were made with a folder other than {self.state_dir}: made anew[/yellow]"
            )
            docker("rm", "-f", *orphans, timeout=120)
            existing = {}
        self.ensure_image()
        self._ensure_network()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pubkey = self._key()
        names = self._start(count, existing)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            hostkeys = list(pool.map(lambda n: self._prepare(n, pubkey), names))
        pairs = [(n, host_address(self.subnet, i + 1)) for i, n in enumerate(names)]
        known = "".join(
            f"{addr} {hk.split()[0]} {hk.split()[1]}\n" for (_, addr), hk in zip(pairs, hostkeys, strict=True)
        )
        (self.state_dir / "known_hosts").write_text(known)
        write_generated_secrets(self.state_dir, schema)
        self.options.save(self.state_dir)
        inv_dir = self.state_dir / "inventory"
        subnet = str(ipaddress.ip_network(self.subnet, strict=False))
        docs = lab_inventory(pairs, self.state_dir, self.options, schema, self.name, subnet)
        write_inventory(inv_dir, docs, self.name)
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
