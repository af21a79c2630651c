"""The walk in the README's "How it is built" is true: a component with its own data key and role
group is added in three files outside the engine (its contract, its play, a catalog), and the
validator, `nr inventory`, the role column, the lab's generated inventory and `nr run` all see it,
with nothing in nr/ changed and nothing reinstalled."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nr.cli import cli
from nr.registry import registry

CONTRACT = """
from nr.contract import Contract, Field, Kind, RoleGroup
from nr.formats import port_range

CONTRACT = Contract(
    data={"exporter_port": Field(Kind.PORT, "port node_exporter listens on", port_range(1024, 65535, "a port"))},
    roles=[RoleGroup("monitored", "monitored", "hosts that run node_exporter", lambda i, n: True)],
)
"""
PLAY = """
from nr.changes import Change
from nr.facts import gather
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext


def converge(run: HostRun) -> Outcome[None]:
    port = int(run.get("exporter_port") or 9100)
    facts = gather(run.remote, commands={"port": "cat /etc/exporter-port 2>/dev/null || true"})
    if facts.out("port").strip() == str(port):
        return Outcome()
    return run.apply([Change("exporter port", str(port), facts.out("port").strip() or "unset",
                             f"echo {port} > /etc/exporter-port")])


class Exporter:
    name = "exporter"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def apply(self, ctx: PlayContext) -> None:
        ctx.run("apply", converge, group="monitored")

    def check(self, ctx: PlayContext) -> None:
        pass

    def drift(self, ctx: PlayContext) -> None:
        self.apply(ctx)


component = Exporter()
"""
CATALOG = """
from nr.registry import Catalog, Entry

CATALOG = Catalog(
    entries=[Entry("exporter", "node_exporter on the monitored hosts",
                   "exporter_pkg.contract:CONTRACT", "exporter_pkg.play:component")],
    plays={"monitoring": ("exporter",)},
)
"""


@pytest.fixture
def extra_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pkg = tmp_path / "exporter_pkg"
    pkg.mkdir()
    for name, text in {"__init__": "", "contract": CONTRACT, "play": PLAY, "catalog": CATALOG}.items():
        (pkg / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NR_CATALOGS", "exporter_pkg.catalog:CATALOG")
    registry.cache_clear()
    yield tmp_path
    registry.cache_clear()
    for mod in [m for m in sys.modules if m.startswith("exporter_pkg")]:
        del sys.modules[mod]


def inventory(tmp_path: Path, port: object) -> Path:
    folder = tmp_path / "inv"
    folder.mkdir(exist_ok=True)
    (folder / "hosts.yaml").write_text(
        f"h1: {{hostname: 127.0.0.1, groups: [monitored], data: {{exporter_port: {port}}}}}\n"
    )
    return folder


def test_its_data_key_and_role_group_are_known_to_the_engine(extra_component: Path) -> None:
    schema = registry().schema
    assert "exporter_port" in schema.data and schema.role_groups["monitored"] == "monitored"
    assert registry().play("monitoring") == ("exporter",)
    res = CliRunner().invoke(cli, ["inventory", "-i", str(inventory(extra_component, 9100)), "--json"])
    assert res.exit_code == 0, res.output
    (host,) = json.loads(res.stdout)["hosts"]
    assert "monitored" in host["roles"] and host["data"]["exporter_port"] == 9100
    assert "monitored" in schema.default_groups(0, 3)  # the lab and Multipass put hosts in it


def test_its_format_check_refuses_bad_values_before_any_host_is_touched(extra_component: Path) -> None:
    res = CliRunner().invoke(cli, ["run", "exporter", "-i", str(inventory(extra_component, 80))])
    assert res.exit_code == 2
    assert "data.exporter_port" in res.output and "must be a port (1024-65535)" in res.output


def test_it_runs_through_the_engine(extra_component: Path) -> None:
    from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context

    play = registry().component("exporter")
    remote = ScriptedRemote("h1", [facts_reply(outputs={"port": ""}), Reply("set -e")])
    hosts = {"h1": {"hostname": "127.0.0.1", "groups": ["monitored"], "data": {"exporter_port": 9200}}}
    ctx, report = scripted_context(hosts, {"h1": remote}, component="exporter")
    play.apply(ctx)
    assert report.ok and report.changed == 1 and "echo 9200 > /etc/exporter-port" in remote.scripts[1]


def test_nothing_in_the_engine_names_it() -> None:
    nr_dir = Path(__file__).resolve().parents[2] / "nr"
    names = ("exporter_pkg", "exporter_port", "monitored")
    assert not [p for p in nr_dir.rglob("*.py") if any(n in p.read_text() for n in names)]
