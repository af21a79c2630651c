"""tasks.k3s.versions: a host's k3s version is asked of its binary only for a binary (sha256) this
machine has not seen; the answer is kept in the cache folder and survives a lost or broken file."""

from __future__ import annotations

from pathlib import Path

from nr.facts import Facts, FileState, Output
from tasks.k3s.contract import BINARY
from tasks.k3s.versions import FILE, Versions, with_version
from tests.fakes.remote import ScriptedRemote, facts_reply

LINE = "k3s version v1.32.3+k3s1 (079ffa8d)"


def facts(sha: str | None) -> Facts:
    state = FileState(BINARY, True, 0o755, "root", "root", 10, sha) if sha else FileState(BINARY, False)
    return Facts({BINARY: state}, {"arch": Output(0, "x86_64")})


def test_a_binary_seen_before_is_not_asked_again(tmp_path: Path) -> None:
    remote = ScriptedRemote("s1", [facts_reply(outputs={"version": LINE})])  # answers once only
    first = with_version(remote, facts("ab" * 32), Versions(tmp_path))
    assert first.out("version") == LINE and first.out("arch") == "x86_64" and len(remote.scripts) == 1
    again = with_version(remote, facts("ab" * 32), Versions(tmp_path))  # another run: read from the file
    assert again.out("version") == LINE and len(remote.scripts) == 1
    assert (tmp_path / FILE).is_file()


def test_no_binary_no_question_and_a_failed_answer_is_not_remembered(tmp_path: Path) -> None:
    remote = ScriptedRemote("s1", [facts_reply(outputs={"version": (0, "")}, times=2)])
    assert with_version(remote, facts(None), Versions(tmp_path)).out("version") == "" and not remote.scripts
    versions = Versions(tmp_path)
    with_version(remote, facts("cd" * 32), versions)
    with_version(remote, facts("cd" * 32), versions)
    assert len(remote.scripts) == 2 and versions.get("cd" * 32) is None  # asked each time


def test_a_broken_file_means_asking_again(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text("{not json")
    remote = ScriptedRemote("s1", [facts_reply(outputs={"version": LINE})])
    assert with_version(remote, facts("ef" * 32), Versions(tmp_path)).out("version") == LINE
    assert Versions(tmp_path).get("ef" * 32) == LINE
