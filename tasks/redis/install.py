"""One Redis host over SSH: what it should have, what it has (one facts round trip), and the changes between.

A host runs Debian's ``redis-server`` package with the stock single-instance service stopped, and one
``redis-server@PORT`` unit per instance with its config (0640 redis, password lines masked in diffs) and
data folder; with the firewall on, the ``nftables`` package and nr's table (:mod:`tasks.redis.firewall`).
:func:`plan_host` is pure: facts in, changes (each with its script) and findings out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from shlex import quote

from nr.changes import Change
from nr.facts import Facts
from nr.ops import apt, systemd
from nr.ops.files import FileSpec, plan_files
from nr.outcome import Finding
from tasks.redis import firewall as fw
from tasks.redis.config import InstanceConfig
from tasks.redis.site import RedisSite

PACKAGE = "redis-server"
STOCK_UNIT = "redis-server.service"
DIR_STATE = "redis:redis 750"


@dataclass(frozen=True)
class HostSpec:
    """What one Redis host should have."""

    site: RedisSite
    host: str
    firewall: fw.FirewallSpec | None  # None: the firewall is off (data.redis_firewall: false)

    @property
    def configs(self) -> tuple[InstanceConfig, ...]:
        return tuple(self.site.configs[self.host])

    @property
    def packages(self) -> tuple[str, ...]:
        return (PACKAGE, fw.PACKAGE) if self.firewall else (PACKAGE,)

    @property
    def units(self) -> tuple[str, ...]:
        return (STOCK_UNIT, *(c.unit for c in self.configs), *((fw.UNIT,) if self.firewall else ()))

    def firewall_files(self) -> list[FileSpec]:
        if self.firewall is None:
            return []
        return [FileSpec.text(fw.FILE, self.firewall.render()), FileSpec.text(fw.UNIT_FILE, fw.unit_text())]

    def files(self) -> list[FileSpec]:
        return self.site.files(self.host) + self.firewall_files()


PACKAGES = "packages"
UNITS = "units"


def facts(spec: HostSpec) -> tuple[list[str], dict[str, str]]:
    """What :func:`plan_host` needs to know (files and commands), read in one round trip."""
    commands = {
        f"dir {c.port}": f"stat -c '%U:%G %a' {quote(c.dir)} 2>/dev/null || echo missing"
        for c in spec.configs
    }
    commands[PACKAGES] = apt.installed(spec.packages, PACKAGES).command
    commands[UNITS] = systemd.units(spec.units, UNITS).command
    if spec.firewall is not None:
        commands[fw.LOADED.name] = fw.LOADED.command
    return [f.path for f in spec.files()], commands


@dataclass(frozen=True)
class HostPlan:
    changes: list[Change]
    findings: list[Finding] = field(default_factory=list)  # firewall differences, named one by one


def _packages(spec: HostSpec, installed: dict[str, str]) -> list[Change]:
    change = apt.plan_packages(spec.packages, installed)
    return [change] if change else []


def _stock(installed: bool, unit: systemd.UnitState) -> list[Change]:
    """Debian starts the single-instance service with the package: stop and disable it."""
    if installed and not unit.running and not unit.is_enabled:
        return []
    return [
        Change(
            f"service {STOCK_UNIT}",
            "stopped, disabled",
            f"{unit.active}, {unit.enabled or 'not enabled'}" if installed else "(starts with the package)",
            systemd.stop_script([STOCK_UNIT]),
            f"- stop and disable {STOCK_UNIT} (the single-instance default)",
        )
    ]


def _folders(spec: HostSpec, facts: Facts) -> list[Change]:
    out = []
    for c in spec.configs:
        have = facts.out(f"dir {c.port}").strip()
        if have != DIR_STATE:
            out.append(
                Change(
                    f"folder {c.dir}",
                    DIR_STATE,
                    have,
                    f"install -d -o redis -g redis -m 0750 {quote(c.dir)}",
                    f"+ folder {c.dir} (redis:redis 0750)",
                )
            )
    return out


def _units(spec: HostSpec, states: dict[str, systemd.UnitState]) -> list[Change]:
    """Instances not enabled and running: ``enable --now`` (a running instance is not bounced)."""
    out: list[Change] = []
    for c in spec.configs:
        state = states.get(c.unit, systemd.UNKNOWN)
        if not (state.running and state.is_enabled):
            out.append(
                Change(
                    f"service {c.unit}",
                    "enabled, running",
                    f"{state.active}, {state.enabled or 'not enabled'}",
                    systemd.start_script([c.unit], reload=not out),
                    f"+ enable and start {c.unit}",
                )
            )
    return out


def _firewall(spec: HostSpec, facts: Facts, file_changes: list[Change]) -> HostPlan:
    if spec.firewall is None:
        return HostPlan([])
    loaded = facts.get(fw.LOADED)
    found = [
        Finding(what, expected, actual) for what, expected, actual in fw.differences(spec.firewall, loaded)
    ]
    state = facts.get(systemd.units(spec.units, UNITS)).get(fw.UNIT, systemd.UNKNOWN)
    if not state.is_enabled:
        found.append(
            Finding(f"service {fw.UNIT}", "enabled (loads the table at boot)", state.enabled or "not enabled")
        )
    if not state.running:
        found.append(Finding(f"service {fw.UNIT}", "active", state.active))
    if not (found or file_changes):
        return HostPlan(file_changes)
    why = "; ".join(f"{f.what}: {f.actual}" for f in found[:3]) or "its file changed"
    load = Change(
        f"firewall {fw.UNIT}",
        f"table inet {fw.TABLE} as in {fw.FILE}",
        why,
        fw.load_script(),
        f"~ load table inet {fw.TABLE} ({fw.UNIT}): Redis ports only from the site\n",
    )
    return HostPlan([*file_changes, load], found)


def plan_host(spec: HostSpec, facts: Facts) -> HostPlan:
    """Every change ``spec``'s host needs, in the order they run: packages, the stock service, the
    firewall (before any instance listens), folders, configs, instances started."""
    installed = facts.get(apt.installed(spec.packages, PACKAGES))
    units = facts.get(systemd.units(spec.units, UNITS))
    files = plan_files(spec.files(), facts.files)
    fw_paths = {f"file {f.path}" for f in spec.firewall_files()}
    firewall = _firewall(spec, facts, [c for c in files if c.what in fw_paths])
    changes = [
        *_packages(spec, installed),
        *_stock(PACKAGE in installed, units.get(STOCK_UNIT, systemd.UNKNOWN)),
        *firewall.changes,
        *_folders(spec, facts),
        *[c for c in files if c.what not in fw_paths],
        *_units(spec, units),
    ]
    return HostPlan(changes, firewall.findings)
