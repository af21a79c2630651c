"""The Redis ports' nftables table: what it allows, the file and unit, reading the loaded table back (real
nft 1.0.6 output), and the play applying it, checking it and reporting a rule removed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from nr.facts import Output
from tasks.redis import firewall as fw
from tests.fakes.nft import nft_json
from tests.unit.redis_scripted import NAMES, Site

FIXTURE = Path(__file__).parent / "fixtures" / "nft" / "nr_redis.json"
# the table the fixture was captured from: a lab host of 198.18.42.0/24, nr running on the gateway .1
CAPTURED = fw.FirewallSpec((7000, 7003), ("198.18.42.11", "198.18.42.12", "198.18.42.13"),
                           ("10.42.0.0/16", "198.18.42.1"))  # fmt: skip


def test_the_captured_table_is_what_nr_plans() -> None:
    loaded = fw.parse_table(Output(0, FIXTURE.read_text()))
    assert fw.differences(CAPTURED, loaded) == []
    assert loaded.rules == tuple(CAPTURED.rules())
    # the fixtures the play tests use have the shape of the real output
    assert fw.parse_table(Output(0, nft_json(CAPTURED))) == loaded


def test_only_the_redis_ports_are_filtered_and_the_table_is_replaced_atomically() -> None:
    text = CAPTURED.render()
    assert text.splitlines()[3:6] == [
        "table inet nr_redis",
        "delete table inet nr_redis",
        "table inet nr_redis {",
    ]
    assert "type filter hook input priority filter - 5; policy accept;" in text
    assert "flush ruleset" not in text  # Debian's nftables.conf flushes k3s's and Docker's rules: never that
    drops = [r for r in CAPTURED.rules() if r.endswith("drop")]
    assert drops == ["tcp dport { 17000, 17003 } drop", "tcp dport { 7000, 7003 } drop"]
    assert (
        "tcp dport { 17000, 17003 } ip saddr @peers4 accept" in CAPTURED.rules()
    )  # the bus: Redis hosts only
    assert CAPTURED.sets()["peers4"] == ["198.18.42.11", "198.18.42.12", "198.18.42.13"]


def test_the_unit_loads_the_table_at_boot_before_the_network_and_reloads_atomically() -> None:
    unit = fw.unit_text()
    for line in ("DefaultDependencies=no", "Before=network-pre.target shutdown.target", "WantedBy=sysinit.target",
                 f"ExecStart=/usr/sbin/nft -f {fw.FILE}", f"ExecReload=/usr/sbin/nft -f {fw.FILE}",
                 "Type=oneshot", "RemainAfterExit=yes"):  # fmt: skip
        assert line in unit.splitlines()
    assert fw.load_script().splitlines()[0] == f"/usr/sbin/nft -c -f {fw.FILE}"  # checked before it is loaded


def test_sources_overlapping_are_collapsed_and_the_controller_is_let_in() -> None:
    """nft refuses overlapping interval elements: a lab subnet and its hosts' addresses become one network."""
    spec = fw.plan_spec((7000, 7003), ["198.18.41.11", "198.18.41.12", "fd00::13"], ["198.18.41.0/24", "10.42.0.0/16"],
                        ["198.18.41.11", "198.18.41.12", "fd00::13", "198.18.41.20"], lambda _: "192.0.2.7")  # fmt: skip
    sets = spec.sets()
    assert sets["peers4"] == ["198.18.41.11", "198.18.41.12"] and sets["peers6"] == ["fd00::13"]
    assert sets["clients4"] == ["10.42.0.0/16", "192.0.2.7", "198.18.41.0/24"]
    assert sets["clients6"] == ["fd00::13"]


@pytest.mark.parametrize(
    ("loaded", "expected"),
    [
        (nft_json(CAPTURED, drop_rule=7), [("nftables rule", "tcp dport { 7000, 7003 } drop", "missing")]),
        (nft_json(CAPTURED, drop_element="10.42.0.0/16"), [("nftables set clients4", "contains 10.42.0.0/16", "missing")]),
    ],
)  # fmt: skip
def test_a_rule_or_address_removed_by_hand_is_named(
    loaded: str, expected: list[tuple[str, str, str]]
) -> None:
    assert fw.differences(CAPTURED, fw.parse_table(Output(0, loaded))) == expected


def test_no_table_or_no_nft_is_not_loaded() -> None:
    missing = fw.parse_table(Output(1, "", "Error: No such file or directory\nlist table inet nr_redis"))
    assert fw.differences(CAPTURED, missing)[0][:2] == ("nftables table inet nr_redis", "loaded")
    no_nft = fw.parse_table(Output(127, "", "sh: 1: /usr/sbin/nft: not found"))
    assert "not found" in fw.differences(CAPTURED, no_nft)[0][2]


def test_a_missing_rule_fails_check_shows_in_drift_and_the_run_reloads_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch)
    broken = nft_json(s.spec("vm2").firewall, drop_rule=4)  # type: ignore[arg-type]
    for mode in ("check", "drift"):
        for h in NAMES:
            s.remotes[h].expect(s.facts(h, **({"firewall": broken} if h == "vm2" else {})))
        ctx, report = s.context(dry_run=True)
        getattr(s.component(), mode)(ctx)
        assert [(d.host, d.what, d.expected, d.actual) for d in report.drift] == [
            ("vm2", "nftables rule", "tcp dport { 17000, 17003 } drop", "missing")
        ]
        assert [(c.host, c.name) for c in report.checks if not c.ok] == [("vm2", "nftables rule")]
    for h in NAMES:
        s.remotes[h].expect(s.facts(h, **({"firewall": broken} if h == "vm2" else {})))
    s.expect_apply("vm2")
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.ok and report.changed == 1
    script = s.sent("vm2", "set -e")[0]
    assert f"/usr/sbin/nft -c -f {fw.FILE}" in script and f"systemctl reload-or-restart {fw.UNIT}" in script


def test_a_fresh_host_gets_nftables_and_the_table_before_redis_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch)
    fresh = s.facts("vm1", fresh=True, packages="", units="", firewall=(127, "", "sh: 1: /usr/sbin/nft: not found"),
                    **{"dir 7000": "missing", "dir 7003": "missing"})  # fmt: skip
    s.remotes["vm1"].expect(fresh)
    ctx, report = s.context(dry_run=True, limit=["vm1"])
    s.component().apply(ctx)
    diff = next(r.diff for r in report.rows if r.task == "redis.install")
    order = [diff.index(x) for x in ("+ package redis-server", "+ package nftables", "~ load table inet nr_redis",
                                     "+ enable and start redis-server@7000.service")]  # fmt: skip
    assert order == sorted(order)


def test_the_firewall_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(monkeypatch, data={"redis_firewall": False})
    assert s.spec("vm1").firewall is None
    assert "nftables" not in s.spec("vm1").packages
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    ctx, report = s.context(dry_run=True)
    s.component().check(ctx)
    assert not [c for c in report.checks if "firewall" in c.name or "nftables" in c.name]
    assert "nft" not in s.remotes["vm1"].scripts[0]
