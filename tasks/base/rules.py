"""The base play's checks: small rules over one host's observation, serving ``check`` and ``drift``.

Each rule is one check of ``nr check``; its findings are what ``nr drift`` reports (warnings only
in ``check``). Most rules look at the changes the plan would make, so a check can never disagree
with what ``nr run base`` would do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nr.changes import Change
from nr.facts import Facts
from nr.outcome import Finding, Rule, Severity
from tasks.base.plan import BaseSpec, os_problem, pairs


@dataclass(frozen=True)
class Observed:
    """One host as the base play sees it: its spec, its facts and the changes the plan would make."""

    spec: BaseSpec
    facts: Facts
    changes: tuple[Change, ...]


def _changes(match: Callable[[Change], bool]) -> Callable[[Observed], Iterator[Finding]]:
    def find(o: Observed) -> Iterator[Finding]:
        yield from (Finding.of_change(c) for c in o.changes if match(c))

    return find


def _os(o: Observed) -> Iterator[Finding]:
    problem = os_problem(o.facts)
    if problem:
        yield Finding("os supported", "Debian or Ubuntu", o.facts.out("os").strip(), problem, Severity.ERROR)


def _swap(o: Observed) -> Iterator[Finding]:
    if "swap" not in o.facts.outputs:
        return
    swaps = int(o.facts.out("swap").strip() or 0)
    if swaps:
        yield Finding("swap off", "no swap", f"{swaps} swap device(s)",
                      "swapoff -a and remove it from /etc/fstab (swap slows kubelet and Redis under memory "
                      "pressure)", Severity.WARNING)  # fmt: skip


def _timesync(o: Observed) -> Iterator[Finding]:
    if "timesync" not in o.facts.outputs:
        return
    virt = o.facts.out("virt").strip()
    sync = o.facts.out("timesync").strip()
    if sync != "yes" and virt in ("", "none"):
        yield Finding("time synchronised", "NTPSynchronized=yes", f"NTPSynchronized={sync}",
                      "enable systemd-timesyncd or chrony: Redis failover and TLS certificates need correct "
                      "clocks", Severity.WARNING)  # fmt: skip


def _time_detail(o: Observed) -> str:
    virt = o.facts.out("virt").strip() if "virt" in o.facts.outputs else ""
    if virt not in ("", "none"):
        return f"container ({virt}): host clock"
    return "NTPSynchronized=yes"


def _module_rule(module: str) -> Rule[Observed]:
    def passed(o: Observed) -> str:
        return pairs(o.facts.out("modules")).get(module, "unknown")

    return Rule(f"module {module}", _changes(lambda c: c.what == f"kernel module {module}"), passed)


def _sysctl_rule(key: str, want: str) -> Rule[Observed]:
    def passed(o: Observed) -> str:
        return f"{pairs(o.facts.out('sysctls')).get(key)} (want {want})"

    return Rule(f"sysctl {key}", _changes(lambda c: c.what == f"sysctl {key}"), passed)


def rules(spec: BaseSpec) -> list[Rule[Observed]]:
    """The checks of one host, in the order ``nr check -v`` lists them."""
    out: list[Rule[Observed]] = [
        Rule("os supported", _os, lambda o: o.facts.out("os").strip()),
        Rule(
            "hostname",
            _changes(lambda c: c.what in ("hostname", "/etc/hosts entry")),
            lambda o: o.facts.out("hostname").strip(),
        ),
        Rule("packages", _changes(lambda c: c.what.startswith("packages ")), lambda _: "all installed"),
        Rule("config files", _changes(lambda c: c.what.startswith("file ")), lambda _: "as desired"),
    ]
    out += [_module_rule(m) for m in spec.modules]
    out += [_sysctl_rule(key, want) for key, want in spec.sysctls.items()]
    out += [
        Rule("swap off", _swap, lambda _: "0 swap device(s)"),
        Rule("time synchronised", _timesync, _time_detail),
    ]
    return out


def _scan_hostnames(names: dict[str, str]) -> dict[str, list[str]]:
    """Hosts whose hostname another host uses too -> those other hosts."""
    clashes: dict[str, list[str]] = {}
    for host, name in names.items():
        others = sorted(h for h, n in names.items() if n == name and h != host and name)
        if others:
            clashes[host] = others
    return clashes


def duplicate_hostnames(names: dict[str, str]) -> dict[str, Finding]:
    """A finding for each host whose hostname is not unique (k3s needs unique hostnames)."""
    return {
        host: Finding(
            "unique hostname",
            "unique",
            f"'{names[host]}' is also used by {', '.join(others)}",
            "remove data.set_hostname: false or rename the host",
            Severity.ERROR,
        )
        for host, others in _scan_hostnames(names).items()
    }
