"""Facts parsing, file planning and the base play's pure planner."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from nr.changes import apply_script
from nr.facts import Facts, FileState, Output, gather_script, parse_gather
from nr.ops.files import FileSpec, plan_file
from nr.secrets import MASK
from tasks.base.plan import BaseSpec, facts_commands, os_problem, plan


def test_gather_script_runs_and_parses_locally(tmp_path: Path) -> None:
    """The gather script is plain POSIX sh: run it here and parse its real output."""
    small = tmp_path / "small.conf"
    small.write_text("a = 1\n")
    small.chmod(0o640)
    empty = tmp_path / "empty"
    empty.write_text("")
    marker = "@@NR-test@@"
    script = gather_script(
        marker,
        [str(small), str(empty), str(tmp_path / "missing")],
        {"two": "echo one; echo two", "fails": "echo oops >&2; exit 3"},
    )
    out = subprocess.run(
        ["sh", "-s"], input="{\n" + script + "\n} </dev/null\n", capture_output=True, text=True, check=True
    ).stdout
    facts = parse_gather(marker, out)
    s = facts.files[str(small)]
    assert s.exists and s.mode == 0o640 and s.content == b"a = 1\n"
    assert s.sha256 == hashlib.sha256(b"a = 1\n").hexdigest()
    assert facts.files[str(empty)].content == b""
    assert not facts.files[str(tmp_path / "missing")].exists
    assert facts.outputs["two"] == Output(0, "one\ntwo")
    assert facts.outputs["fails"] == Output(3, "", "oops\n")  # stderr is kept apart, never parsed


def test_write_script_is_atomic_and_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nr.lock.HOST_LOCK", str(tmp_path / "nr.lock"))  # not this machine's /run/nr.lock
    spec = FileSpec.text(
        str(tmp_path / "etc" / "x.conf"),
        "line 'quoted' $HOME `x`\nsecond\n",
        mode=0o600,
        owner=Path("/proc/self").owner(),
        group=Path("/proc/self").group(),
    )
    change = plan_file(spec, FileState(spec.path, False))
    assert change is not None
    subprocess.run(["sh", "-s"], input=apply_script([change]), text=True, check=True)
    target = tmp_path / "etc" / "x.conf"
    assert target.read_bytes() == spec.content
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["x.conf"]  # no temp file left behind


def test_plan_file_states() -> None:
    spec = FileSpec.text("/etc/a", "x=1\n", mode=0o640, owner="redis", group="redis")
    same = FileState("/etc/a", True, 0o640, "redis", "redis", 4, spec.sha256, b"x=1\n")
    assert plan_file(spec, same) is None
    created = plan_file(spec, FileState("/etc/a", False))
    assert created is not None and created.actual == "absent" and "+x=1" in created.diff
    changed = plan_file(spec, FileState("/etc/a", True, 0o640, "redis", "redis", 4, "0" * 64, b"x=2\n"))
    assert changed is not None and "-x=2" in changed.diff and "+x=1" in changed.diff
    mode = plan_file(spec, FileState("/etc/a", True, 0o644, "root", "root", 4, spec.sha256, b"x=1\n"))
    assert mode is not None and mode.expected == "0640 redis:redis" and mode.actual == "0644 root:root"
    assert "base64" not in mode.script  # metadata only: no rewrite


def test_secrets_masked_in_file_diffs() -> None:
    spec = FileSpec.text(
        "/etc/redis/7000.conf", "port 7000\nrequirepass NewPassw0rd\n", secrets=["NewPassw0rd"]
    )
    old = b"port 7000\nrequirepass OldPassw0rd\n"
    state = FileState(
        spec.path, True, 0o640, "redis", "redis", len(old), hashlib.sha256(old).hexdigest(), old
    )
    change = plan_file(spec, state)
    assert change is not None
    assert "NewPassw0rd" not in change.diff
    assert f"requirepass {MASK}" in change.diff
    # the old value is unknown to this run's redactor, but the secret line still shows as changed
    only_secret = FileSpec.text(spec.path, "port 7000\nrequirepass OldPassw0rd\n", secrets=["OldPassw0rd"])
    state2 = FileState(
        spec.path, True, 0o640, "redis", "redis", 1, "f" * 64, b"port 7000\nrequirepass OldPassw0rd\n"
    )
    c2 = plan_file(only_secret, state2)
    assert c2 is not None and "OldPassw0rd" not in c2.diff
    assert base64.b64encode(b"OldPassw0rd").decode() not in c2.diff


def base_facts(**over: str) -> Facts:
    spec = BaseSpec(hostname="vm1", packages=("curl", "kmod"))
    outputs = {
        "os": "debian 12 ",
        "hostname": "vm1",
        "hosts_entry": "1",
        "packages": "curl installed\nkmod installed",
        "sysctls": "\n".join(f"{k}={v}" for k, v in spec.sysctls.items()),
        "modules": "br_netfilter=loaded\noverlay=loaded",
        "swap": "0",
        "virt": "none",
        "timesync": "yes",
    }
    outputs.update(over)
    files = {}
    for f in spec.files():
        files[f.path] = FileState(f.path, True, f.mode, f.owner, f.group, len(f.content), f.sha256, f.content)
    return Facts(files=files, outputs={k: Output(0, v) for k, v in outputs.items()})


def test_secret_lines_are_masked_whatever_their_value() -> None:
    """A password on the host that is not the inventory's (hand-edited, or the old one) never prints."""
    spec = FileSpec.text("/etc/redis/r.conf", 'port 7000\nrequirepass "new-one"\nmasterauth "new-one"\n',
                         secrets=["new-one"], secret_keys=("requirepass", "masterauth", "token"))  # fmt: skip
    old = b'port 7000\nREQUIREPASS  "typed-by-hand"\nmasterauth old-secret\n# requirepass is set below\n'
    state = FileState(spec.path, True, 0o644, "root", "root", len(old), hashlib.sha256(old).hexdigest(), old)
    change = plan_file(spec, state)
    assert change is not None
    assert (
        "typed-by-hand" not in change.diff
        and "old-secret" not in change.diff
        and "new-one" not in change.diff
    )
    assert f"-REQUIREPASS  {MASK}" in change.diff and "-# requirepass is set below" in change.diff
    yaml_spec = FileSpec.text("/etc/k.yaml", "token: abc\n", secret_keys=("token",))
    created = plan_file(yaml_spec, FileState(yaml_spec.path, False))
    assert created is not None and "abc" not in created.diff and f"+token: {MASK}" in created.diff


