"""Read-ahead (nr.readahead, issue 12): the components' declared reads start before the first component,
and a result read ahead is used only while nothing has changed. Driven through nr.runner.execute, with
scripted hosts: what each host was sent, and in which order, says what was read again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from nr import readahead
from nr.errors import NrError
from nr.facts import gather
from nr.outcome import Finding, Outcome
from nr.play import HostRun, PlayContext
from nr.readahead import Probe, Read, ReadAhead
from nr.runner import execute
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context

HOSTS = {"vm1": {"hostname": "10.0.0.1"}, "vm2": {"hostname": "10.0.0.2"}}


class Reader:
    """A component that reads one command on every host, then maybe changes or fails."""

    def __init__(self, name: str, *, change: bool = False, fail: bool = False, declare: bool = True) -> None:
        self.name, self.change, self.fail, self.declare = name, change, fail, declare
        self.seen: dict[str, str] = {}

    def commands(self) -> dict[str, str]:
        return {self.name: f"cat /etc/{self.name}"}

    def reads(self, ctx: PlayContext, mode: str) -> list[Read]:
        if not self.declare:
            return []
        return [Read.of(h.name, commands=self.commands()) for h in ctx.hosts()]

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def _host(self, run: HostRun) -> Outcome[None]:
        self.seen[run.name] = gather(run.remote, commands=self.commands()).out(self.name)
        if self.change:
            return Outcome(findings=(Finding("x", "1", "0"),), extra_diff="+x\n", changed_flag=True)
        return Outcome()

    def apply(self, ctx: PlayContext) -> None:
        if self.fail:
            raise NrError(f"{self.name} cannot go on")
        ctx.run("apply", self._host)

    def check(self, ctx: PlayContext) -> None:
        self.apply(ctx)

    def drift(self, ctx: PlayContext) -> None:
        self.apply(ctx)


def remotes(*components: str) -> dict[str, ScriptedRemote]:
    """Hosts that answer every component's read, as often as asked."""
    return {
        h: ScriptedRemote(
            h, [facts_reply(outputs={c: f"{c}@{h}" for c in components}, times=None, strict=False)]
        )
        for h in HOSTS
    }


def reads_of(remote: ScriptedRemote) -> list[str]:
    """Which components' commands each script sent to a host read, in order."""
    return [" ".join(sorted(w for w in ("base", "redis", "k3s") if f"/etc/{w}" in s)) for s in remote.scripts]


def run(components: list[Any], hosts: dict[str, ScriptedRemote], mode: str = "apply") -> Any:
    ctx, report = scripted_context(HOSTS, hosts)
    execute(ctx.nornir, ctx, report, components, lambda c, cx: c.apply(cx), Console(quiet=True), mode)
    return report


@pytest.fixture(autouse=True)
def _enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(readahead.ENV, raising=False)
    yield


def test_every_declared_read_is_made_once_and_used_in_turn() -> None:
    hosts = remotes("base", "redis", "k3s")
    comps = [Reader("base"), Reader("redis"), Reader("k3s")]
    report = run(comps, hosts)
    assert report.ok
    for h, remote in hosts.items():
        assert sorted(reads_of(remote)) == ["base", "k3s", "redis"]  # one round trip each, no second
        assert [c.seen[h] for c in comps] == [f"base@{h}", f"redis@{h}", f"k3s@{h}"]


def test_after_a_change_the_later_components_read_again() -> None:
    hosts = remotes("base", "redis", "k3s")
    base = Reader("base", change=True)
    original = base._host

    def host(run_: HostRun) -> Outcome[None]:  # the change comes once every read ahead was made
        deadline = time.monotonic() + 10
        while len(hosts[run_.name].scripts) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        return original(run_)

    base._host = host  # type: ignore[method-assign]
    report = run([base, Reader("redis"), Reader("k3s")], hosts)
    assert report.changed == 2
    for remote in hosts.values():
        assert sorted(reads_of(remote)) == ["base", "k3s", "k3s", "redis", "redis"]
        # what was read ahead of the change is never used: the last reads are the ones after it
        assert sorted(reads_of(remote)[-2:]) == ["k3s", "redis"]


def test_a_failed_host_makes_the_others_read_again() -> None:
    hosts = remotes("base", "redis")
    hosts["vm2"] = ScriptedRemote("vm2", [Reply("/etc/base", exited=1, stderr="boom", times=None)])
    hosts["vm2"].expect(facts_reply(outputs={"redis": "redis@vm2"}, times=None, strict=False))
    report = run([Reader("base"), Reader("redis")], hosts)
    assert report.failed_hosts == ["vm2"]
    assert reads_of(hosts["vm1"]).count("redis") == 2  # read ahead, then again after vm2 failed


def test_a_component_that_fails_stops_the_ones_after_it() -> None:
    hosts = remotes("base", "redis", "k3s")
    k3s = Reader("k3s")
    report = run([Reader("base"), Reader("redis", fail=True), k3s], hosts)
    assert report.errors == ["redis: redis cannot go on"]
    assert k3s.seen == {}  # its reads may have been made ahead: it never ran


