"""The base component against scripted hosts: round trips, order, dry run, check and drift."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.base.plan import BaseSpec, facts_commands, spec_for
from tasks.base.play import component
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context

HOSTS = {"vm1": {"hostname": "198.18.0.11"}, "vm2": {"hostname": "198.18.0.12"}}
PACKAGES = "".join(f"{p} installed 1.0\n" for p in ("ca-certificates", "curl", "kmod", "procps"))
SPEC = BaseSpec("vm1", ("ca-certificates", "curl", "kmod", "procps"))
MODULES = SPEC.files()[0]
SYSCTL = SPEC.files()[1]


def converged(hostname: str, **override: Any) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "os": "debian 12 ",
        "hostname": hostname,
        "hosts_entry": "1",
        "packages": PACKAGES,
        "sysctls": "".join(f"{k}=1\n" for k in SPEC.sysctls),
        "modules": "br_netfilter=loaded\noverlay=loaded",
        "swap": "0",
        "virt": "none",
        "timesync": "yes",
    }
    outputs.update(override)
    return outputs


def files(**override: bytes | None) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {MODULES.path: MODULES.content, SYSCTL.path: SYSCTL.content}
    out.update(override)
    return out


def remote(name: str, *replies: Reply) -> ScriptedRemote:
    return ScriptedRemote(name, list(replies))


def test_converged_hosts_get_one_round_trip_each_and_no_apply() -> None:
    remotes = {h: remote(h, facts_reply(files(), converged(h), strict=False)) for h in HOSTS}
    ctx, report = scripted_context(HOSTS, remotes, component="base")
    component.apply(ctx)
    assert report.ok and report.changed == 0
    assert all(len(r.scripts) == 1 for r in remotes.values())


def test_changes_are_applied_in_one_more_round_trip_with_packages_after_double_dash() -> None:
    hosts = {**HOSTS, "vm1": {**HOSTS["vm1"], "data": {"packages": ["jq"]}}}
    r1 = remote("vm1", facts_reply(files(**{SYSCTL.path: None}), converged("old-name"), strict=False),
                Reply("set -e"))  # fmt: skip
    r2 = remote("vm2", facts_reply(files(), converged("vm2"), strict=False))
    ctx, report = scripted_context(hosts, {"vm1": r1, "vm2": r2}, component="base")
    component.apply(ctx)
    assert report.ok and report.changed == 1
    apply = r1.scripts[1]
    assert "hostnamectl set-hostname vm1" in apply
    assert "--force-confold -- jq" in apply  # a package name can never become an option
    assert f'mv -f "$nr_tmp" {SYSCTL.path}' in apply
    assert len(r2.scripts) == 1


def test_dry_run_sends_nothing_after_the_facts() -> None:
    r1 = remote("vm1", facts_reply(files(), converged("vm1", sysctls="net.ipv4.ip_forward=0"), strict=False))
    r2 = remote("vm2", facts_reply(files(), converged("vm2"), strict=False))
    ctx, report = scripted_context(HOSTS, {"vm1": r1, "vm2": r2}, component="base", dry_run=True)
    component.apply(ctx)
    assert [r.host for r in report.rows if r.changed] == ["vm1"]
    assert len(r1.scripts) == 1


def test_duplicate_hostnames_fail_both_hosts() -> None:
    remotes = {h: remote(h, facts_reply(files(), converged("clone"), strict=False)) for h in HOSTS}
    hosts = {h: {**v, "data": {"set_hostname": False}} for h, v in HOSTS.items()}
    ctx, report = scripted_context(hosts, remotes, component="base")
    component.apply(ctx)
    assert set(report.failed_hosts) == {"vm1", "vm2"}
    assert "'clone' is also used by vm2" in report.failed_reasons["vm1"]


def test_unsupported_os_fails_that_host_only() -> None:
    r1 = remote("vm1", facts_reply(files(), converged("vm1", os="alpine 3.19 "), strict=False))
    r2 = remote("vm2", facts_reply(files(), converged("vm2"), strict=False))
    ctx, report = scripted_context(HOSTS, {"vm1": r1, "vm2": r2}, component="base")
    component.apply(ctx)
    assert report.failed_hosts == ["vm1"]
    assert "unsupported OS 'alpine 3.19'" in report.failed_reasons["vm1"]


def test_check_and_drift_share_their_rules() -> None:
    """A hand-changed sysctl fails its check and is the (only) drift item; a swap device only warns."""
    outputs = converged("vm1", sysctls="".join(f"{k}={'0' if 'ip_forward' in k else '1'}\n" for k in SPEC.sysctls),
                        swap="1")  # fmt: skip
    for mode in ("check", "drift"):
        r1 = remote("vm1", facts_reply(files(), outputs, strict=False))
        r2 = remote("vm2", facts_reply(files(), converged("vm2"), strict=False))
        ctx, report = scripted_context(HOSTS, {"vm1": r1, "vm2": r2}, component="base", dry_run=True)
        getattr(component, mode)(ctx)
        failed = {(c.host, c.name, c.warning) for c in report.checks if not c.ok}
        if mode == "check":
            assert failed == {("vm1", "sysctl net.ipv4.ip_forward", False), ("vm1", "swap off", True)}
            assert "swap" in r1.scripts[0] and "timesync" in r1.scripts[0]
        else:
            assert "timesync" not in r1.scripts[0]  # drift stays on the fast path
        assert [(d.host, d.what, d.expected, d.actual) for d in report.drift] == [
            ("vm1", "sysctl net.ipv4.ip_forward", "1", "0")
        ]
        assert report.drift[0].fix == "nr run base --limit vm1"


@pytest.mark.parametrize("packages", [["-oDpkg::Pre-Invoke::=id"], ["../x.deb"], ["Jq"]])
def test_package_names_that_are_options_or_paths_are_refused(packages: list[str]) -> None:
    from nr.inventory.validate import InventoryError

    hosts = {"vm1": {"hostname": "198.18.0.11", "data": {"packages": packages}}}
    with pytest.raises(InventoryError, match=r"data\.packages: .*must be a Debian package name"):
        scripted_context(hosts, {})


def test_facts_are_one_script_with_every_command() -> None:
    names = set(facts_commands(spec_for(scripted_context(HOSTS, {})[0].all_hosts()[0])))
    assert names == {"os", "hostname", "hosts_entry", "packages", "sysctls", "modules"}
