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

from nr.facts import CONTENT_LIMIT, Facts, Output, gather_script, parse_gather
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