def test_undeclared_reads_are_made_in_turn() -> None:
    hosts = remotes("base", "redis")
    comps = [Reader("base"), Reader("redis", declare=False)]
    run(comps, hosts)
    assert [c.seen["vm1"] for c in comps] == ["base@vm1", "redis@vm1"]
    assert sorted(reads_of(hosts["vm1"])) == ["base", "redis"]


def test_a_read_that_failed_ahead_is_made_again_in_turn() -> None:
    hosts = remotes("base")
    hosts["vm1"] = ScriptedRemote("vm1", [Reply("/etc/base", exited=255, stderr="hiccup", times=1)])
    hosts["vm1"].expect(facts_reply(outputs={"base": "base@vm1"}, times=None, strict=False))
    comp = Reader("base")
    report = run([comp], hosts)
    assert report.ok and comp.seen["vm1"] == "base@vm1"
    assert reads_of(hosts["vm1"]) == ["base", "base"]


def test_turned_off_nothing_is_read_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(readahead.ENV, "0")
    hosts = remotes("base", "redis")
    run([Reader("base", change=True), Reader("redis")], hosts)
    assert reads_of(hosts["vm1"]) == ["base", "redis"]  # in turn, once each


def test_an_upload_drops_what_was_read_ahead() -> None:
    inner = ScriptedRemote("vm1", [facts_reply(outputs={"base": "1"}, times=None, strict=False)])
    ahead = ReadAhead(lambda name: inner)
    ahead.start([Read.of("vm1", commands={"base": "cat /etc/base"})])
    remote = readahead.ReadAheadRemote(inner, ahead, "vm1")
    remote.put(__import__("pathlib").Path("/dev/null"), "/tmp/x")  # noqa: S108
    assert remote.prefetched([], {"base": "cat /etc/base"}) is None
    assert not ahead.valid


def test_hosts_open_their_connections_at_the_same_time() -> None:
    """Two hosts' first steps open their connections concurrently (a global lock would deadlock the
    barrier: before Python 3.12 a cached_property held one lock for every instance)."""
    barrier = threading.Barrier(2, timeout=10)
    hosts = remotes("base")

    def connect(host: Any) -> ScriptedRemote:
        barrier.wait()  # both hosts must be inside connect at once
        return hosts[host.name]

    ctx, report = scripted_context(HOSTS, hosts)
    ctx = PlayContext(ctx.nornir, component="test", recorder=report, connect=connect)
    step = ctx.run("read", lambda run: Outcome(value=gather(run.remote, commands={"base": "x"}).out("base")))
    assert step.values == {"vm1": "base@vm1", "vm2": "base@vm2"} and not step.failed


def test_every_components_reads_run_at_once_whatever_the_first_component_declared() -> None:
    """Three components' reads on three hosts (three a host: each host's limit) are all on their way
    together: a barrier of nine. The pool used to be sized by the first component's reads (3 -> 4
    workers), so the later components' reads waited for those and the barrier broke."""
    names = ["vm1", "vm2", "vm3"]
    components = ["base", "redis", "k3s"]
    barrier = threading.Barrier(len(names) * len(components), timeout=5)

    class Waiting(ScriptedRemote):
        def run(self, script: str, **kw: Any) -> Any:
            barrier.wait()
            return super().run(script, **kw)

    hosts = {
        h: Waiting(h, [facts_reply(outputs={c: f"{c}@{h}" for c in components}, times=None, strict=False)])
        for h in names
    }
    ahead = ReadAhead(lambda name: hosts[name])
    for c in components:  # as nr.runner.read_ahead does: one start per component
        ahead.start([Read.of(h, commands={c: f"cat /etc/{c}"}) for h in names])
    taken = {(h, c): ahead.take(h, [], {c: f"cat /etc/{c}"}) for h in names for c in components}
    assert {k: f.out(k[1]) if f else None for k, f in taken.items()} == {
        (h, c): f"{c}@{h}" for h in names for c in components
    }
    ahead.close()


class Sharer(Reader):
    """A component whose read holds its own command and one every Sharer runs (``cat /etc/shared``)."""

    def commands(self) -> dict[str, str]:
        return {self.name: f"cat /etc/{self.name}", f"snap-{self.name}": "cat /etc/shared"}

    def _host(self, run: HostRun) -> Outcome[None]:
        facts = gather(run.remote, commands=self.commands())
        self.seen[run.name] = f"{facts.out(self.name)} {facts.out(f'snap-{self.name}')}"
        return Outcome()


