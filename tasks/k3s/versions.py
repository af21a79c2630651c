"""What ``k3s --version`` says, per k3s binary (its sha256), remembered on this machine.

Every facts round trip hashes ``/usr/local/bin/k3s`` anyway (it is a managed file), and a binary's
version never changes: so a host's version is asked of the binary itself (a process start on the
host, one per host per run before) only for a binary this machine has not seen yet. The answers live
beside the release cache (``$XDG_CACHE_HOME/nr/k3s-versions.json``); a lost or unreadable file only
means asking again. A binary nr installs is asked once right after (:func:`learn`), so a fresh
install's next run needs no question either.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from nr.errors import NrError
from nr.facts import Facts, Output, gather
from nr.transport import Remote
from tasks.k3s.contract import BINARY

VERSION_CMD = f"if [ -x {BINARY} ]; then {BINARY} --version | head -n1; fi"
FILE = "k3s-versions.json"


class Versions:
    """sha256 of a k3s binary -> the first line of its ``--version`` (thread-safe: hosts read in parallel)."""

    def __init__(self, root: Path) -> None:
        self.path = root / FILE
        self._lock = threading.Lock()
        self._known: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._known is None:
            try:
                found = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                found = {}
            self._known = {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
        return self._known

    def get(self, sha256: str) -> str | None:
        with self._lock:
            return self._load().get(sha256)

    def put(self, sha256: str, line: str) -> None:
        with self._lock:
            known = self._load()
            known[sha256] = line
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                part = self.path.with_name(f"{FILE}.{os.getpid()}.{threading.get_ident()}")
                part.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n", encoding="utf-8")
                os.replace(part, self.path)
            except OSError:
                pass  # remembered for this run only


def _as_k3s(out: Output) -> bool:
    """``out`` is what a k3s binary prints to --version: ``k3s version v1.31.4+k3s1 (abcd1234)``."""
    return out.ok and out.text.startswith("k3s version ")


def learn(remote: Remote, versions: Versions) -> str:
    """Ask the binary just installed on ``remote`` its version and remember it for its sha256, so the next
    run needs no question (one round trip: the file's hash and ``--version``). Returns the answer; a
    binary that does not answer as k3s does is an error that names what it printed."""
    facts = gather(remote, files=[BINARY], commands={"version": VERSION_CMD})
    out, state = facts.outputs["version"], facts.file(BINARY)
    if not _as_k3s(out):
        raise NrError(
            f"{BINARY} on {remote.name} does not answer as k3s does to --version ({out.explain(200)}): "
            "is it a k3s binary built for this host's architecture?"
        )
    if state.sha256:
        versions.put(state.sha256, out.text.strip())
    return out.text.strip()


def with_version(remote: Remote, facts: Facts, versions: Versions) -> Facts:
    """The facts with ``version``: remembered for the binary's sha256, else asked of the binary (and
    remembered when it answers as k3s does: ``k3s version v1.31.4+k3s1 (abcd1234)``)."""
    state = facts.file(BINARY)
    if not state.exists or not state.sha256:
        out = Output(0, "")
    elif (line := versions.get(state.sha256)) is not None:
        out = Output(0, line)
    else:
        out = gather(remote, commands={"version": VERSION_CMD}).outputs["version"]
        if _as_k3s(out):
            versions.put(state.sha256, out.text.strip())
    return Facts(dict(facts.files), {**facts.outputs, "version": out})
