"""Hostile inventories (issue 10): refused with exit 2 before any host is touched, naming file, host
and field; never executed, never a traceback, never a flood of output or terminal escapes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nr.cli import cli
from tests.unit.test_inventory_validation import GOOD_HOSTS, hosts_with, write

# every command that reads an inventory (a dry run touches no host, but it did read ssh_config)
COMMANDS = [["run", "base", "--dry-run"], ["run", "site"], ["check"], ["drift"], ["inventory"]]


def invoke(folder: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [*args, "-i", str(folder)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def match_exec_config(tmp_path: Path) -> tuple[Path, Path]:
    """An ssh_config whose ``Match exec`` line runs a shell command with the host name (%h) in it,
    as OpenSSH and paramiko allow; and the file a shell-injected host name would create."""
    pwned = tmp_path / "pwned"
    config = tmp_path / "ssh_config"
    config.write_text('Match exec "test %h = never"\n  User nobody\n')
    return config, pwned


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_shell_in_a_hostname_never_runs(tmp_path: Path, args: list[str]) -> None:
    config, pwned = match_exec_config(tmp_path)
    hostile = f"10.0.0.1$(touch${{IFS}}{pwned})"
    folder = write(
        tmp_path / "inv",
        hosts_with(vm1={"hostname": hostile, "groups": ["k3s_servers", "redis"]}),
        defaults={
            "connection_options": {"fabric": {"extras": {"ssh_config": str(config), "connect_timeout": 1}}}
        },
    )
    code, output = invoke(folder, *args)
    assert not pwned.exists()  # the ssh_config lookup ran the host name as shell (even a dry run did)
    assert code == 2, output
    assert "host 'vm1': hostname: must be an IP address or an RFC 1123 DNS name" in output


@pytest.mark.parametrize(
    ("where", "entry", "fragment"),
    [
        ("hostname", {"hostname": "vm1.lan;id", "groups": ["k3s_servers", "redis"]}, "hostname: must be an IP"),
        ("hostname", {"hostname": "-oProxyCommand=id", "groups": ["k3s_servers", "redis"]}, "hostname: must be"),
        ("username", {"hostname": "10.0.0.1", "username": "nr`id`", "groups": ["k3s_servers", "redis"]},
         "username: must be a user name"),
        ("connection hostname", {"hostname": "10.0.0.1", "groups": ["k3s_servers", "redis"],
                                 "connection_options": {"fabric": {"hostname": "a b"}}},
         "connection_options.fabric.hostname: must be an IP"),
    ],
)  # fmt: skip
def test_addresses_and_user_names_have_a_format(
    tmp_path: Path, where: str, entry: dict[str, object], fragment: str
) -> None:
    code, output = invoke(write(tmp_path / "inv", hosts_with(vm1=entry)), "inventory")
    assert code == 2 and fragment in output, output


def test_dns_names_and_ipv6_are_addresses(tmp_path: Path) -> None:
    hosts = hosts_with(
        vm1={"hostname": "vm1.example.org", "groups": ["k3s_servers", "redis"]},
        vm2={"hostname": "fd00::2", "username": "ubuntu", "groups": ["k3s_agents", "redis"]},
    )
    code, output = invoke(write(tmp_path / "inv", hosts), "inventory")
    assert code == 0, output


def test_site_name_is_a_dns_label(tmp_path: Path) -> None:
    folder = write(tmp_path / "inv", GOOD_HOSTS, defaults={"data": {"site_name": "Lab One"}})
    code, output = invoke(folder, "inventory")
    assert code == 2
    assert "defaults.yaml: data.site_name: must be a DNS label" in output


def billion_laughs(levels: int) -> str:
    lines = ['l0: &l0 ["curl", "curl", "curl", "curl", "curl", "curl", "curl", "curl", "curl"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines)


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    # 9^7 = 4.8 million package names from a few hundred bytes (9^9 took 54 s and 2.5 GB before)
    bomb = billion_laughs(7) + "\ndata: {packages: *l6}\n"
    folder = write(tmp_path / "inv", GOOD_HOSTS, raw={"defaults.yaml": bomb})
    code, output = invoke(folder, "inventory")
    assert code == 2, output
    assert "defaults.yaml: line " in output and "through YAML aliases (an alias bomb?)" in output


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    folder = write(tmp_path / "inv", GOOD_HOSTS, raw={"groups.yaml": "a: &a {groups: [*a]}\n"})
    code, output = invoke(folder, "inventory")
    assert code == 2 and "recursive alias" in output, output


def test_small_aliases_still_work(tmp_path: Path) -> None:
    text = "vm1: &h {hostname: 10.0.0.1, groups: [k3s_servers, redis]}\n"
    text += "vm2: {<<: *h, hostname: 10.0.0.2, groups: [k3s_agents, redis]}\n"
    text += "vm3: {<<: *h, hostname: 10.0.0.3, groups: [k3s_agents, redis]}\n"
    code, output = invoke(write(tmp_path / "inv", raw={"hosts.yaml": text}), "inventory")
    assert code == 0, output


def test_values_quoted_in_messages_are_bounded(tmp_path: Path) -> None:
    long_key = "x" * 100_000
    hosts = hosts_with(vm1={"hostname": "10.0.0.1", "groups": ["k3s_servers", "redis", long_key]})
    folder = write(tmp_path / "inv", hosts, defaults={"data": {long_key: 1}, long_key: 2})
    code, output = invoke(folder, "inventory")
    assert code == 2
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 3 and all(len(line) < 1200 for line in lines), [len(line) for line in lines]
    assert all("xxx..." in line for line in lines)


def test_control_characters_are_escaped_in_messages(tmp_path: Path) -> None:
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m"
    hosts = hosts_with(vm1={"hostname": "10.0.0.1", "groups": ["k3s_servers", "redis"], evil: 1})
    code, output = invoke(write(tmp_path / "inv", hosts), "inventory")
    assert code == 2
    assert not any(c in output for c in "\x1b\x07\x9b")
    assert "unknown field '\\x1b]0;owned\\a\\x1b[2J\\x9b31m'" in output


@pytest.mark.parametrize("name", ["hosts.yaml", "defaults.yaml", "config.yaml"])
def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path, name: str) -> None:
    folder = write(tmp_path / "inv", GOOD_HOSTS if name != "hosts.yaml" else None)
    (folder / name).write_bytes(b"# caf\xe9 latin-1\nvm1: {hostname: 10.0.0.1}\n")
    code, output = invoke(folder, "inventory")
    assert code == 2, output
    assert f"{name}: line 1: not UTF-8 text (byte 0xe9 at offset 5)" in output


def extras(**values: object) -> dict[str, object]:
    return {"connection_options": {"fabric": {"extras": values}}}


def test_files_the_inventory_names_are_checked_before_any_host(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)
    latin = tmp_path / "known_hosts"
    latin.write_bytes(b"h\xe9 ssh-ed25519 AAAA\n")
    cases = [
        ({"data": {"redis_password": "file:adir"}}, "data.redis_password: secret file", "adir is a directory"),
        ({"data": {"k3s_kubeconfig": str(tmp_path / "adir")}}, "data.k3s_kubeconfig:", "is a directory, not a file"),
        (extras(known_hosts="adir"), "extras.known_hosts:", "adir is a directory"),
        (extras(key_filename=str(tmp_path / "adir")), "extras.key_filename:", "is a directory"),
        (extras(key_filename=str(key)), "extras.key_filename:",
         f"accessible by group/others (mode 0644); run: chmod 600 {key}"),
        (extras(known_hosts=str(latin)), "extras.known_hosts:", "is not UTF-8 text (byte 0xe9 at offset 1)"),
    ]  # fmt: skip
    for defaults, where, problem in cases:
        folder = write(tmp_path / "inv", GOOD_HOSTS, defaults={**defaults})
        (folder / "adir").mkdir(exist_ok=True)
        code, output = invoke(folder, "run", "base")
        assert code == 2, (defaults, output)
        line = next((x for x in output.splitlines() if where in x), "")
        assert "defaults.yaml:" in line and problem in line, (where, output)


def test_a_secret_file_readable_by_others_is_refused_up_front(tmp_path: Path) -> None:
    folder = write(tmp_path / "inv", GOOD_HOSTS, defaults={"data": {"redis_password": "file:pw"}})
    (folder / "pw").write_text("a-long-enough-password\n")
    os.chmod(folder / "pw", 0o640)
    code, output = invoke(folder, "run", "base")
    assert code == 2
    assert "data.redis_password: secret file" in output and "(mode 0640); run: chmod 600" in output


def test_a_private_key_others_can_read_is_refused_whoever_names_it(tmp_path: Path) -> None:
    from nr.connection import FabricConnection
    from nr.ssh_trust import ConnectionFailed, unprotected_key

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    default_key = home / ".ssh" / "id_ed25519"
    default_key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    default_key.chmod(0o644)
    assert "id_ed25519 is accessible by group/others (mode 0644)" in (unprotected_key({}, home) or "")
    assert unprotected_key({"look_for_keys": False}, home) is None  # a key named alone is used alone
    default_key.chmod(0o600)
    assert unprotected_key({}, home) is None

    named = tmp_path / "from-ssh-config"
    named.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    named.chmod(0o640)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n  IdentityFile {named}\n")
    with pytest.raises(ConnectionFailed, match=r"from-ssh-config is accessible by group/others .*chmod 600"):
        FabricConnection().open("192.0.2.1", "nr", None, 22, None, {"ssh_config": str(config)})