def test_a_command_several_reads_declare_runs_once_and_each_gets_its_output() -> None:
    hosts = {
        h: ScriptedRemote(h, [facts_reply(outputs={"base": f"base@{h}", "redis": f"redis@{h}",
                                                    "snap-base": f"shared@{h}"}, times=None, strict=False)])
        for h in HOSTS
    }  # fmt: skip
    comps = [Sharer("base"), Sharer("redis")]
    assert run(comps, hosts).ok
    for h, remote in hosts.items():
        # two round trips (one per component), the shared command in one of them only
        assert sorted(s.count("cat /etc/shared") for s in remote.scripts) == [0, 1]
        assert [c.seen[h] for c in comps] == [f"base@{h} shared@{h}", f"redis@{h} shared@{h}"]


def test_a_read_whose_every_command_is_shared_makes_no_round_trip() -> None:
    inner = ScriptedRemote("vm1", [facts_reply(outputs={"a": "1", "b": "2"}, times=1)])
    ahead = ReadAhead(lambda name: inner)
    ahead.start(
        [Read.of("vm1", commands={"a": "cat /a", "b": "cat /b"}), Read.of("vm1", commands={"x": "cat /b"})]
    )
    second = ahead.take("vm1", [], {"x": "cat /b"})
    first = ahead.take("vm1", [], {"a": "cat /a", "b": "cat /b"})
    assert second is not None and second.outputs["x"].text == "2"
    assert first is not None and first.out("a") == "1" and len(inner.scripts) == 1


def test_when_the_read_running_a_shared_command_fails_the_others_read_again_in_turn() -> None:
    inner = ScriptedRemote("vm1", [Reply("cat /a", exited=255, stderr="hiccup", times=1)])
    inner.expect(facts_reply(outputs={"c": "3"}, times=None, strict=False))
    ahead = ReadAhead(lambda name: inner)
    ahead.start(
        [
            Read.of("vm1", commands={"a": "cat /a", "b": "cat /b"}),
            Read.of("vm1", commands={"x": "cat /b", "c": "cat /c"}),
        ]
    )
    assert ahead.take("vm1", [], {"x": "cat /b", "c": "cat /c"}) is None
    assert ahead.take("vm1", [], {"a": "cat /a", "b": "cat /b"}) is None


def test_a_probe_made_ahead_is_taken_once_and_dropped_on_a_change_or_a_failure() -> None:
    ahead = ReadAhead(ScriptedRemote)
    calls: list[str] = []

    def boom() -> str:
        raise OSError("refused")

    started = ahead.start([Probe(("a",), lambda: calls.append("a") or "A"), Probe(("b",), boom)])
    assert started == 2
    assert ahead.take_probe(("a",)) == "A" and ahead.take_probe(("a",)) is None  # once
    assert ahead.take_probe(("b",)) is None  # failed: its component probes again in turn
    assert ahead.take_probe(("never",)) is None
    ahead.start([Probe(("c",), lambda: "C")])
    ahead.invalidate()
    assert ahead.take_probe(("c",)) is None and calls == ["a"]


def test_a_probe_kept_for_a_preflight_is_taken_again_by_the_turn() -> None:
    ahead = ReadAhead(ScriptedRemote)
    calls: list[str] = []
    ahead.start([Probe(("obs",), lambda: calls.append("obs") or "O")])
    assert ahead.take_probe(("obs",), keep=True) == "O"
    assert ahead.take_probe(("obs",)) == "O" and ahead.take_probe(("obs",)) is None
    assert calls == ["obs"]  # made once for both


class Preflighted(Reader):
    """A Reader whose preflight takes its probe (kept for its turn) and may refuse the run."""

    def __init__(self, name: str, *, refuse: bool = False) -> None:
        super().__init__(name)
        self.refuse, self.probed, self.order = refuse, 0, []  # type: ignore[var-annotated]

    def _probe(self) -> str:
        self.probed += 1
        return "live"

    def reads(self, ctx: PlayContext, mode: str) -> list[Read | Probe]:  # type: ignore[override]
        return [Probe((self.name,), self._probe), *super().reads(ctx, mode)]

    def preflight(self, ctx: PlayContext) -> list[str]:
        self.order.append("preflight")
        seen = ctx.read_ahead().take_probe((self.name,), keep=True)
        return [f"{self.name}: refused ({seen})"] if self.refuse else []

    def apply(self, ctx: PlayContext) -> None:
        self.order.append(f"apply {ctx.read_ahead().take_probe((self.name,))}")
        super().apply(ctx)


def test_preflights_run_after_the_reads_start_and_before_any_turn() -> None:
    first, second = Reader("base"), Preflighted("redis")
    hosts = remotes("base", "redis")
    report = run([first, second], hosts)
    assert report.ok
    assert second.order == ["preflight", "apply live"] and second.probed == 1  # one probe for both


def test_a_preflight_problem_stops_the_run_before_any_component_runs() -> None:
    from nr.runner import Refused

    first, second = Reader("base", change=True), Preflighted("redis", refuse=True)
    hosts = remotes("base", "redis")
    with pytest.raises(Refused) as err:
        run([first, second], hosts)
    assert err.value.problems == ["redis: refused (live)"]
    assert first.seen == {} and second.order == ["preflight"]  # no turn ran: nothing changed
