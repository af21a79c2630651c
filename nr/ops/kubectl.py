"""kubectl on a host (any kubectl command prefix, e.g. a distribution's bundled kubectl): reads as JSON, applies, diffs.

The operator's machine needs no kubectl: every command runs on a server. Parsers read stdout only;
kubectl writes warnings and API discovery errors (``memcache.go ... couldn't get current server API
group list``, while metrics-server is not ready) on stderr even when it succeeds, so stderr is shown
only when a command fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from shlex import quote
from typing import Any

from nr.errors import NrError
from nr.facts import Output

REQUEST_TIMEOUT = "10s"

# kubectl diff's exit codes (kubectl cmd/diff: 0 no differences, 1 differences, >1 kubectl failed).
DIFF_NONE, DIFF_FOUND = 0, 1


class KubectlError(NrError):
    """kubectl failed, or printed something that is not the JSON document asked for."""


def get_command(kubectl: str, resource: str, *, namespace: str | None = None, name: str | None = None) -> str:
    """``kubectl get RESOURCE [NAME] [-n NS] -o json`` with a bounded request time."""
    parts = [kubectl, "get", quote(resource)]
    if name:
        parts.append(quote(name))
    if namespace:
        parts += ["-n", quote(namespace)]
    parts += ["-o", "json", f"--request-timeout={REQUEST_TIMEOUT}"]
    return " ".join(parts)


def parse_json(out: Output, what: str) -> dict[str, Any]:
    """The JSON document kubectl printed on stdout (its stderr is ignored unless it failed)."""
    if out.rc != 0:
        raise KubectlError(f"kubectl get {what} failed ({out.explain()})")
    try:
        doc = json.loads(out.text)
    except json.JSONDecodeError as exc:
        raise KubectlError(
            f"kubectl get {what} printed no JSON document ({exc}): {out.text[:200]!r}"
        ) from None
    if not isinstance(doc, dict):
        raise KubectlError(f"kubectl get {what} printed {type(doc).__name__}, not an object")
    return doc


def items(out: Output, what: str) -> list[dict[str, Any]]:
    """The ``items`` of a ``kubectl get ... -o json`` list."""
    found = parse_json(out, what).get("items", [])
    return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []


@dataclass(frozen=True)
class DiffResult:
    """``kubectl diff``: ``changed`` (exit 1) with the diff text, or not (exit 0); else an error."""

    changed: bool
    text: str

    @classmethod
    def parse(cls, rc: int, stdout: str, stderr: str) -> DiffResult:
        if rc == DIFF_NONE:
            return cls(False, "")
        if rc == DIFF_FOUND:
            return cls(True, stdout)
        raise KubectlError(f"kubectl diff failed (exit {rc}): {(stderr.strip() or stdout.strip())[-800:]}")


def manifest_script(manifest: str, command: str) -> str:
    """Write ``manifest`` to a private temp file under /run, run ``command`` on it ("$m"), remove it.

    The manifest may hold Secrets: it never appears on a command line and is removed on exit.
    """
    return (
        "m=$(mktemp /run/nr-manifests.XXXXXX)\n"
        "trap 'rm -f \"$m\"' EXIT\n"
        f"cat > \"$m\" <<'NR_EOF'\n{manifest.rstrip(chr(10))}\nNR_EOF\n"
        f"{command}"
    )
