"""The OS update of one host (Debian/Ubuntu): the scripts, and parsers of what apt and dpkg print (pure).

* :func:`upgrade_script`: ``apt-get update`` then ``apt-get -y upgrade`` (or ``full-upgrade``),
  non-interactive (waiting for the dpkg lock that apt-daily or unattended-upgrades may hold), keeping
  every config file the operator changed (``--force-confdef
  --force-confold``: a changed file stays, an unchanged one takes the package's new version), with the
  installed versions before and after (what changed is their difference) and whether the host asks for
  a reboot (``/var/run/reboot-required``, written by packages such as the kernel's; its ``.pkgs`` names
  them). apt's own output goes to stderr: it is shown only when the upgrade fails.
* :func:`look_script`: before a host is touched, whether it has anything to do (packages to upgrade,
  a reboot pending), on its package lists refreshed by ``apt-get update``;
* :func:`plan_script` (``--dry-run``): what an upgrade would do, from package lists fetched into a
  temporary folder (``Dir::State::Lists``) and ``apt-get -s``: nothing of the host's state changes,
  not even its package lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.patch.contract import UPGRADE_CHOICES

REBOOT_REQUIRED = "/var/run/reboot-required"
ENV = "export DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none NEEDRESTART_MODE=a"
KEEP_CONFIG = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
# apt-daily / unattended-upgrades may hold the dpkg lock: wait for it (apt >= 1.9.11) instead of failing
LOCK_WAIT = "-o DPkg::Lock::Timeout=600"
VERSIONS = "dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n' | awk '$1 ~ /^ii/ {print $2, $3}'"
REBOOT_FACT = (
    f'echo "@@reboot"; if [ -e {REBOOT_REQUIRED} ]; then echo required; '
    f"cat {REBOOT_REQUIRED}.pkgs 2>/dev/null || true; fi"
)


def _mode(mode: str) -> str:
    if mode not in UPGRADE_CHOICES:
        raise ValueError(f"apt-get mode {mode!r}: must be one of {', '.join(UPGRADE_CHOICES)}")
    return mode


def upgrade_script(mode: str) -> str:
    """Upgrade the host (stdout: ``@@before``/``@@after`` versions and ``@@reboot``; apt on stderr)."""
    return "\n".join(
        [
            ENV,
            'echo "@@before"',
            VERSIONS,
            f"apt-get -q {LOCK_WAIT} update >&2",
            f"apt-get -q -y {LOCK_WAIT} {KEEP_CONFIG} {_mode(mode)} >&2",
            'echo "@@after"',
            VERSIONS,
            REBOOT_FACT,
        ]
    )


def look_script(mode: str) -> str:
    """Fresh package lists (``apt-get update``, as the upgrade would), then what the upgrade would install
    (``apt-get -s``) and whether a reboot is pending: a host with neither is left alone."""
    return "\n".join(
        [
            ENV,
            f"apt-get -q {LOCK_WAIT} update >&2",
            'echo "@@simulate"',
            f"apt-get -s -q {KEEP_CONFIG} {_mode(mode)}",
            REBOOT_FACT,
        ]
    )


def plan_script(mode: str) -> str:
    """Simulate the upgrade on fresh package lists in a temporary folder (changes nothing)."""
    return "\n".join(
        [
            ENV,
            "d=$(mktemp -d /tmp/nr-patch.XXXXXX); trap 'rm -rf \"$d\"' EXIT",
            'mkdir -p "$d/lists/partial" "$d/cache/archives/partial"; chmod 755 "$d"',
            'chown -R _apt "$d/lists/partial" 2>/dev/null || true',
            'o="-o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache="',
            "apt-get -q $o update >&2",
            'echo "@@simulate"',
            f"apt-get -s -q $o {KEEP_CONFIG} {_mode(mode)}",
            REBOOT_FACT,
        ]
    )


def sections(text: str) -> dict[str, list[str]]:
    """``@@name`` lines split stdout into named sections (lines kept as they are)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@") and line[2:].strip().isidentifier():
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line)
    return out


@dataclass(frozen=True)
class PackageChange:
    name: str
    old: str | None  # None: newly installed
    new: str | None  # None: removed

    def describe(self) -> str:
        if self.old is None:
            return f"+ {self.name} {self.new} (new)"
        if self.new is None:
            return f"- {self.name} {self.old} (removed)"
        return f"~ {self.name} {self.old} -> {self.new}"


# `Inst libssl3 [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian:12.5/stable [amd64])`, `Remv pkg [1.0]`
_INST = re.compile(r"^Inst (\S+)(?: \[([^\]]+)\])? \((\S+)")
_REMV = re.compile(r"^Remv (\S+)(?: \[([^\]]+)\])?")


@dataclass(frozen=True)
class Simulation:
    """What ``apt-get -s upgrade`` says it would do."""

    changes: tuple[PackageChange, ...]
    kept_back: tuple[str, ...]  # upgradable, but only with new or removed packages (full-upgrade)


def parse_simulation(lines: list[str]) -> Simulation:
    changes: list[PackageChange] = []
    kept: list[str] = []
    in_kept = False
    for line in lines:
        if line.startswith("The following packages have been kept back:"):
            in_kept = True
            continue
        if in_kept and line.startswith(" "):
            kept += line.split()
            continue
        in_kept = False
        if m := _INST.match(line):
            changes.append(PackageChange(m[1], m[2], m[3]))
        elif m := _REMV.match(line):
            changes.append(PackageChange(m[1], m[2], None))
    return Simulation(tuple(changes), tuple(kept))


def versions(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, _, version = line.strip().partition(" ")
        if name and version:
            out[name] = version
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[PackageChange]:
    """What an upgrade changed: packages upgraded, installed or removed (by name)."""
    names = sorted(set(before) | set(after))
    return [PackageChange(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]


@dataclass(frozen=True)
class RebootFact:
    required: bool
    packages: tuple[str, ...]  # /var/run/reboot-required.pkgs

    def describe(self) -> str:
        if not self.required:
            return f"{REBOOT_REQUIRED} absent"
        names = ", ".join(self.packages[:5]) + (", ..." if len(self.packages) > 5 else "")
        return f"{REBOOT_REQUIRED} exists" + (f" ({names})" if names else "")


def reboot_fact(lines: list[str]) -> RebootFact:
    if not lines or lines[0].strip() != "required":
        return RebootFact(False, ())
    return RebootFact(True, tuple(dict.fromkeys(x.strip() for x in lines[1:] if x.strip())))


def summary(changes: list[PackageChange] | tuple[PackageChange, ...]) -> str:
    if not changes:
        return "no package to upgrade"
    return f"{len(changes)} package{'s' if len(changes) != 1 else ''}"


def listing(changes: list[PackageChange] | tuple[PackageChange, ...]) -> str:
    return "".join(c.describe() + "\n" for c in changes)
