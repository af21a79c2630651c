"""The gather script run by a real POSIX sh here: its answers, and how few processes it starts.

A no-op run's CPU on a host is mostly the SSH login and this script, and each process it starts costs
the host about a millisecond: these tests pin which tools it runs and how often.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from nr.facts import CONTENT_LIMIT, Facts, FileState, Output, gather_script, parse_gather
from nr.ops.files import plan_upload, stamp_script
from tasks.base.plan import BaseSpec, facts_commands
from tests.fakes.remote import asked_commands, asked_files

MARKER = "@@NR-test@@"
TOOLS = ("stat", "sha256sum", "base64", "mktemp", "rm", "hostname")


def run(script: str, path: str | None = None) -> Facts:
    env = dict(os.environ, **({"PATH": path} if path else {}))
    out = subprocess.run(
        ["sh", "-s"],
        input="{\n" + script + "\n} </dev/null\n",
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return parse_gather(MARKER, out)


def logging_tools(tmp_path: Path, fail_batched_sha256: bool = False) -> tuple[str, Path]:
    """A PATH whose first folder wraps TOOLS: each call appends its name and arguments to a log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real, f"{tool} is not installed"
        fail = ""
        if tool == "sha256sum" and fail_batched_sha256:
            fail = 'if [ "$1" = -- ]; then exit 1; fi\n'
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{fail}exec {real} "$@"\n')
        wrapper.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", log


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "etc"
    d.mkdir()
    small = d / "small.conf"
    small.write_text("a = 1\n")
    small.chmod(0o640)
    odd = d / "a name with spaces and \\ backslash"
    odd.write_bytes(b"\x00\x01binary\n")
    big = d / "big"
    big.write_bytes(b"x" * (CONTENT_LIMIT + 1))
    empty = d / "empty"
    empty.write_text("")
    return {"small": small, "odd": odd, "big": big, "empty": empty, "missing": d / "missing", "dir": d}


def check_files(facts: Facts, files: dict[str, Path]) -> None:
    small = facts.files[str(files["small"])]
    assert small.exists and small.mode == 0o640 and small.size == 6 and small.content == b"a = 1\n"
    assert small.sha256 == hashlib.sha256(b"a = 1\n").hexdigest()
    odd = facts.files[str(files["odd"])]
    assert odd.content == b"\x00\x01binary\n" and odd.sha256 == hashlib.sha256(odd.content).hexdigest()
    big = facts.files[str(files["big"])]
    assert big.exists and big.content is None and big.size == CONTENT_LIMIT + 1
    assert big.sha256 == hashlib.sha256(b"x" * (CONTENT_LIMIT + 1)).hexdigest()
    assert facts.files[str(files["empty"])].content == b""
    assert not facts.files[str(files["missing"])].exists
    assert not facts.files[str(files["dir"])].exists  # not a regular file


def test_files_are_read_exactly(files: dict[str, Path]) -> None:
    facts = run(gather_script(MARKER, [str(p) for p in files.values()], {}))
    check_files(facts, files)


def test_files_are_stat_ed_and_hashed_in_one_call_each(tmp_path: Path, files: dict[str, Path]) -> None:
    path, log = logging_tools(tmp_path)
    check_files(run(gather_script(MARKER, [str(p) for p in files.values()], {"n": "echo 1"}), path), files)
    calls = [line.split(" ", 1)[0] for line in log.read_text().splitlines()]
    # small, odd and empty are read; big is over the limit; missing and dir are not regular files
    assert sorted(calls) == ["base64"] * 3 + ["sha256sum", "stat"]


