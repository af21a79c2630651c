"""Inventory validation: every malformed inventory is refused with a message naming file, host and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nr.cli import cli
from nr.config import Settings, init_nornir
from nr.inventory.validate import InventoryError
from nr.play import roles

REPO = Path(__file__).resolve().parents[2]

GOOD_HOSTS = {
    "vm1": {"hostname": "10.0.0.1", "groups": ["k3s_servers", "redis"]},
    "vm2": {"hostname": "10.0.0.2", "groups": ["k3s_agents", "redis"]},
    "vm3": {"hostname": "10.0.0.3", "groups": ["k3s_agents", "redis"]},
}


def write(
    folder: Path,
    hosts: object = None,
    groups: object = None,
    defaults: object = None,
    raw: dict[str, str] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in (("hosts", hosts), ("groups", groups), ("defaults", defaults)):
        if doc is not None:
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, text in (raw or {}).items():
        (folder / name).write_text(text)
    return folder


def hosts_with(**changes: object) -> dict[str, object]:
    """GOOD_HOSTS with host entries replaced (None removes a host)."""
    out: dict[str, object] = {k: dict(v) for k, v in GOOD_HOSTS.items()}
    for name, entry in changes.items():
        if entry is None:
            out.pop(name, None)
        else:
            out[name] = entry
    return out


# (id, files, expected fragments of the error output)
CASES: list[tuple[str, dict[str, object], list[str]]] = [
    ("missing hosts file", {"groups": {}}, ["hosts.yaml: file not found"]),
    ("yaml syntax", {"raw": {"hosts.yaml": "vm1:\n  hostname: [10.0.0.1\n"}}, ["hosts.yaml: line"]),
    (
        "hosts not a mapping",
        {"hosts": ["vm1", "vm2"]},
        ["hosts.yaml: must be a mapping of host name to host, got a list"],
    ),
    ("no hosts", {"raw": {"hosts.yaml": "# nothing yet\n"}}, ["hosts.yaml: defines no hosts"]),
    (
        "host entry not a mapping",
        {"hosts": hosts_with(vm3="10.0.0.3")},
        ["host 'vm3': must be a mapping of fields, got a string"],
    ),
    (
        "unknown host field",
        {"hosts": hosts_with(vm2={"hostnme": "10.0.0.2", "groups": ["k3s_agents", "redis"]})},
        ["host 'vm2': unknown field 'hostnme'", "host 'vm2': missing field 'hostname'"],
    ),
    (
        "missing address",
        {"hosts": hosts_with(vm1={"groups": ["k3s_servers", "redis"]})},
        ["host 'vm1': missing field 'hostname' (the address to connect to)"],
    ),
    (
        "empty address",
        {"hosts": hosts_with(vm1={"hostname": "", "groups": ["k3s_servers", "redis"]})},
        ["host 'vm1': hostname: must be a non-empty address"],
    ),
    (
        "duplicate address",
        {"hosts": hosts_with(vm3={"hostname": "10.0.0.2", "groups": ["k3s_agents", "redis"]})},
        [
            "host 'vm2': hostname: address 10.0.0.2 is also used by vm3",
            "host 'vm3': hostname: address 10.0.0.2 is also used by vm2",
        ],
    ),
    (
        "duplicate host name",
        {"raw": {"hosts.yaml": "vm1:\n  hostname: 10.0.0.1\nvm1:\n  hostname: 10.0.0.9\n"}},
        ["hosts.yaml: line 3, column 1: duplicate key 'vm1' (first at line 1)"],
    ),
    (
        "port out of range",
        {"hosts": hosts_with(vm2={"hostname": "10.0.0.2", "port": 70000, "groups": ["k3s_agents", "redis"]})},
        ["host 'vm2': port: must be a TCP port (1-65535), got 70000"],
    ),
    (
        "port not a number",
        {"hosts": hosts_with(vm2={"hostname": "10.0.0.2", "port": "ssh", "groups": ["k3s_agents", "redis"]})},
        ["host 'vm2': port: must be a TCP port (1-65535), got 'ssh'"],
    ),
    (
        "port boolean",
        {"hosts": hosts_with(vm2={"hostname": "10.0.0.2", "port": True, "groups": ["k3s_agents", "redis"]})},
        ["host 'vm2': port: must be a TCP port (1-65535), got True"],
    ),
    (
        "unknown group",
        {"hosts": hosts_with(vm3={"hostname": "10.0.0.3", "groups": ["k3s_agent", "redis"]})},
        ["host 'vm3': groups: unknown group 'k3s_agent'"],
    ),
    (
        "groups not a list",
        {"hosts": hosts_with(vm3={"hostname": "10.0.0.3", "groups": "redis"})},
        ["host 'vm3': groups: must be a list of group names, got 'redis'"],
    ),
    (
        "unknown data key",
        {
            "hosts": hosts_with(
                vm1={
                    "hostname": "10.0.0.1",
                    "groups": ["k3s_servers", "redis"],
                    "data": {"redis_prots": [7000, 7003]},
                }
            )
        },
        ["host 'vm1': data.redis_prots: unknown key"],
    ),
    (
        "data wrong type",
        {"hosts": GOOD_HOSTS, "defaults": {"data": {"redis_node_timeout": "5s"}}},
        ["defaults.yaml: data.redis_node_timeout: must be an integer, got '5s'"],
    ),
    (
        "plain-text secret",
        {"hosts": GOOD_HOSTS, "defaults": {"data": {"redis_password": "hunter2!"}}},
        ["defaults.yaml: data.redis_password: must be a secret reference 'env:NAME' or 'file:PATH'"],
    ),
    (
        "plain ssh password",
        {
            "hosts": hosts_with(
                vm1={"hostname": "10.0.0.1", "password": "s3cret!!", "groups": ["k3s_servers", "redis"]}
            )
        },
        ["host 'vm1': password: must be a secret reference"],
    ),
    (
        "too few redis hosts",
        {"hosts": hosts_with(vm3={"hostname": "10.0.0.3", "groups": ["k3s_agents"]})},
        ["group redis has 2 host(s) (vm1, vm2); a Redis Cluster with rotated replicas needs at least 3"],
    ),
    (
        "server and agent",
        {"hosts": hosts_with(vm2={"hostname": "10.0.0.2", "groups": ["k3s_servers", "k3s_agents", "redis"]})},
        ["host 'vm2': groups: is in both k3s_servers and k3s_agents"],
    ),
    (
        "even server count",
        {"hosts": hosts_with(vm2={"hostname": "10.0.0.2", "groups": ["k3s_servers", "redis"]})},
        ["group k3s_servers has 2 hosts (vm1, vm2); embedded etcd needs an odd number of servers"],
    ),
    (
        "agents without server",
        {"hosts": hosts_with(vm1={"hostname": "10.0.0.1", "groups": ["k3s_agents", "redis"]})},
        ["group k3s_agents has hosts (vm1, vm2, vm3) but k3s_servers has none"],
    ),
    (
        "invalid host name",
        {"hosts": hosts_with(vm3=None, VM_3={"hostname": "10.0.0.3", "groups": ["k3s_agents", "redis"]})},
        ["host 'VM_3': name must be a lowercase RFC 1123 label"],
    ),
    (
        "unknown ssh option",
        {
            "hosts": GOOD_HOSTS,
            "defaults": {"connection_options": {"fabric": {"extras": {"stric_host_key": False}}}},
        },
        ["defaults.yaml: connection_options.fabric.extras.stric_host_key: unknown option"],
    ),
    (
        "unknown connection plugin",
        {"hosts": GOOD_HOSTS, "defaults": {"connection_options": {"netmiko": {}}}},
        ["defaults.yaml: connection_options.netmiko: unknown connection plugin"],
    ),
    (
        "defaults with groups",
        {"hosts": GOOD_HOSTS, "defaults": {"groups": ["redis"]}},
        ["defaults.yaml: unknown field 'groups'"],
    ),
    (
        "group cycle",
        {"hosts": GOOD_HOSTS, "groups": {"a": {"groups": ["b"]}, "b": {"groups": ["a"]}}},
        ["group 'a': groups form a cycle", "group 'b': groups form a cycle"],
    ),
    (
        "redis port clash",
        {"hosts": GOOD_HOSTS, "groups": {"redis": {"data": {"redis_ports": [7000, 17000]}}}},
        ["group 'redis': data.redis_ports: ports 7000 and 17000 clash: one is the other's cluster bus port"],
    ),
    (
        "redis bus port too high",
        {"hosts": GOOD_HOSTS, "groups": {"redis": {"data": {"redis_ports": [60000, 60003]}}}},
        ["data.redis_ports: port 60000: its cluster bus port 70000 is above 65535"],
    ),
    (
        "node_ip not an address",
        {
            "hosts": hosts_with(
                vm1={
                    "hostname": "10.0.0.1",
                    "groups": ["k3s_servers", "redis"],
                    "data": {"node_ip": "vm1.lan"},
                }
            )
        },
        ["host 'vm1': data.node_ip: must be an IPv4 or IPv6 address, got 'vm1.lan'"],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_inventory_is_refused(
    tmp_path: Path, files: dict[str, object], expected: list[str]
) -> None:
    folder = write(
        tmp_path / "inv", files.get("hosts"), files.get("groups"), files.get("defaults"), files.get("raw")
    )  # type: ignore[arg-type]
    with pytest.raises(InventoryError) as err:
        init_nornir(Settings(folder))
    text = str(err.value)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_enough_malformed_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize(
    ("files", "expected"), [(c[1], c[2]) for c in CASES[:6]], ids=[c[0] for c in CASES[:6]]
)
def test_cli_exits_2_and_names_the_problem(
    tmp_path: Path, files: dict[str, object], expected: list[str]
) -> None:
    folder = write(
        tmp_path / "inv", files.get("hosts"), files.get("groups"), files.get("defaults"), files.get("raw")
    )  # type: ignore[arg-type]
    for args in (
        ["inventory", "-i", str(folder)],
        ["run", "base", "-i", str(folder)],
        ["drift", "-i", str(folder)],
    ):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        assert expected[0] in res.output


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    hosts = hosts_with(
        vm1={"hostname": "10.0.0.1", "port": 0, "groups": ["k3s_servers", "redis"]},
        vm2={"hostname": "10.0.0.2", "groups": ["nope", "redis"], "data": {"typo": 1}},
    )
    with pytest.raises(InventoryError) as err:
        init_nornir(Settings(write(tmp_path / "inv", hosts)))
    assert len(err.value.issues) == 3, err.value.issues


def test_secret_value_is_never_echoed(tmp_path: Path) -> None:
    folder = write(tmp_path / "inv", GOOD_HOSTS, defaults={"data": {"redis_password": "Tr0ub4dor&3"}})
    with pytest.raises(InventoryError) as err:
        init_nornir(Settings(folder))
    assert "Tr0ub4dor" not in str(err.value)


def test_example_inventory_is_valid_and_has_roles() -> None:
    nr = init_nornir(Settings(REPO / "inventory"))
    hosts = nr.inventory.hosts
    assert list(hosts) == ["vm1", "vm2", "vm3"]
    assert roles(hosts["vm1"]) == ["k3s-server", "redis"]
    assert roles(hosts["vm3"]) == ["k3s-agent", "redis"]
    assert hosts["vm2"].get("redis_ports") == [7000, 7003]


def test_paths_resolve_from_the_inventory_folder(tmp_path: Path) -> None:
    defaults = {
        "data": {"redis_password": "file:secrets/redis"},
        "connection_options": {"fabric": {"extras": {"key_filename": "keys/id", "connect_timeout": 3}}},
    }
    groups = {"redis": {"connection_options": {"fabric": {"extras": {"known_hosts": "kh"}}}}}
    folder = write(tmp_path / "inv", GOOD_HOSTS, groups, defaults)
    nr = init_nornir(Settings(folder))
    h = nr.inventory.hosts["vm1"]
    assert str(h.get("redis_password")) == f"file:{(folder / 'secrets/redis').resolve()}"
    extras = h.get_connection_parameters("fabric").extras
    # extras merge key by key across defaults and groups (Nornir alone would keep only the group's)
    assert extras == {
        "key_filename": str((folder / "keys/id").resolve()),
        "connect_timeout": 3,
        "known_hosts": str((folder / "kh").resolve()),
    }


def test_role_groups_need_no_definition(tmp_path: Path) -> None:
    nr = init_nornir(Settings(write(tmp_path / "inv", GOOD_HOSTS)))
    assert roles(nr.inventory.hosts["vm2"]) == ["k3s-agent", "redis"]


def test_config_yaml_unknown_section(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "inv", GOOD_HOSTS, raw={"config.yaml": "inventory: {}\nlogging: {enabled: true}\n"}
    )
    with pytest.raises(InventoryError, match=r"config.yaml: unknown section 'logging'"):
        init_nornir(Settings(folder))


def test_inventory_folder_missing(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["inventory", "-i", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "inventory folder not found" in res.output


def test_k3s_reset_of_some_servers_only_is_refused_before_any_connection(tmp_path: Path) -> None:
    hosts = hosts_with(
        **{f"vm{i}": {"hostname": f"10.0.0.{i}", "groups": ["k3s_servers", "redis"]} for i in (1, 2, 3)}
    )
    folder = write(tmp_path / "inv", hosts)
    res = CliRunner().invoke(cli, ["run", "k3s-reset", "-i", str(folder), "--limit", "vm2"])
    assert res.exit_code == 2 and "k3s-reset --limit vm2: resetting some servers" in res.output
    res = CliRunner().invoke(
        cli, ["run", "k3s-reset", "-i", str(folder), "--limit", "vm1,vm2,vm3", "--dry-run"]
    )
    assert "resetting some servers" not in res.output  # the whole cluster may be reset
