"""The Multipass inventory plugin and `nr vms`, against the stand-in `multipass` in tests/fakes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nr.cli import cli
from nr.config import Settings, init_nornir
from nr.inventory.validate import InventoryError
from nr.machines.multipass import hosts_from_list, pick_address
from nr.play import roles
from nr.registry import registry

FAKES = Path(__file__).resolve().parents[1] / "fakes"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "multipass"


@pytest.fixture
def fake_multipass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "multipass-state.json"
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MULTIPASS_STATE", str(state))
    return state


def inventory_folder(tmp_path: Path, options: dict[str, object]) -> Path:
    folder = tmp_path / "inv"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"inventory": {"plugin": "MultipassInventory", "options": options}})
    )
    return folder


def test_pick_address_skips_k3s_networks() -> None:
    internal = registry().schema.internal_networks
    assert pick_address(["10.42.0.1", "192.168.64.5"], None, internal) == "192.168.64.5"
    assert pick_address(["10.42.0.1", "192.168.64.5"]) == "10.42.0.1"  # no component declares it
    assert pick_address(["N/A"]) is None
    assert pick_address(["10.0.2.15", "192.168.64.5"], "192.168.64.0/24") == "192.168.64.5"


def test_plugin_builds_hosts_from_recorded_list(
    tmp_path: Path, fake_multipass: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MULTIPASS_LIST", str(FIXTURES / "list.json"))
    folder = inventory_folder(tmp_path, {"name_prefix": "vm", "key_filename": "~/.ssh/id_ed25519"})
    (folder / "defaults.yaml").write_text("data:\n  redis_password: env:NR_REDIS_PASSWORD\n")
    nr = init_nornir(Settings(folder))
    hosts = nr.inventory.hosts
    assert list(hosts) == ["vm1", "vm2", "vm3"]  # "docker" is filtered out by name_prefix
    assert [h.hostname for h in hosts.values()] == ["192.168.64.5", "192.168.64.6", "192.168.64.7"]
    assert roles(hosts["vm1"]) == ["k3s-server", "redis"]
    assert roles(hosts["vm2"]) == ["k3s-agent", "redis"]
    assert hosts["vm1"].username == "ubuntu"
    assert str(hosts["vm1"].get("redis_password")) == "env:NR_REDIS_PASSWORD"
    extras = hosts["vm3"].get_connection_parameters("fabric").extras
    assert extras["key_filename"] == str(Path("~/.ssh/id_ed25519").expanduser())


def test_plugin_explicit_groups(
    tmp_path: Path, fake_multipass: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MULTIPASS_LIST", str(FIXTURES / "list.json"))
    groups = {
        "vm1": ["k3s_servers", "redis"],
        "vm2": ["k3s_agents", "redis"],
        "vm3": ["k3s_agents", "redis"],
        "docker": ["k3s_agents"],
    }
    nr = init_nornir(Settings(inventory_folder(tmp_path, {"groups": groups})))
    assert roles(nr.inventory.hosts["docker"]) == ["k3s-agent"]


def test_stopped_vm_is_an_error_not_a_silent_omission(
    tmp_path: Path, fake_multipass: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MULTIPASS_LIST", str(FIXTURES / "list-stopped.json"))
    folder = inventory_folder(tmp_path, {"name_prefix": "vm"})
    res = CliRunner().invoke(cli, ["inventory", "-i", str(folder)])
    assert res.exit_code == 2
    assert "VM 'vm2' is Stopped; start it (multipass start vm2)" in res.output


def test_no_matching_vm() -> None:
    doc = json.loads((FIXTURES / "list.json").read_text())
    with pytest.raises(InventoryError, match="no VM whose name starts with 'k8s'"):
        hosts_from_list(doc, {"name_prefix": "k8s"}, registry().schema)


def test_missing_multipass_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InventoryError, match="'multipass' not found on PATH"):
        init_nornir(Settings(inventory_folder(tmp_path, {})))


def test_vms_up_launches_with_cloud_init_and_writes_inventory(tmp_path: Path, fake_multipass: Path) -> None:
    key = tmp_path / "id_ed25519.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKey operator@laptop\n")
    state_dir = tmp_path / "vms"
    res = CliRunner().invoke(
        cli, ["vms", "up", "--count", "3", "--ssh-key", str(key), "--dir", str(state_dir)]
    )
    assert res.exit_code == 0, res.output
    calls = (fake_multipass.parent / (fake_multipass.name + ".calls")).read_text().splitlines()
    launches = [c for c in calls if c.startswith("launch")]
    assert len(launches) == 3 and all("--cloud-init" in c for c in launches)
    user_data = (state_dir / "cloud-init.yaml").read_text()
    assert user_data.startswith("#cloud-config")
    assert "operator@laptop" in yaml.safe_load(user_data)["ssh_authorized_keys"][0]
    known = (state_dir / "known_hosts").read_text().splitlines()
    assert [line.split()[0] for line in known] == ["192.168.64.2", "192.168.64.3", "192.168.64.4"]
    nr = init_nornir(Settings(state_dir / "inventory"))
    assert [h.hostname for h in nr.inventory.hosts.values()] == [
        "192.168.64.2",
        "192.168.64.3",
        "192.168.64.4",
    ]
    assert nr.inventory.hosts["vm1"].get_connection_parameters("fabric").extras["known_hosts"] == str(
        (state_dir / "known_hosts").resolve()
    )
    assert oct((state_dir / "secrets" / "redis_password").stat().st_mode & 0o777) == "0o600"
    # a second `up` reuses the VMs: no new launch
    res = CliRunner().invoke(
        cli, ["vms", "up", "--count", "3", "--ssh-key", str(key), "--dir", str(state_dir)]
    )
    assert res.exit_code == 0, res.output
    calls = (fake_multipass.parent / (fake_multipass.name + ".calls")).read_text().splitlines()
    assert len([c for c in calls if c.startswith("launch")]) == 3
    res = CliRunner().invoke(cli, ["vms", "down", "--count", "3"])
    assert res.exit_code == 0
    assert json.loads(fake_multipass.read_text())["vms"] == {}


def test_vms_up_refuses_a_private_key(tmp_path: Path, fake_multipass: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    res = CliRunner().invoke(cli, ["vms", "up", "--ssh-key", str(key), "--dir", str(tmp_path / "v")])
    assert res.exit_code == 2
    assert "give the PUBLIC key" in res.output
