"""`nr status` without hosts: the engine's one round trip per host, its sections, and what it prints.

The engine is tested with two small components on scripted remotes (pure orchestration); the redis,
k3s and app sections from their real parsers on fixtures and the fake cluster.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from rich.console import Console

from nr import hostinfo
from nr.errors import NrError
from nr.facts import Facts, Output
from nr.play import PlayContext
from nr.status import Cell, HostLine, Level, Reads, SiteStatus, StatusSection, collect
from nr.status_view import print_status, status_json
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context

HOST_OUTPUTS = {
    "host/os": '"Debian GNU/Linux 12 (bookworm)"',
    "host/load": "0.50 0.40 0.30 1/100 123",
    "host/cpus": "2",
    "host/memory": "MemTotal:       2048000 kB\nMemAvailable:   1024000 kB",
    "host/disk": "/dev/sda1 10000000 7500000 2500000 75% /",
    "host/uptime": "1234.5 2000.0",
}


class Alpha:
    """A component with a status: reads a command on every host, shows it on each host's line."""

    name = "alpha"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def apply(self, ctx: PlayContext) -> None: ...

    def check(self, ctx: PlayContext) -> None: ...

    def drift(self, ctx: PlayContext) -> None: ...

    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        return {h.name: Reads(commands={"version": "alpha --version"}) for h in ctx.all_hosts()}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        lines = tuple(HostLine(h, "alpha", Cell(f.out("version"), Level.OK)) for h, f in facts.items())
        return StatusSection(self.name, "Alpha", Cell("fine", Level.OK), host_lines=lines)


class Broken(Alpha):
    name = "beta"

    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        return {}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        raise NrError("beta: the secret file is missing")


def site_status(**remotes: ScriptedRemote) -> SiteStatus:
    hosts = {name: {"hostname": f"198.18.0.{i}"} for i, name in enumerate(remotes, start=11)}
    ctx, _ = scripted_context(hosts, remotes)
    return collect(ctx, [Alpha(), Broken()], "demo")  # type: ignore[list-item]


def test_one_round_trip_per_host_holds_every_components_reads() -> None:
    h1 = ScriptedRemote("h1", [facts_reply(outputs={**HOST_OUTPUTS, "alpha/version": "alpha 1.2"})])
    h2 = ScriptedRemote("h2", [Reply("printf", "", "ssh: connect to host h2: Connection refused", 255)])
    status = site_status(h1=h1, h2=h2)
    assert len(h1.scripts) == 1 and len(h2.scripts) == 1
    assert "alpha --version" in h1.scripts[0] and "/proc/loadavg" in h1.scripts[0]
    one, two = status.hosts
    assert one.reachable and one.info is not None and one.info.os == "Debian GNU/Linux 12 (bookworm)"
    assert one.info.mem_free_pct == 50.0 and one.info.disk_free_kib == 2500000 and one.info.load1 == 0.5
    assert not two.reachable and "Connection refused" in two.error
    alpha, beta = status.sections
    assert [(line.host, line.value.text) for line in alpha.host_lines] == [("h1", "alpha 1.2")]
    assert beta.summary.level is Level.FAIL and "the secret file is missing" in beta.problems[0].actual
    assert not status.ok


class Gamma(Alpha):
    """Declares on every host the very command Alpha does (as k3s and deploy share one snapshot)."""

    name = "gamma"

    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        return {h.name: Reads(commands={"release": "alpha --version"}) for h in ctx.all_hosts()}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        lines = tuple(HostLine(h, "gamma", Cell(f.out("release"), Level.OK)) for h, f in facts.items())
        return StatusSection(self.name, "Gamma", Cell("fine", Level.OK), host_lines=lines)


class Remote(Broken):
    """Reads nothing on the hosts (as redis and checks, which ask over TCP from this machine)."""

    name = "remote"

    def __init__(self) -> None:
        self.started = threading.Event()

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        self.started.set()
        return StatusSection(self.name, "Remote", Cell(f"{len(facts)} facts", Level.OK))


def test_a_command_two_components_declare_runs_once_and_both_get_its_output() -> None:
    h1 = ScriptedRemote("h1", [facts_reply(outputs={**HOST_OUTPUTS, "alpha/version": "alpha 1.2"})])
    ctx, _ = scripted_context({"h1": {"hostname": "198.18.0.11"}}, {"h1": h1})
    status = collect(ctx, [Alpha(), Gamma()], "demo")  # type: ignore[list-item]
    (script,) = h1.scripts
    assert script.count("alpha --version") == 1  # the fixture is strict: a second name would be asked
    alpha, gamma = status.sections
    assert [line.value.text for line in alpha.host_lines] == ["alpha 1.2"]
    assert [line.value.text for line in gamma.host_lines] == ["alpha 1.2"]


def test_a_section_that_reads_no_host_is_made_while_the_hosts_are_read() -> None:
    """The host's read waits for that section to have started: after the reads, it would never start."""
    remote = Remote()
    answer = facts_reply(outputs={**HOST_OUTPUTS, "alpha/version": "alpha 1.2"})

    def wait_then_answer(script: str) -> str:
        assert remote.started.wait(5), "the section waited for the hosts' reads"
        return str(answer.stdout(script) if callable(answer.stdout) else answer.stdout)

    h1 = ScriptedRemote("h1", [Reply(answer.match, wait_then_answer)])
    ctx, _ = scripted_context({"h1": {"hostname": "198.18.0.11"}}, {"h1": h1})
    status = collect(ctx, [remote, Alpha()], "demo")  # type: ignore[list-item]
    assert status.hosts[0].reachable, status.hosts[0].error
    assert [s.component for s in status.sections] == ["remote", "alpha"]
    assert status.sections[0].summary.text == "0 facts" and status.sections[1].host_lines


def test_a_host_with_odd_output_still_shows_what_could_be_read() -> None:
    odd = {**HOST_OUTPUTS, "host/memory": "garbage", "host/os": (1, "", "sed: no such file")}
    info = hostinfo.parse(
        Facts(outputs={k[5:]: Output(*v) if isinstance(v, tuple) else Output(0, v) for k, v in odd.items()})
    )
    assert info.os is None and info.mem_free_pct is None and info.load1 == 0.5 and info.cpus == 2
    assert hostinfo.size(2500000) == "2.4 GiB" and hostinfo.size(None) == "?"


EVIL = "\x1b]0;owned\x07<b>bold</b>[red]x[/red]"


def test_text_and_json_escape_and_redact_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from nr.secrets import REDACTOR

    REDACTOR.add("hunter2-secret-value")
    h1 = ScriptedRemote(
        "h1",
        [facts_reply(outputs={**HOST_OUTPUTS, "host/os": EVIL, "alpha/version": "v hunter2-secret-value"})],
    )
    status = site_status(h1=h1)
    out = io.StringIO()
    print_status(status, Console(file=out, width=200, highlight=False))
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;owned\\a" in text
    assert "[red]x[/red]" in text  # markup in a value is shown, not obeyed
    assert "hunter2-secret-value" not in text
    doc = json.dumps(status_json(status))
    assert "hunter2-secret-value" not in doc and "\\u001b]0;owned" in doc
    assert json.loads(doc)["hosts"][0]["info"]["os"].startswith("\x1b]0;owned")


def facts_of(outputs: Mapping[str, Any]) -> Facts:
    return Facts(
        outputs={k: Output(*v) if isinstance(v, tuple) else Output(0, v) for k, v in outputs.items()}
    )
