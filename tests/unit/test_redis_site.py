"""The Redis site model and its inventory checks: ports that clash, node timeout bounds, firewall sources,
the password (one reference, >= 16 characters, a Secret), all refused before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nr.cli import cli
from nr.config import Settings, init_nornir
from nr.errors import NrError
from nr.inventory.validate import InventoryError
from tasks.redis.site import load_site
from tests.unit.redis_scripted import ENV, HOSTS, NAMES, PASSWORD, Site

GOOD = {n: {**h} for n, h in HOSTS.items()}


def inventory(tmp_path: Path, data: dict[str, object], hosts: dict[str, object] | None = None) -> Path:
    folder = tmp_path / "inv"
    folder.mkdir(parents=True)
    (folder / "hosts.yaml").write_text(yaml.safe_dump(hosts or GOOD))
    (folder / "groups.yaml").write_text(yaml.safe_dump({"redis": {"data": data}}))
    (folder / "defaults.yaml").write_text(yaml.safe_dump({"data": {"redis_password": f"env:{ENV}"}}))
    return folder


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([22, 7003], "port 22 clashes with SSH (22)"),
        ([6443, 7003], "port 6443 clashes with the k3s API server and its agent load balancer (6443-6444)"),
        ([10250, 7003], "port 10250 clashes with the kubelet and the k3s control plane (10248-10259)"),
        ([2380, 7003], "port 2380 clashes with k3s's embedded etcd (2379-2380)"),
        ([30080, 7003], "port 30080 clashes with the Kubernetes NodePort range (30000-32767)"),
        (
            [7000, 20250],
            "port 20250: its cluster bus port 30250 (port+10000) clashes with the Kubernetes NodePort",
        ),
        ([7000, 17000], "ports 7000 and 17000 clash: one is the other's cluster bus port"),
        ([6379, 7000], None),
        ([8472, 8475], None),  # flannel's VXLAN port is UDP: no clash
        ([80, 7003], "port 80 is a privileged port"),
    ],
)
def test_redis_ports_that_clash_are_refused_naming_the_field(
    tmp_path: Path, ports: list[int], message: str | None
) -> None:
    folder = inventory(tmp_path, {"redis_ports": ports})
    if message is None:
        init_nornir(Settings(folder))
        return
    with pytest.raises(InventoryError) as err:
        init_nornir(Settings(folder))
    assert f"groups.yaml: group 'redis': data.redis_ports: {message}" in str(err.value)


@pytest.mark.parametrize(
    ("value", "ok"), [(999, False), (1000, True), (5000, True), (60000, True), (60001, False)]
)
def test_node_timeout_bounds(tmp_path: Path, value: int, ok: bool) -> None:
    folder = inventory(tmp_path, {"redis_node_timeout": value})
    if ok:
        init_nornir(Settings(folder))
        return
    with pytest.raises(
        InventoryError, match=r"data\.redis_node_timeout: must be between 1000 and 60000 milliseconds"
    ):
        init_nornir(Settings(folder))


def test_firewall_sources_must_be_addresses_or_networks(tmp_path: Path) -> None:
    folder = inventory(tmp_path, {"redis_clients": ["10.0.0.0/8", "everyone"]})
    with pytest.raises(
        InventoryError, match=r"data\.redis_clients: 'everyone': must be an IP address or a network"
    ):
        init_nornir(Settings(folder))
    init_nornir(
        Settings(inventory(tmp_path / "ok", {"redis_clients": ["10.0.0.0/8", "192.0.2.7", "fd00::/64"]}))
    )


def test_a_short_password_is_refused_before_any_host_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "fifteen-chars-x")
    folder = inventory(tmp_path, {})
    res = CliRunner().invoke(cli, ["run", "redis", "-i", str(folder)])
    assert res.exit_code == 2, res.output
    assert (
        "data.redis_password (env:NR_TEST_REDIS_PASSWORD): the redis password has 15 characters; use at least 16"
        in res.output
    )
    assert "fifteen-chars-x" not in res.output
    # the scripted hosts see no script at all
    s = Site(monkeypatch)
    monkeypatch.setenv(ENV, "short-password")
    ctx, _ = s.context()
    assert s.component().validate(ctx) == [
        "data.redis_password (env:NR_TEST_REDIS_PASSWORD): the redis password has 14 characters; use at least 16 "
        "(the cluster's client ports answer anyone the firewall lets through, and AUTH is cheap to guess at)"
    ]
    assert all(not r.scripts for r in s.remotes.values())


def test_the_password_is_one_reference_for_every_redis_host(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(monkeypatch)
    s.hosts = {**s.hosts, "vm2": {**s.hosts["vm2"], "data": {"redis_password": "env:OTHER_REDIS_PASSWORD"}}}
    with pytest.raises(
        NrError, match=r"data\.redis_password must be set, to the same secret reference, on every redis"
    ):
        load_site(s.context()[0])


def test_the_site_model_other_components_read(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(monkeypatch, data={"redis_node_timeout": 4000, "redis_ports": [7100, 7103]})
    site = s.site()
    assert site.addresses == ("198.18.0.11", "198.18.0.12", "198.18.0.13")
    assert site.ports == (7100, 7103) and site.node_timeout_ms == 4000
    assert site.nodes[:2] == (("198.18.0.11", 7100), ("198.18.0.11", 7103)) and len(site.nodes) == 6
    assert site.password.reveal() == PASSWORD
    assert PASSWORD not in repr(site) and PASSWORD not in str(site.password)
    assert site.clients == ("10.42.0.0/16",)  # the default pod network


def test_settings_must_be_the_same_on_every_redis_host(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(monkeypatch)
    s.hosts = {**s.hosts, "vm3": {**s.hosts["vm3"], "data": {"redis_node_timeout": 3000}}}
    with pytest.raises(NrError, match=r"data\.redis_node_timeout must be the same on every redis host"):
        load_site(s.context()[0])


def test_a_hand_edited_password_never_prints_in_a_diff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 8: the requirepass/masterauth lines are masked whatever their value."""
    s = Site(monkeypatch)
    conf = s.site().files("vm1")[0]
    edited = conf.content.decode().replace(f'requirepass "{PASSWORD}"', 'requirepass "hand-edited-secret-42"')
    for h in NAMES:
        s.remotes[h].expect(s.facts(h, files={conf.path: edited.encode()} if h == "vm1" else None))
    ctx, report = s.context(dry_run=True)
    s.component().apply(ctx)
    install = next(r for r in report.rows if r.task == "redis.install" and r.host == "vm1")
    assert f"~ update {conf.path}" in install.diff
    assert "hand-edited-secret-42" not in install.diff and PASSWORD not in install.diff
    assert "secret value changed" in install.diff
