"""nr.preconnect: every host's connection starts opening as soon as the inventory is read; the steps that
ask for it later share it, an unreachable host costs one attempt, a late one is closed after the run."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from nornir.core.plugins.connections import ConnectionPluginRegister

import nr.connection  # noqa: F401 - registers the real plugin first, so that the fake below replaces it
from nr import early_tcp, preconnect
from nr.play import PlayContext
from tests.fakes.remote import scripted_context

HOSTS = {f"vm{i}": {"hostname": f"198.18.0.{10 + i}"} for i in (1, 2, 3)}


class Plugin:
    """A connection plugin that takes ``delay`` seconds to open, fails for ``down`` hosts, and records."""

    delay = 0.0
    down: ClassVar[set[str]] = set()
    gate: threading.Event | None = None
    opened: ClassVar[list[tuple[str, str]]] = []  # (host, thread name) of every attempt
    closed: ClassVar[list[str]] = []
    dials: ClassVar[list[tuple[str, int]]] = []  # (address, port) of every early TCP connect

    def open(self, hostname: str | None = None, **_: Any) -> None:
        self.host = next(n for n, h in HOSTS.items() if h["hostname"] == hostname)
        Plugin.opened.append((self.host, threading.current_thread().name))
        if Plugin.gate is not None:
            Plugin.gate.wait(5)
        time.sleep(Plugin.delay)
        if self.host in Plugin.down:
            raise ConnectionError(f"{self.host}: connection refused")
        self.connection = object()

    def close(self) -> None:
        Plugin.closed.append(self.host)


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> type[Plugin]:
    monkeypatch.setitem(ConnectionPluginRegister.available, "fabric", Plugin)
    monkeypatch.setattr(Plugin, "delay", 0.0)
    monkeypatch.setattr(Plugin, "gate", None)
    monkeypatch.setattr(Plugin, "down", set())
    monkeypatch.setattr(Plugin, "opened", [])
    monkeypatch.setattr(Plugin, "closed", [])
    monkeypatch.delenv(preconnect.ENV, raising=False)
    monkeypatch.setattr(early_tcp, "dial", lambda host, port, timeout: Plugin.dials.append((host, port)))
    monkeypatch.setattr(Plugin, "dials", [])
    return Plugin


def wait_for(predicate: Any) -> None:
    deadline = time.monotonic() + 5
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_hosts_connect_in_parallel_before_any_step_asks_and_steps_share_those_connections(
    plugin: type[Plugin],
) -> None:
    plugin.delay = 0.3
    scripted, report = scripted_context(HOSTS, {})
    started = time.monotonic()
    ctx = PlayContext(scripted.nornir, component="t", recorder=report)
    preconnect.start(ctx)
    assert time.monotonic() - started < 0.2  # the handshakes go on in the background
    first = [ctx.remote(name) for name in HOSTS]
    assert time.monotonic() - started < 0.6  # in parallel: not 3 x 0.3 s
    assert sorted(plugin.opened) == [(n, f"nr-connect-{n}") for n in sorted(HOSTS)]  # each once, ahead
    assert sorted(plugin.dials) == [(h["hostname"], 22) for h in HOSTS.values()]  # TCP dialled first
    assert [ctx.for_component("other").remote(n) for n in HOSTS] == first


def test_only_the_hosts_of_limit_connect_early(plugin: type[Plugin]) -> None:
    scripted, report = scripted_context(HOSTS, {})
    preconnect.start(
        PlayContext(scripted.nornir, component="t", recorder=report, limit={"vm2", "no-such-host"})
    )
    wait_for(lambda: plugin.opened)
    time.sleep(0.05)
    assert plugin.opened == [("vm2", "nr-connect-vm2")] and plugin.dials == [("198.18.0.12", 22)]


def test_an_unreachable_host_is_tried_once_and_its_error_reaches_the_first_step(
    plugin: type[Plugin],
) -> None:
    plugin.down = {"vm2"}
    scripted, report = scripted_context(HOSTS, {})
    ctx = PlayContext(scripted.nornir, component="t", recorder=report)
    preconnect.start(ctx)
    wait_for(lambda: len(plugin.opened) == 3)
    with pytest.raises(ConnectionError, match="vm2: connection refused"):  # another opener ahead
        ctx.open_ahead(scripted.nornir.inventory.hosts["vm2"])
    with pytest.raises(ConnectionError, match="vm2: connection refused"):  # the first step
        ctx.remote("vm2")
    assert [h for h, _ in plugin.opened].count("vm2") == 1  # no second connect timeout
    with pytest.raises(ConnectionError):  # a later step tries again
        ctx.remote("vm2")
    assert [h for h, _ in plugin.opened].count("vm2") == 2


def test_a_connection_that_opens_after_the_run_ended_is_closed(plugin: type[Plugin]) -> None:
    plugin.gate = threading.Event()
    scripted, report = scripted_context(HOSTS, {})
    ctx = PlayContext(scripted.nornir, component="t", recorder=report, limit={"vm3"})
    preconnect.start(ctx)
    ctx.end()
    plugin.gate.set()
    wait_for(lambda: plugin.closed)
    assert plugin.closed == ["vm3"]


def test_connect_early_can_be_turned_off(plugin: type[Plugin], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(preconnect.ENV, "0")
    scripted, report = scripted_context(HOSTS, {})
    ctx = PlayContext(scripted.nornir, component="t", recorder=report)
    preconnect.start(ctx)
    time.sleep(0.05)
    assert plugin.opened == []
    ctx.remote("vm1")
    assert plugin.opened == [("vm1", "MainThread")]


def test_a_host_whose_key_a_connection_would_record_waits_for_validation(
    plugin: type[Plugin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With accept_new, connecting to a host whose key is not known writes it into known_hosts: a run
    that validation then refuses must leave the file as it was, so such a host connects on first use."""
    import paramiko

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts of this machine's
    known = tmp_path / "known_hosts"
    key = paramiko.RSAKey.generate(1024)
    known.write_text(f"198.18.0.11 {key.get_name()} {key.get_base64()}\n")
    extras = {"accept_new": True, "known_hosts": str(known)}
    scripted, report = scripted_context(
        HOSTS, {}, defaults={"connection_options": {"fabric": {"extras": extras}}}
    )
    preconnect.start(PlayContext(scripted.nornir, component="t", recorder=report))
    wait_for(lambda: plugin.opened)
    time.sleep(0.05)
    assert plugin.opened == [("vm1", "nr-connect-vm1")]  # known: early; vm2, vm3 would be recorded
