"""The lab's pure parts: addresses, the inventory it writes, remembered options."""

from __future__ import annotations

from pathlib import Path

import pytest

from nr.errors import NrError
from nr.inventory.validate import RawInventory, validate
from nr.machines.image import IMAGE
from nr.machines.lab import check_subnet, host_address
from nr.machines.labfiles import LabOptions, lab_inventory
from nr.registry import registry

SCHEMA = registry().schema


def test_addresses_and_subnet_range() -> None:
    assert host_address("198.18.1.0/24", 1) == "198.18.1.11"
    assert host_address("198.18.1.0/24", 3) == "198.18.1.13"
    check_subnet("198.19.200.0/24")
    with pytest.raises(NrError, match=r"inside 198\.18\.0\.0/15"):
        check_subnet("10.0.0.0/24")
    with pytest.raises(NrError, match="no room"):
        host_address("198.18.1.0/28", 9)


def test_lab_inventory_is_valid_and_has_roles(tmp_path: Path) -> None:
    docs = lab_inventory([("lab1", "198.18.0.11"), ("lab2", "198.18.0.12"), ("lab3", "198.18.0.13")], tmp_path,
                         LabOptions({"k3s_binary": "/opt/k3s"}), SCHEMA)  # fmt: skip
    assert docs["hosts"]["lab1"]["groups"] == ["k3s_servers", "redis"]
    assert docs["hosts"]["lab3"]["groups"] == ["k3s_agents", "redis"]
    data = docs["defaults"]["data"]
    assert data["k3s_binary"] == "/opt/k3s" and data["image_base"] == IMAGE
    assert data["redis_password"].startswith("file:")
    validate(RawInventory(docs["hosts"], docs["groups"], docs["defaults"], base_dir=tmp_path), SCHEMA)


def test_lab_data_can_name_the_lab_network(tmp_path: Path) -> None:
    """The lab's app containers get addresses of the lab network: the Redis firewall lets it in."""
    docs = lab_inventory([("lab1", "198.18.7.11")], tmp_path, LabOptions(), SCHEMA, "198.18.7.0/24")
    assert docs["defaults"]["data"]["redis_clients"] == ["198.18.7.0/24"]


def test_two_hosts_have_no_redis_group(tmp_path: Path) -> None:
    docs = lab_inventory([("lab1", "198.18.0.11"), ("lab2", "198.18.0.12")], tmp_path, LabOptions(), SCHEMA)
    assert all("redis" not in h["groups"] for h in docs["hosts"].values())
    assert "k3s_binary" not in docs["defaults"]["data"]


def test_options_are_remembered(tmp_path: Path) -> None:
    LabOptions({"k3s_binary": "/opt/k3s"}, True).save(tmp_path)
    loaded = LabOptions.load(tmp_path)
    assert loaded == LabOptions({"k3s_binary": "/opt/k3s"}, True)
    assert loaded.merged({}, None) == loaded
    assert loaded.merged({"k3s_binary": "/other"}, False) == LabOptions({"k3s_binary": "/other"}, False)


def test_options_of_earlier_versions_are_read(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text('{"k3s_binary": "/opt/k3s", "docker_socket": true}')
    assert LabOptions.load(tmp_path) == LabOptions({"k3s_binary": "/opt/k3s"}, True)
