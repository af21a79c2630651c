"""Secret references: resolution, file permissions, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nr.secrets import MASK, Redactor, Secret, SecretError, SecretRef, redact, write_secret_file


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NR_TEST_SECRET", "correct-horse-battery")
    secret = SecretRef.parse("env:NR_TEST_SECRET").resolve()
    assert secret.reveal() == "correct-horse-battery"
    assert "correct-horse" not in repr(secret)
    assert "correct-horse" not in f"{secret}"
    assert "correct-horse" not in str(secret)
    assert redact("auth=correct-horse-battery;") == f"auth={MASK};"


def test_env_reference_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NR_TEST_UNSET", raising=False)
    with pytest.raises(SecretError, match="environment variable NR_TEST_UNSET is not set"):
        SecretRef.parse("env:NR_TEST_UNSET").resolve()


def test_file_reference_relative_to_base(tmp_path: Path) -> None:
    write_secret_file(tmp_path / "s" / "token", "K10abc::server:xyz123")
    assert (tmp_path / "s" / "token").stat().st_mode & 0o777 == 0o600
    ref = SecretRef.parse("file:s/token", tmp_path)
    assert ref.resolve().reveal() == "K10abc::server:xyz123"


def test_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("opensesame\n")
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match=r"accessible by group/others \(mode 0644\); run: chmod 600"):
        SecretRef.parse(f"file:{path}").resolve()


def test_missing_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot be read"):
        SecretRef.parse(f"file:{tmp_path / 'nope'}").resolve()
    empty = tmp_path / "empty"
    empty.write_text("")
    os.chmod(empty, 0o600)
    with pytest.raises(SecretError, match="is empty"):
        SecretRef.parse(f"file:{empty}").resolve()


@pytest.mark.parametrize("text", ["hunter2", "vault:kv/redis", "env:", "env:1BAD", 42, None])
def test_bad_references(text: object) -> None:
    with pytest.raises(SecretError):
        SecretRef.parse(text)


def test_errors_never_contain_the_value(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as err:
        SecretRef.parse("s3cr3t-value")
    assert "s3cr3t-value" not in str(err.value)


def test_longest_secret_masked_first() -> None:
    Secret("abcd1234")
    Secret("abcd1234-extended")
    assert redact("x abcd1234-extended y abcd1234") == f"x {MASK} y {MASK}"


def test_short_secrets_are_masked_too() -> None:
    redactor = Redactor()  # a redactor of its own: the process-wide one would mask "q7" in later tests
    redactor.add("q7")  # too short to be read from an inventory, but once known it is masked anyway
    redactor.add("")
    assert redactor("a q7 b") == f"a {MASK} b"


@pytest.mark.parametrize("value", ["abc", "1234567"])
def test_a_secret_too_short_to_mask_safely_is_refused_where_read(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_TEST_SHORT", value)
    with pytest.raises(SecretError, match=r"environment variable NR_TEST_SHORT holds \d character\(s\); secrets "
                                          r"shorter than 8 are refused"):  # fmt: skip
        SecretRef.parse("env:NR_TEST_SHORT").resolve()
    (tmp_path / "short").write_text(value + "\n")  # not write_secret_file: it would remember the value
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(SecretError, match=f"secret file {tmp_path / 'short'} holds"):
        SecretRef.parse(f"file:{tmp_path / 'short'}").resolve()
    assert value not in str(SecretRef.parse("env:NR_TEST_SHORT"))


def test_a_secret_path_that_is_not_a_readable_text_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(SecretError, match=r"secret file .*/dir is a directory, not a file"):
        SecretRef.parse(f"file:{tmp_path / 'dir'}").resolve()
    latin = tmp_path / "latin"
    latin.write_bytes(b"caf\xe9-password\n")
    latin.chmod(0o600)
    with pytest.raises(SecretError, match=r"is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        SecretRef.parse(f"file:{latin}").resolve()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # reading it would block forever
    with pytest.raises(SecretError, match="is not a regular file"):
        SecretRef.parse(f"file:{fifo}").resolve()
