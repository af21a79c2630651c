"""A scripted :class:`nr.transport.Remote` and a play context on it: orchestration tests without hosts.

Modelled on ``fabric.testing`` (``MockRemote``/``Session``/``Command``): a test lists the replies a
host gives, the code under test runs against them, and the test asserts what was sent, in which
order and to which host. :func:`facts_reply` answers :func:`nr.facts.gather`'s one-round-trip script
(files and command outputs, stderr apart), so a component's whole ``apply``/``check``/``drift`` can be
driven with facts fixtures.

    remotes = {"vm1": ScriptedRemote("vm1", [facts_reply(outputs={"hostname": "vm1"}), Reply("set -e")])}
    ctx, report = scripted_context(HOSTS, remotes)
    component.apply(ctx)
    assert remotes["vm1"].scripts[1].startswith("set -e")
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nornir.core import Nornir
from nornir.core.configuration import Config
from nornir.core.state import GlobalState

from nr.errors import NrError
from nr.inventory.build import build_inventory
from nr.inventory.validate import RawInventory
from nr.play import PlayContext
from nr.plugins import ThreadedRunner
from nr.report import RunReport
from nr.transport import CommandFailed, CommandResult

Text = str | Callable[[str], str]  # a fixed answer, or one computed from the script


@dataclass
class Reply:
    """The answer to the first script that contains ``match`` (a substring, or a compiled regex)."""

    match: str | re.Pattern[str]
    stdout: Text = ""
    stderr: str = ""
    exited: int = 0
    times: int | None = 1  # how many scripts it answers (None: any number)

    def matches(self, script: str) -> bool:
        if isinstance(self.match, re.Pattern):
            return self.match.search(script) is not None
        return self.match in script


class UnexpectedScript(AssertionError):
    """A script no reply was scripted for (the message shows its start)."""


@dataclass
class ScriptedRemote:
    """A host that answers scripts from ``replies`` (in order of matching) and records every call."""

    name: str
    replies: list[Reply] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    puts: list[tuple[Path, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # what ``get`` finds (by remote path)
    gets: list[tuple[str, Path]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expect(self, *replies: Reply) -> ScriptedRemote:
        self.replies.extend(replies)
        return self

    def run(
        self, script: str, *, sudo: bool = True, timeout: float | None = None, check: bool = True
    ) -> CommandResult:
        with self.lock:
            self.scripts.append(script)
            reply = next((r for r in self.replies if r.matches(script) and r.times != 0), None)
            if reply is None:
                raise UnexpectedScript(f"{self.name}: no reply scripted for: {script[:300]!r}")
            if reply.times is not None:
                reply.times -= 1
        out = reply.stdout(script) if callable(reply.stdout) else reply.stdout
        result = CommandResult(reply.exited, out, reply.stderr)
        if check and reply.exited != 0:
            raise CommandFailed(
                f"{self.name}: remote command failed (exit {reply.exited}): {reply.stderr}", result
            )
        return result

    def put(self, local: Path, remote_tmp: str) -> None:
        with self.lock:
            self.puts.append((local, remote_tmp))

    def get(self, remote_path: str, local: Path) -> None:
        with self.lock:
            self.gets.append((remote_path, local))
            data = self.files.get(remote_path)
        if data is None:
            raise NrError(f"{self.name}: copying {remote_path} to {local} failed: [Errno 2] No such file")
        local.write_bytes(data)

    def unused(self) -> list[Reply]:
        """Replies that were scripted to be used and were not (a test may assert this is empty)."""
        return [r for r in self.replies if r.times not in (None, 0)]


Mode = int | tuple[int, str, str]  # a file's mode, or (mode, owner, group); root:root unless given


def _file_lines(marker: str, path: str, content: bytes | None, mode: Mode = 0o644) -> list[str]:
    if content is None:
        return [f"{marker} nofile {path}"]
    digest = hashlib.sha256(content).hexdigest()
    bits, owner, group = mode if isinstance(mode, tuple) else (mode, "root", "root")
    return [
        f"{marker} file {path}",
        f"{bits:o} {owner} {group} {len(content)}",
        digest,
        base64.b64encode(content).decode(),
    ]


def gather_output(
    marker: str,
    files: Mapping[str, bytes | str | None],
    outputs: Mapping[str, str | tuple[int, str] | tuple[int, str, str]],
    modes: Mapping[str, Mode] | None = None,
) -> str:
    """What the gather script prints for these files and command outputs (``(rc, stdout, stderr)``)."""
    lines: list[str] = []
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        lines += _file_lines(marker, path, data, (modes or {}).get(path, 0o644))
    for name, value in outputs.items():
        rc, out, err = (0, value, "") if isinstance(value, str) else (*value, "")[:3]  # type: ignore[misc]
        lines += [f"{marker} cmd {name}", *([out] if out else []), "", f"{marker} rc {rc}"]
        lines.append(base64.b64encode(str(err).encode()).decode())
    lines.append(f"{marker} end")
    return "\n".join(lines) + "\n"


def asked_commands(script: str) -> list[str]:
    """The names of the commands a gather script runs (:func:`nr.facts.gather_script`)."""
    return re.findall(r'^printf "%s cmd %s\\n" "\$M" \'?([^\'\n]+)\'?$', script, re.MULTILINE)


def asked_files(script: str) -> list[str]:
    """The files a gather script reads (its ``nr_files`` line, shell-quoted)."""
    m = re.search(r"^nr_files (.*)$", script, re.MULTILINE)
    return shlex.split(m.group(1)) if m else []


def facts_reply(
    files: Mapping[str, bytes | str | None] | None = None,
    outputs: Mapping[str, str | tuple[int, str] | tuple[int, str, str]] | None = None,
    *,
    modes: Mapping[str, Mode] | None = None,
    times: int | None = 1,
    strict: bool = True,
) -> Reply:
    """A reply to :func:`nr.facts.gather`: every file and command it asks for, answered from the fixture.

    With ``strict``, a command the script runs but the fixture does not answer fails the test (a
    missing fact would otherwise read as empty output).
    """

    def answer(script: str) -> str:
        m = re.search(r"^M='?([^'\n]+)'?$", script, re.MULTILINE)
        assert m, "not a gather script"
        asked = asked_commands(script)
        missing = [c for c in asked if c not in (outputs or {})]
        if strict and missing:
            raise UnexpectedScript(f"facts fixture lacks command(s): {', '.join(missing)}")
        return gather_output(
            m.group(1), files or {}, {k: v for k, v in (outputs or {}).items() if k in asked}, modes
        )

    return Reply('printf "%s end\\n" "$M"', answer, times=times)


def scripted_context(
    hosts: Mapping[str, Any],
    remotes: Mapping[str, ScriptedRemote],
    *,
    groups: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    limit: Sequence[str] | None = None,
    component: str = "test",
    base_dir: Path | None = None,
    inventory_arg: str | None = None,
) -> tuple[PlayContext, RunReport]:
    """A :class:`PlayContext` on an inventory from dicts (validated like a real one), whose hosts are
    the scripted remotes, recording into a :class:`RunReport`."""
    raw = RawInventory(dict(hosts), dict(groups or {}), dict(defaults or {}), base_dir=base_dir or Path.cwd())
    inventory = build_inventory(raw)
    config = Config(runner={"plugin": "threaded", "options": {"num_workers": 10}})
    config.inventory.options = {"path": str(base_dir or Path.cwd())}
    nr = Nornir(
        inventory=inventory, config=config, data=GlobalState(dry_run=dry_run), runner=ThreadedRunner(10)
    )
    report = RunReport(component, dry_run=dry_run)
    ctx = PlayContext(
        nr.with_processors([report]),
        component=component,
        recorder=report,
        limit=limit,
        connect=lambda h: remotes[h.name],
        inventory_arg=inventory_arg,
    )
    return ctx, report