def test_base_plan_converged_host_has_no_changes() -> None:
    assert plan(BaseSpec(hostname="vm1", packages=("curl", "kmod")), base_facts()) == []


def test_base_plan_lists_each_difference() -> None:
    facts = base_facts(
        hostname="ubuntu",
        packages="curl installed\nkmod not-installed",
        modules="br_netfilter=absent\noverlay=loaded",
        sysctls="net.ipv4.ip_forward=0\nnet.bridge.bridge-nf-call-iptables=1\nnet.bridge.bridge-nf-call-ip6tables=1\nvm.overcommit_memory=0",
    )
    whats = [c.what for c in plan(BaseSpec(hostname="vm1", packages=("curl", "kmod")), facts)]
    assert whats == [
        "hostname",
        "/etc/hosts entry",
        "packages kmod",
        "kernel module br_netfilter",
        "sysctl net.ipv4.ip_forward",
        "sysctl vm.overcommit_memory",
    ]


def test_base_plan_keeps_hostname_when_told() -> None:
    assert plan(BaseSpec(hostname=None, packages=("curl", "kmod")), base_facts(hostname="other")) == []


def test_unsupported_os() -> None:
    assert os_problem(base_facts(os="fedora 40 ")) is not None
    assert os_problem(base_facts(os="linuxmint 21 ubuntu debian")) is None


def test_facts_commands_are_read_only() -> None:
    text = "\n".join(facts_commands(BaseSpec(hostname="vm1", packages=("curl",))).values())
    for verb in ("apt-get", "modprobe", "> /proc", "hostnamectl set", "rm "):
        assert verb not in text


def test_a_change_always_carries_its_script() -> None:
    import pytest

    from nr.changes import Change

    with pytest.raises(ValueError, match="report it as a Finding"):
        Change("service x", "restarted", "running", "", "~ restart x")


def test_credentials_in_urls_are_masked_in_every_file_diff() -> None:
    from nr.changes import mask_url_credentials

    text = "a=http://u:pw1@h:1/x b=https://TOKEN123@h c=redis://h:6379 d=postgres://me:p%40ss@db/k3s"
    masked = mask_url_credentials(text)
    assert "pw1" not in masked and "TOKEN123" not in masked and "p%40ss" not in masked
    assert "http://u:" in masked and "redis://h:6379" in masked and "@db/k3s" in masked