def test_a_file_gone_between_the_calls_falls_back_to_one_file_at_a_time(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    path, log = logging_tools(tmp_path, fail_batched_sha256=True)
    check_files(run(gather_script(MARKER, [str(p) for p in files.values()], {}), path), files)
    assert log.read_text().count("sha256sum") == 1 + 4  # the failed batch, then one per regular file


def test_commands_keep_stdout_stderr_and_exit_code_apart(tmp_path: Path) -> None:
    path, log = logging_tools(tmp_path)
    commands = {
        "two": "echo one; echo two",
        "fails": "echo oops >&2; exit 3",
        "no_newline": "printf out; printf err >&2; false",
        "own_trap": "trap 'rm -f /nonexistent' EXIT; echo kept; echo warn >&2; (exit 5)",
        "quiet": "cd /; X=changed; true",
        "after": 'echo "${X:-unset} $(pwd)"',
    }
    facts = run(gather_script(MARKER, [], commands), path)
    assert facts.outputs["two"] == Output(0, "one\ntwo")
    assert facts.outputs["fails"] == Output(3, "", "oops\n")  # an `exit` ends only that command
    assert facts.outputs["no_newline"] == Output(1, "out", "err")
    assert facts.outputs["own_trap"].rc == 5 and facts.outputs["own_trap"].text == "kept"
    assert (
        facts.outputs["own_trap"].err.strip() == "warn"
    )  # its trap replaced ours: the exit code still holds
    assert facts.outputs["quiet"] == Output(0, "")
    assert facts.outputs["after"].text.startswith("unset ")  # variables and cd do not leak between commands
    assert not facts.outputs["after"].text.endswith(" /")
    calls = [line.split(" ", 1)[0] for line in log.read_text().splitlines()]
    assert calls.count("base64") == 3  # only the commands with something on stderr
    assert "mktemp" not in calls and calls.count("rm") == 1  # no temporary file (that rm is own_trap's)


def test_base_reads_the_hostname_without_a_process(tmp_path: Path) -> None:
    path, log = logging_tools(tmp_path)
    spec = BaseSpec(hostname="h", packages=())
    commands = {k: v for k, v in facts_commands(spec).items() if k in ("hostname", "hosts_entry")}
    facts = run(gather_script(MARKER, [], commands), path)
    assert facts.out("hostname") == socket.gethostname()
    assert facts.rc("hosts_entry") == 0 and facts.out("hosts_entry").isdigit()
    assert not log.exists() or "hostname" not in log.read_text()


def test_the_scripted_remote_reads_what_a_gather_asks_for(files: dict[str, Path]) -> None:
    """tests/fakes/remote.py answers gathers from fixtures: it must see the files and commands asked."""
    paths = [str(p) for p in files.values()]
    script = gather_script(MARKER, paths, {"a b": "true", "c": "true"})
    assert asked_files(script) == paths
    assert asked_commands(script) == ["a b", "c"]


def stamp(stamps: Path, path: Path, digest: str) -> None:
    """What an upload's apply script runs after installing ``path`` (nr.ops.files.stamp_script)."""
    subprocess.run(["sh", "-c", stamp_script(str(path), digest, str(stamps))], check=True)


def test_a_stamped_file_is_not_hashed_while_it_stays_as_installed(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    """The k3s binary (70 MB) was hashed by every read: its stamp now gives the digest, and the stamp's
    digest is what the read reports (the stamp is trusted: root's, like the file). Any write or chmod
    changes the file's ctime, and the file is hashed again."""
    stamps = tmp_path / "stamps"
    noted = "e" * 64  # not the file's digest: shows where the answer came from
    stamp(stamps, files["big"], noted)
    path, log = logging_tools(tmp_path)
    wanted = [str(p) for p in files.values()]
    facts = run(gather_script(MARKER, wanted, {}, stamps=str(stamps)), path)
    assert facts.files[str(files["big"])].sha256 == noted
    assert facts.files[str(files["small"])].sha256 == hashlib.sha256(b"a = 1\n").hexdigest()
    hashed = [line for line in log.read_text().splitlines() if line.startswith("sha256sum")]
    assert len(hashed) == 1 and str(files["big"]) not in hashed[0] and str(files["small"]) in hashed[0]

    files["big"].chmod(0o600)  # same bytes, size and mtime; a new ctime
    check_files(run(gather_script(MARKER, wanted, {}, stamps=str(stamps))), files)


def test_a_stamp_that_does_not_match_is_ignored(tmp_path: Path, files: dict[str, Path]) -> None:
    stamps = tmp_path / "stamps"
    wanted = [str(p) for p in files.values()]
    stamp(stamps, files["big"], "e" * 64)
    note = Path(f"{stamps}{files['big']}")
    identity, digest = note.read_text().splitlines()
    assert identity.split(" ")[2] == str(CONTENT_LIMIT + 1)  # device, inode, size, mtime, ctime
    for broken in (f"{identity}\n{'e' * 63}\n", f"{identity}\n", "", f"{identity} \n{digest}\n"):
        note.write_text(broken)
        check_files(run(gather_script(MARKER, wanted, {}, stamps=str(stamps))), files)

    files["small"].write_text("a = 1\n")  # rewritten: another ctime (mtime too)
    stamp(stamps, files["small"], "e" * 64)
    files["small"].write_text("a = 1\n")
    check_files(run(gather_script(MARKER, wanted, {}, stamps=str(stamps))), files)


def test_an_upload_is_stamped_unless_told_not_to(tmp_path: Path) -> None:
    local = tmp_path / "k3s"
    local.write_bytes(b"binary")
    change = plan_upload(local, "/usr/local/bin/k3s", FileState("/usr/local/bin/k3s", False))
    assert change is not None and "/var/lib/nr/digests/usr/local/bin/k3s" in change.script
    transient = plan_upload(local, "/var/lib/x.tar", FileState("/var/lib/x.tar", False), stamp=False)
    assert transient is not None and "digests" not in transient.script
