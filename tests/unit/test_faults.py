"""Faults on the controller's side (issue 11): Ctrl-C, two runs at once, uploads that collide or die.

The lab tests (tests/lab/test_01_base.py) prove the same against real sshd hosts and real signals;
these pin the logic without Docker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nr import interrupt
from nr.changes import Change, apply_script
from nr.cli import cli
from nr.facts import FileState
from nr.lock import HOST_LOCKED_EXIT, Holder, Locked, RunLock, host_lock_script
from nr.ops.files import plan_upload
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.runner import execute
from tests.fakes.remote import Reply, ScriptedRemote, scripted_context
from tests.unit.test_report import free_port, inventory

HOSTS = {"vm1": {"hostname": "198.18.0.11"}, "vm2": {"hostname": "198.18.0.12"}}


@pytest.fixture(autouse=True)
def _not_cancelled() -> Iterator[None]:
    interrupt.CANCELLED.clear()
    yield
    interrupt.CANCELLED.clear()


class _Demo:
    """A component: step one changes every host; in step two vm1 finishes and vm2 gets Ctrl-C."""

    name = "demo"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def apply(self, ctx: PlayContext) -> None:
        def one(run: HostRun) -> Outcome[None]:
            return run.apply([Change("file /etc/one", "present", "absent", "touch /etc/one", "+ one")])

        def two(run: HostRun) -> Outcome[None]:
            if run.name == "vm2":
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: KeyboardInterrupt in the main thread
                interrupt.CANCELLED.wait(5)
                interrupt.check(run.name)  # what SshRemote does while it waits for a command
            return run.apply([Change("file /etc/two", "present", "absent", "touch /etc/two", "+ two")])

        ctx.run("one", one)
        ctx.run("two", two)
        ctx.run("three", one)  # never reached

    def check(self, ctx: PlayContext) -> None: ...

    def drift(self, ctx: PlayContext) -> None: ...


def test_ctrl_c_stops_the_run_and_keeps_what_finished() -> None:
    remotes = {h: ScriptedRemote(h, [Reply("touch /etc/one"), Reply("touch /etc/two")]) for h in HOSTS}
    ctx, report = scripted_context(HOSTS, remotes, component="demo")
    t0 = time.monotonic()
    execute(ctx.nornir, ctx, report, [_Demo()], lambda c, cx: c.apply(cx), err=None)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < interrupt.GRACE + 1
    assert report.interrupted and not report.ok
    rows = {(r.host, r.task): r for r in report.rows}
    assert rows[("vm1", "demo.one")].changed and rows[("vm2", "demo.one")].changed
    assert rows[
        ("vm1", "demo.two")
    ].changed  # finished before the interrupt: recorded though the step never ended
    assert report.failed_reasons["vm2"] == "demo.two: vm2: interrupted (Ctrl-C)"
    assert not any(t == "demo.three" for _, t in rows)
    assert [len(r.scripts) for r in remotes.values()] == [2, 1]
    assert report.to_json()["interrupted"] is True
    assert "INTERRUPTED" in report.verdict(2) and "3 task(s) changed before the interrupt" in report.verdict(
        2
    )


def test_no_host_is_touched_after_ctrl_c() -> None:
    remotes = {h: ScriptedRemote(h) for h in HOSTS}
    ctx, report = scripted_context(HOSTS, remotes, component="demo")
    interrupt.interrupt()
    with pytest.raises(interrupt.Interrupted):
        ctx.run("late", lambda run: run.apply([Change("x", "y", "z", "true")]))
    assert all(not r.scripts for r in remotes.values()) and not report.rows


def hold_lock(folder: Path) -> subprocess.Popen[str]:
    """Another `nr run` holding the inventory's lock (a real second process)."""
    code = (
        "import sys, time; sys.argv = ['nr', 'run', 'site', '-i', sys.argv[1]]\n"
        "from nr.lock import RunLock\nfrom pathlib import Path\n"
        "lock = RunLock(Path(sys.argv[4])); lock.acquire(); print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_the_same_inventory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())  # nothing listens: a run that got through would fail with 1
    holder = hold_lock(folder)
    try:
        res = CliRunner().invoke(cli, ["run", "base", "-i", str(folder)])
        assert res.exit_code == 2, res.output
        assert f"another nr run is changing this inventory: pid {holder.pid} of user" in res.output
        assert f"(nr run site -i {folder})" in res.output and f"lock file {folder / '.nr.lock'}" in res.output
        with pytest.raises(Locked):
            RunLock(folder).acquire()
        # read-only commands and dry runs take no lock: they run (and fail on the unreachable hosts)
        for args in (["run", "base", "--dry-run"], ["drift", "base"], ["check", "base"]):
            res = CliRunner().invoke(cli, [*args, "-i", str(folder)])
            assert res.exit_code in (1, 2) and "another nr run" not in res.output, (args, res.output)
    finally:
        holder.kill()
        holder.wait()
    with RunLock(folder):  # the kernel dropped the dead holder's lock: no stale lock
        assert json.loads((folder / ".nr.lock").read_text())["pid"] == os.getpid()
    assert (folder / ".nr.lock").read_text() == ""


def test_the_host_lock_refuses_a_second_apply_naming_the_holder(tmp_path: Path) -> None:
    lock = str(tmp_path / "nr.lock")
    first = Holder(4242, "alice", "ctl1", "nr run site -i inv", 1_700_000_000.0)
    holding = subprocess.Popen(
        ["sh", "-c", host_lock_script(first, lock) + "\necho held\nsleep 30"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # sleep inherits the lock's fd: end the whole group
    )
    try:
        assert holding.stdout is not None and holding.stdout.readline().strip() == "held"
        second = subprocess.run(
            ["sh", "-c", host_lock_script(Holder(1, "bob", "ctl2", "nr run base", 0.0), lock) + "\necho ran"],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.killpg(holding.pid, signal.SIGKILL)
        holding.wait()
    assert second.returncode == HOST_LOCKED_EXIT and "ran" not in second.stdout
    assert (
        "another nr run is changing this host: pid 4242 of user alice on ctl1 (nr run site -i inv)"
        in second.stderr
    )
    script = host_lock_script(lock=lock) + "\necho ran"
    deadline = time.monotonic() + 10  # the killed group's `sleep` holds the lock until it is gone
    again = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    while again.returncode == HOST_LOCKED_EXIT and time.monotonic() < deadline:
        time.sleep(0.05)
        again = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert again.returncode == 0 and again.stdout.strip() == "ran", again.stderr
    assert host_lock_script() in apply_script([Change("x", "y", "z", "true")])


def test_uploads_get_unique_names_and_killed_ones_are_cleaned(tmp_path: Path) -> None:
    local = tmp_path / "blob"
    local.write_bytes(b"x" * 1000)
    dest = tmp_path / "it's here" / "tool"
    a = plan_upload(local, str(dest), FileState(str(dest), False), owner="root", group="root")
    b = plan_upload(local, str(dest), FileState(str(dest), False))
    assert a is not None and b is not None and a.upload is not None and b.upload is not None
    assert a.upload.remote_tmp != b.upload.remote_tmp  # two runs never share a temp name
    home = tmp_path / "home"
    home.mkdir()
    old, fresh = home / ".nr-upload-0123-dead", home / ".nr-upload-4567-live"
    old.write_text("killed upload")
    fresh.write_text("upload in progress")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (home / a.upload.remote_tmp).write_bytes(local.read_bytes())  # what SFTP put there
    script = host_lock_script(lock=str(tmp_path / "nr.lock")) + "\n" + a.script
    subprocess.run(["sh", "-e", "-c", script], cwd=home, check=True)  # a quote in the path is data
    assert dest.read_bytes() == local.read_bytes()
    assert sorted(p.name for p in home.iterdir()) == [fresh.name]


def test_a_run_releases_the_lock_when_it_ends(tmp_path: Path) -> None:
    folder = inventory(tmp_path, free_port())
    hosts = yaml.safe_load((folder / "hosts.yaml").read_text())
    res = CliRunner().invoke(cli, ["run", "base", "-i", str(folder)])
    assert res.exit_code == 1 and all(f"{h}: base." in res.output for h in hosts), res.output
    assert (folder / ".nr.lock").read_text() == ""
    with RunLock(folder):
        pass


def test_an_inventory_folder_that_cannot_take_the_lock_file_locks_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    unwritable = tmp_path / "gone"  # (root writes anywhere: a folder that is not there cannot take it)
    with RunLock(unwritable) as lock:
        assert lock.path.parent == tmp_path / "home" / ".cache" / "nr" / "locks"
        with pytest.raises(Locked, match=f"lock file {lock.path}"):
            RunLock(unwritable).acquire()
