"""The ``base`` play: host preparation every later component needs.

* hostname = the inventory name (k3s refuses cloned VMs with equal hostnames: "Node password
  rejected"), resolvable through /etc/hosts;
* packages: ca-certificates, curl, kmod, procps (+ ``data.packages``), Debian/Ubuntu only;
* kernel modules br_netfilter and overlay, loaded now and at boot;
* sysctls for k3s and Redis (ip_forward, bridge-nf-call-iptables, vm.overcommit_memory=1), set now
  and persisted in /etc/sysctl.d/90-nr.conf;
* checks: swap (warning: kubelet and Redis latency), time synchronisation (warning).

One round trip reads everything (:func:`facts_commands`), a pure function computes the changes
(:func:`plan`), and one more round trip applies them — only when something differs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nornir.core.inventory import Host
from nornir.core.task import Result, Task

from nr.changes import Change, FileSpec, apply_changes, plan_files
from nr.connection import quote, remote
from nr.facts import Facts, gather
from nr.play import CheckItem, PlayContext

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


def facts_commands(spec: BaseSpec) -> dict[str, str]:
    """Read-only shell snippets whose outputs :func:`plan` needs (one round trip in total)."""
    pkgs = " ".join(quote(p) for p in spec.packages)
    sysctl_lines = "; ".join(
        f"v=MISSING; {{ read -r v < /proc/sys/{k.replace('.', '/')}; }} 2>/dev/null; printf '%s=%s\\n' {quote(k)} \"$v\""
        for k in spec.sysctls
    )
    module_lines = "; ".join(
        f"if {_MODULE_PROBES.get(m, f'[ -d /sys/module/{m} ]')}; then echo {m}=loaded; else echo {m}=absent; fi"
        for m in spec.modules
    )
    return {
        "os": '. /etc/os-release && echo "$ID ${VERSION_ID:-} ${ID_LIKE:-}"',
        "hostname": "hostname",
        "hosts_entry": 'grep -Ec "^[^#]*[[:space:]]$(hostname)([[:space:]]|$)" /etc/hosts || true',
        "packages": f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {pkgs} 2>/dev/null || true",
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


def _pairs(text: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, _, v = line.partition(sep)
            out[k.strip()] = v.strip()
    return out


def installed_packages(facts: Facts) -> set[str]:
    return {
        line.split()[0]
        for line in facts.out("packages").splitlines()
        if len(line.split()) == 2 and line.split()[1] == "installed"
    }


def os_problem(facts: Facts) -> str | None:
    ident = facts.out("os").split()
    if not ident or not any(x in SUPPORTED_OS for x in [ident[0], *ident[2:]]):
        return f"unsupported OS '{facts.out('os').strip()}': nr supports Debian and Ubuntu"
    return None


def plan(spec: BaseSpec, facts: Facts) -> list[Change]:
    """Every change the base play would make on a host with ``facts`` (pure)."""
    changes: list[Change] = []
    current = facts.out("hostname").strip()
    if spec.hostname is not None and current != spec.hostname:
        name = quote(spec.hostname)
        script = (
            f"if command -v hostnamectl >/dev/null && hostnamectl set-hostname {name} 2>/dev/null; then :; "
            f"else hostname {name}; printf '%s\\n' {name} > /etc/hostname; fi"
        )
        changes.append(
            Change("hostname", spec.hostname, current, script, f"~ hostname {current} -> {spec.hostname}")
        )
    if spec.hostname is not None and (
        current != spec.hostname or facts.out("hosts_entry").strip() in ("", "0")
    ):
        name = quote(spec.hostname)
        script = (
            f"grep -Eq '^[^#]*[[:space:]]'{name}'([[:space:]]|$)' /etc/hosts || "
            f"printf '127.0.1.1\\t%s\\n' {name} >> /etc/hosts"
        )
        changes.append(
            Change(
                "/etc/hosts entry",
                f"127.0.1.1 {spec.hostname}",
                "missing",
                script,
                f"+ /etc/hosts: 127.0.1.1 {spec.hostname}",
            )
        )
    missing = [p for p in spec.packages if p not in installed_packages(facts)]
    if missing:
        pkgs = " ".join(quote(p) for p in missing)
        script = (
            "export DEBIAN_FRONTEND=noninteractive\n"
            "apt-get update -qq\n"
            f"apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold {pkgs} >/dev/null"
        )
        changes.append(
            Change(
                f"packages {' '.join(missing)}",
                "installed",
                "not installed",
                script,
                "".join(f"+ package {p}\n" for p in missing),
            )
        )
    changes += plan_files(spec.files(), facts.files)
    loaded = _pairs(facts.out("modules"))
    for m in spec.modules:
        if loaded.get(m) != "loaded":
            changes.append(
                Change(
                    f"kernel module {m}",
                    "loaded",
                    loaded.get(m, "unknown"),
                    f"modprobe {quote(m)}",
                    f"+ modprobe {m}",
                )
            )
    values = _pairs(facts.out("sysctls"))
    for key, want in spec.sysctls.items():
        have = values.get(key, "MISSING")
        if have != want:
            path = "/proc/sys/" + key.replace(".", "/")
            script = f"echo {quote(want)} > {path}"
            changes.append(Change(f"sysctl {key}", want, have, script, f"~ sysctl {key} {have} -> {want}"))
    return changes


def _converge(task: Task, spec: BaseSpec) -> Result:
    conn = remote(task)
    facts = gather(conn, files=[f.path for f in spec.files()], commands=facts_commands(spec))
    problem = os_problem(facts)
    if problem:
        return Result(host=task.host, failed=True, result=problem, changes=[])
    changes = plan(spec, facts)
    result = apply_changes(task, changes, conn=conn)
    result.hostname = facts.out("hostname").strip()  # type: ignore[attr-defined]
    return result


def _check(task: Task, spec: BaseSpec) -> Result:
    facts = gather(remote(task), files=[f.path for f in spec.files()], commands=check_commands(spec))
    items: list[CheckItem] = []
    problem = os_problem(facts)
    items.append(CheckItem("os supported", problem is None, facts.out("os").strip(), problem or ""))
    current = facts.out("hostname").strip()
    if spec.hostname is not None:
        items.append(
            CheckItem("hostname", current == spec.hostname, current, f"expected {spec.hostname}: nr run base")
        )
    loaded = _pairs(facts.out("modules"))
    for m in spec.modules:
        items.append(
            CheckItem(f"module {m}", loaded.get(m) == "loaded", loaded.get(m, "unknown"), "nr run base")
        )
    values = _pairs(facts.out("sysctls"))
    for key, want in spec.sysctls.items():
        items.append(
            CheckItem(
                f"sysctl {key}", values.get(key) == want, f"{values.get(key)} (want {want})", "nr run base"
            )
        )
    missing = [p for p in spec.packages if p not in installed_packages(facts)]
    items.append(
        CheckItem(
            "packages",
            not missing,
            "missing: " + " ".join(missing) if missing else "all installed",
            "nr run base",
        )
    )
    swaps = int(facts.out("swap").strip() or 0)
    items.append(
        CheckItem(
            "swap off",
            swaps == 0,
            f"{swaps} swap device(s)",
            "swap slows kubelet and Redis under memory pressure: swapoff -a and remove it from /etc/fstab",
            warning=True,
        )
    )
    virt = facts.out("virt").strip()
    sync = facts.out("timesync").strip()
    in_container = virt not in ("", "none")
    items.append(
        CheckItem(
            "time synchronised",
            sync == "yes" or in_container,
            f"container ({virt}): host clock" if in_container else f"NTPSynchronized={sync}",
            "enable systemd-timesyncd or chrony: Redis failover and TLS certificates need correct clocks",
            warning=True,
        )
    )
    passed = sum(i.ok for i in items)
    return Result(host=task.host, result=f"{passed}/{len(items)} passed", checks=items, hostname=current)


class BaseComponent:
    name = "base"
    order = 10
    in_site = True
    description = "hostnames, packages, kernel modules, sysctls; swap and time checks"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def _duplicate_hostnames(self, ctx: PlayContext, results: dict[str, str]) -> None:
        counts = Counter(results.values())
        for host in ctx.hosts():
            name = results.get(host.name)
            if name and counts[name] > 1:
                others = sorted(h for h, n in results.items() if n == name and h != host.name)
                ctx.fail_host(
                    host,
                    "hostname",
                    f"hostname '{name}' is also used by {', '.join(others)}; k3s needs "
                    "unique hostnames (remove data.set_hostname: false or rename the host)",
                )

    def apply(self, ctx: PlayContext) -> None:
        specs = {h.name: spec_for(h) for h in ctx.hosts()}
        result = ctx.run("apply", lambda task: _converge(task, specs[task.host.name]))
        names = {h: getattr(r[0], "hostname", "") for h, r in result.items() if not r.failed}
        self._duplicate_hostnames(ctx, names)

    def check(self, ctx: PlayContext) -> None:
        specs = {h.name: spec_for(h) for h in ctx.hosts()}
        result = ctx.run("check", lambda task: _check(task, specs[task.host.name]))
        names = {h: getattr(r[0], "hostname", "") for h, r in result.items() if not r.failed}
        self._duplicate_hostnames(ctx, names)

    def drift(self, ctx: PlayContext) -> None:
        self.apply(ctx)  # the context is a dry run: changes are computed and reported, never made


component = BaseComponent()
