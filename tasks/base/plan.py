"""What the base play wants on a host, what it reads there, and the pure plan from one to the other.

* hostname = the inventory name (k3s refuses cloned VMs with equal hostnames: "Node password
  rejected"), resolvable through /etc/hosts;
* packages: ca-certificates, curl, kmod, procps (+ ``data.packages``), Debian/Ubuntu only;
* kernel modules br_netfilter and overlay, loaded now and at boot;
* sysctls for k3s and Redis (ip_forward, bridge-nf-call-iptables, vm.overcommit_memory=1), set now
  and persisted in /etc/sysctl.d/90-nr.conf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from shlex import quote

from nornir.core.inventory import Host

from nr.changes import Change
from nr.facts import Facts
from nr.ops import apt
from nr.ops.files import FileSpec, plan_files

BASE_PACKAGES = ("ca-certificates", "curl", "kmod", "procps")
MODULES = ("br_netfilter", "overlay")
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "vm.overcommit_memory": "1",
}
MODULES_FILE = "/etc/modules-load.d/nr.conf"
SYSCTL_FILE = "/etc/sysctl.d/90-nr.conf"
SUPPORTED_OS = ("debian", "ubuntu")

# How to tell a module is present even when it is built into the kernel (no /sys/module entry,
# nothing for modprobe to load, e.g. inside a container).
_MODULE_PROBES = {
    "br_netfilter": "[ -d /sys/module/br_netfilter ] || [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]",
    "overlay": "[ -d /sys/module/overlay ] || grep -qw overlay /proc/filesystems",
}


@dataclass(frozen=True)
class BaseSpec:
    """What the base play wants on one host (pure data, from the inventory)."""

    hostname: str | None  # None: leave the hostname alone (data.set_hostname: false)
    packages: tuple[str, ...]
    modules: tuple[str, ...] = MODULES
    sysctls: dict[str, str] = field(default_factory=lambda: dict(SYSCTLS))

    def files(self) -> list[FileSpec]:
        mods = "# Written by nr (base play): kernel modules k3s needs.\n" + "".join(
            f"{m}\n" for m in self.modules
        )
        sysctl = "# Written by nr (base play): k3s and Redis settings.\n" + "".join(
            f"{k} = {v}\n" for k, v in sorted(self.sysctls.items())
        )
        return [FileSpec.text(MODULES_FILE, mods), FileSpec.text(SYSCTL_FILE, sysctl)]


def spec_for(host: Host) -> BaseSpec:
    extra = tuple(host.get("packages") or ())
    set_hostname = host.get("set_hostname")
    return BaseSpec(
        hostname=None if set_hostname is False else host.name,
        packages=tuple(dict.fromkeys(BASE_PACKAGES + extra)),
    )


# the kernel's hostname, as `hostname` prints it, read by the shell into $h (no process: proc_sys_kernel(5))
_READ_HOSTNAME = "read -r h < /proc/sys/kernel/hostname"


def facts_commands(spec: BaseSpec) -> dict[str, str]:
    """Read-only shell snippets whose outputs :func:`plan` needs (one round trip in total)."""
    sysctl_lines = "; ".join(
        f"v=MISSING; {{ read -r v < /proc/sys/{k.replace('.', '/')}; }} 2>/dev/null; printf '%s=%s\\n' {quote(k)} \"$v\""
        for k in spec.sysctls
    )
    module_lines = "; ".join(
        f"if {_MODULE_PROBES.get(m, f'[ -d /sys/module/{m} ]')}; then echo {m}=loaded; else echo {m}=absent; fi"
        for m in spec.modules
    )
    packages = apt.installed(spec.packages)
    return {
        "os": '. /etc/os-release && echo "$ID ${VERSION_ID:-} ${ID_LIKE:-}"',
        "hostname": f'{_READ_HOSTNAME} && echo "$h"',
        "hosts_entry": f'{_READ_HOSTNAME}; grep -Ec "^[^#]*[[:space:]]$h([[:space:]]|$)" /etc/hosts || true',
        packages.name: packages.command,
        "sysctls": sysctl_lines,
        "modules": module_lines,
    }


def check_commands(spec: BaseSpec) -> dict[str, str]:
    """What ``nr check`` reads on top of :func:`facts_commands` (kept out of the apply path:
    timedatectl starts systemd-timedated through D-Bus, which is slow)."""
    return {
        **facts_commands(spec),
        "swap": "tail -n +2 /proc/swaps | wc -l",
        "virt": "systemd-detect-virt -c 2>/dev/null || true",
        "timesync": "timedatectl show -p NTPSynchronized --value 2>/dev/null || echo unknown",
    }


def pairs(text: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, _, v = line.partition(sep)
            out[k.strip()] = v.strip()
    return out


def installed_packages(spec: BaseSpec, facts: Facts) -> dict[str, str]:
    return facts.get(apt.installed(spec.packages))


def os_problem(facts: Facts) -> str | None:
    ident = facts.out("os").split()
    if not ident or not any(x in SUPPORTED_OS for x in [ident[0], *ident[2:]]):
        return f"unsupported OS '{facts.out('os').strip()}': nr supports Debian and Ubuntu"
    return None


def _hostname_changes(spec: BaseSpec, facts: Facts) -> list[Change]:
    if spec.hostname is None:
        return []
    changes = []
    current = facts.out("hostname").strip()
    name = quote(spec.hostname)
    if current != spec.hostname:
        script = (
            f"if command -v hostnamectl >/dev/null && hostnamectl set-hostname {name} 2>/dev/null; then :; "
            f"else hostname {name}; printf '%s\\n' {name} > /etc/hostname; fi"
        )
        changes.append(
            Change("hostname", spec.hostname, current, script, f"~ hostname {current} -> {spec.hostname}")
        )
    if current != spec.hostname or facts.out("hosts_entry").strip() in ("", "0"):
        script = (
            f"grep -Eq '^[^#]*[[:space:]]'{name}'([[:space:]]|$)' /etc/hosts || "
            f"printf '127.0.1.1\\t%s\\n' {name} >> /etc/hosts"
        )
        changes.append(
            Change("/etc/hosts entry", f"127.0.1.1 {spec.hostname}", "missing", script,
                   f"+ /etc/hosts: 127.0.1.1 {spec.hostname}")
        )  # fmt: skip
    return changes


def _kernel_changes(spec: BaseSpec, facts: Facts) -> list[Change]:
    changes = []
    loaded = pairs(facts.out("modules"))
    for m in spec.modules:
        if loaded.get(m) != "loaded":
            have = loaded.get(m, "unknown")
            changes.append(
                Change(f"kernel module {m}", "loaded", have, f"modprobe {quote(m)}", f"+ modprobe {m}")
            )
    values = pairs(facts.out("sysctls"))
    for key, want in spec.sysctls.items():
        have = values.get(key, "MISSING")
        if have != want:
            script = f"echo {quote(want)} > /proc/sys/{key.replace('.', '/')}"
            changes.append(Change(f"sysctl {key}", want, have, script, f"~ sysctl {key} {have} -> {want}"))
    return changes


def plan(spec: BaseSpec, facts: Facts) -> list[Change]:
    """Every change the base play would make on a host with ``facts`` (pure)."""
    changes = _hostname_changes(spec, facts)
    package_change = apt.plan_packages(spec.packages, installed_packages(spec, facts))
    if package_change is not None:
        changes.append(package_change)
    changes += plan_files(spec.files(), facts.files)
    return changes + _kernel_changes(spec, facts)
