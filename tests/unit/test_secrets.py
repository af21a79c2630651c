"""Secret references: resolution, file permissions, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nr.secrets import MASK, Secret, SecretError, SecretRef, redact, write_secret_file


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
