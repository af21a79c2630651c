"""The seam between tasks and hosts: :class:`Remote`, one host's command runner and file copier.

Production uses :class:`nr.connection.SshRemote` (one SSH connection per host per run); tests use
a scripted fake with the same protocol (``tests/fakes/remote.py``, in the spirit of
``fabric.testing``), so orchestration is tested without a host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from nr.errors import NrError


@dataclass(frozen=True)
class CommandResult:
    exited: int
    stdout: str
    stderr: str
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exited == 0


class CommandFailed(NrError):
    """A remote script exited non-zero (``result`` holds its redacted output)."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


@runtime_checkable
class Remote(Protocol):
    """One host: ``run`` a shell script as root (sent on stdin, never on a command line), ``put`` a file
    there and ``get`` one back (both over SFTP as the login user: paths relative to its home)."""

    name: str

    def run(
        self, script: str, *, sudo: bool = True, timeout: float | None = None, check: bool = True
    ) -> CommandResult: ...

    def put(self, local: Path, remote_tmp: str) -> None: ...

    def get(self, remote_path: str, local: Path) -> None: ...
