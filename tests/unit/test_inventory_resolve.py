"""`nr inventory` resolves the files without Nornir's objects (nr.inventory.resolve, issue 12): its rows
must be exactly those computed from the Nornir inventory a run uses (nr.views.inventory_rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nornir.core.inventory import Host

from nr import views
from nr.config import Settings, init_nornir, inventory_rows
from nr.registry import registry
from tests.unit.test_inventory_validation import REPO, write

NESTED = {
    "hosts": {
        "vm1": {
            "hostname": "10.0.0.1",
            "groups": ["k3s_servers", "redis", "edge"],
            "data": {"k3s_node_labels": []},
        },
        "vm2": {
            "hostname": "10.0.0.2",
            "groups": ["k3s_agents", "redis", "dc2"],
            "port": 2222,
            "data": {"redis_ports": [7100, 7103]},
        },
        "vm3": {
            "hostname": "10.0.0.3",
            "groups": ["dc2", "k3s_agents", "redis"],
            "username": "ops",
            "connection_options": {"fabric": {"extras": {"connect_timeout": 3, "accept_new": True}}},
        },
    },
    "groups": {
        "edge": {"groups": ["dc1"], "data": {"site_name": "edge-site"}},
        "dc1": {"username": "dc1user", "data": {"k3s_node_labels": ["zone=a"], "site_name": "dc1-site"}},
        "dc2": {
            "groups": ["dc1"],
            "connection_options": {"fabric": {"extras": {"connect_timeout": 7, "keepalive_interval": 2}}},
        },
        "redis": {"data": {"redis_ports": [7000, 7003], "redis_node_timeout": 5000}},
    },
    "defaults": {
        "username": "ubuntu",
        "data": {"site_name": "home", "redis_password": "env:NR_REDIS_PASSWORD"},
        "connection_options": {"fabric": {"extras": {"connect_timeout": 10, "command_timeout": 60}}},
    },
}


@pytest.mark.parametrize("case", ["example", "nested"])
def test_rows_equal_those_of_the_nornir_inventory(case: str, tmp_path: Path) -> None:
    folder = REPO / "inventory" if case == "example" else write(tmp_path / "inv", **NESTED)
    settings = Settings(folder)
    fast = inventory_rows(settings)
    assert fast == views.inventory_rows(init_nornir(settings))
    if case == "nested":
        vm2 = fast[1]
        assert (vm2["address"], vm2["port"], vm2["username"]) == ("10.0.0.2", 2222, "dc1user")
        assert vm2["ssh"] == {"connect_timeout": 7, "command_timeout": 60, "keepalive_interval": 2}
        assert fast[0]["data"]["site_name"] == "edge-site" and fast[0]["data"]["k3s_node_labels"] == []


def test_no_data_key_is_shadowed_by_a_nornir_host_attribute() -> None:
    """Nornir's Host.get returns an attribute of that name before the data (resolve does not)."""
    assert [k for k in registry().schema.data if hasattr(Host, k)] == []


def test_another_plugin_goes_through_nornir(tmp_path: Path) -> None:
    folder = write(tmp_path / "inv", **NESTED, raw={"config.yaml": "inventory: {plugin: NoSuchPlugin}\n"})
    from nr.errors import InventoryError

    with pytest.raises(InventoryError, match="unknown plugin"):
        inventory_rows(Settings(folder))
