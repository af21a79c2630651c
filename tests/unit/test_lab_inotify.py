"""`nr lab up` refuses, before it starts any host, hosts that root's inotify limit cannot hold.

Each lab host's systemd and logind take 6 inotify instances, counted against root's
fs.inotify.max_user_instances machine-wide; past it a host's systemd dies or hangs without a word.
The /proc tree here is a directory of the same shape (status files, fd symlinks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nr.errors import NrError
from nr.machines import lab as lab_module
from nr.machines import startup
from nr.machines.lab import Lab


def fake_proc(root: Path, limit: int, processes: dict[int, tuple[int, int]]) -> Path:
    """``processes``: pid -> (real uid, inotify fds); each also holds a pipe and a file."""
    (root / "sys/fs/inotify").mkdir(parents=True)
    (root / "sys/fs/inotify/max_user_instances").write_text(f"{limit}\n")
    (root / "self").mkdir()
    for pid, (uid, inotify) in processes.items():
        fd = root / str(pid) / "fd"
        fd.mkdir(parents=True)
        (root / str(pid) / "status").write_text(f"Name:\tx\nUid:\t{uid}\t0\t0\t0\nGid:\t0\t0\t0\t0\n")
        links = [startup.INOTIFY_LINK] * inotify + ["pipe:[123]", "/var/log/syslog"]
        for n, target in enumerate(links):
            (fd / str(n)).symlink_to(target)
    return root


def test_root_inotify_instances_are_counted(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 128, {1: (0, 5), 40: (0, 1), 41: (1000, 9), 42: (0, 0)})
    assert startup.inotify_in_use(proc) == 6
    assert startup.inotify_in_use(proc, uid=1000) == 9


def test_hosts_within_the_limit_start_and_hosts_past_it_are_refused(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 18, {1: (0, 6), 2: (1000, 50)})
    startup.check_inotify(2, proc)  # 6 + 12 = 18: fits exactly
    startup.check_inotify(0, proc)
    with pytest.raises(NrError) as err:
        startup.check_inotify(3, proc)
    text = str(err.value)
    assert "3 new lab host(s) need about 18 inotify instances" in text
    assert "root holds 6 now, of fs.inotify.max_user_instances=18" in text
    assert "sysctl -w fs.inotify.max_user_instances=1024" in text and "no host was started" in text


def test_nothing_is_started_when_the_limit_is_too_low(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts of the lab run already (they need nothing more); the third and fourth do not fit."""
    proc = fake_proc(tmp_path / "proc", 20, {1: (0, 12)})
    calls: list[tuple[str, ...]] = []

    def docker(*args: str, **_: object) -> str:
        calls.append(args)
        if args[0] == "ps":
            states = {"nrt1": "running", "nrt2": "running", "nrt3": "exited"}
            return "\n".join(json.dumps({"Names": n, "State": s}) for n, s in states.items())
        return ""

    monkeypatch.setattr(lab_module, "docker", docker)
    monkeypatch.setattr(lab_module, "check_inotify", lambda n: startup.check_inotify(n, proc))
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "id_ed25519").write_text("the lab's key: its hosts are this folder's")
    lab = Lab(name="nrt", subnet="198.18.73.0/24", state_dir=tmp_path / "lab")
    with pytest.raises(NrError, match=r"^2 new lab host\(s\) need about 12 "):
        lab.up(4)
    assert [c[0] for c in calls] == ["info", "ps"]  # no image, network or container touched
    assert [p.name for p in (tmp_path / "lab").iterdir()] == ["id_ed25519"]


def test_a_process_name_that_is_not_utf8_is_read(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 128, {1: (0, 5)})
    (proc / "1" / "status").write_bytes(b"Name:\tbad\xff\xfe\nUid:\t0\t0\t0\t0\n")
    assert startup.inotify_in_use(proc) == 5
