"""kubectl on a host (any kubectl command prefix, e.g. a distribution's bundled kubectl): reads as JSON,
diffs, applies, rollouts.

The operator's machine needs no kubectl: every command runs on a server. Parsers read stdout only;
kubectl writes warnings and API discovery errors (``memcache.go ... couldn't get current server API
group list``, while metrics-server is not ready) on stderr even when it succeeds, so stderr is shown
only when a command fails. What each parser expects follows kubectl's source: exit codes and
messages of ``cmd/util/helpers.go`` (``CheckErr``/``CheckDiffErr``), ``cmd/diff/diff.go`` and
``cmd/rollout/rollout_status.go``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from shlex import quote
from typing import Any

from nr.errors import NrError
from nr.facts import Output

REQUEST_TIMEOUT = "10s"

# kubectl diff's exit codes (kubectl cmd/diff: 0 no differences, 1 differences, >1 kubectl failed).
DIFF_NONE, DIFF_FOUND = 0, 1
# The diff program kubectl diff runs on its LIVE and MERGED folders (KUBECTL_EXTERNAL_DIFF; kubectl
# passes on only arguments made of letters, digits, '-' and '='). Full context: every object's diff
# holds the whole object, so it can be parsed back (and Secrets masked by structure, nr.ops.kubediff).
FULL_CONTEXT_DIFF = "diff -N -U1000000"
# kubectl's "Error from server (NotFound): namespaces "X" not found" (the namespace admission of a
# server-side dry run, kubernetes#114141)
_NAMESPACE_NOT_FOUND = re.compile(r'namespaces "([^"]+)" not found')
ROLLOUT_TIMED_OUT = "timed out waiting for the condition"  # client-go tools/watch UntilWithoutRetry


class KubectlError(NrError):
    """kubectl failed, or printed something that is not the JSON document asked for."""


class NamespaceMissing(KubectlError):
    """A server-side dry run (``kubectl diff``) met an object whose namespace does not exist yet."""

    def __init__(self, namespace: str, message: str) -> None:
        super().__init__(message)
        self.namespace = namespace


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


# One read of what most plays look at on a cluster: every node, namespace and Deployment. kubectl get with
# several resource types prints them all as one ``List``, each item with its ``kind`` (kubectl
# cmd/get/get.go ``printGeneric``: "if there is more than one item, combine them all into a single
# list"), so the plays that read nodes, the app's namespace and Deployments share one kubectl start.
SNAPSHOT_TYPES = "nodes,namespaces,deployments"
# What ``nr status`` shows of a cluster (nodes; the app's Deployments, HPAs and pods), in one start too.
STATUS_TYPES = "nodes,deployments,horizontalpodautoscalers,pods"


def snapshot_command(kubectl: str, types: str = SNAPSHOT_TYPES) -> str:
    """``kubectl get nodes,namespaces,deployments --all-namespaces -o json`` (see :func:`view`), or
    the ``types`` given."""
    return f"{kubectl} get {types} --all-namespaces -o json --request-timeout={REQUEST_TIMEOUT}"


@lru_cache(maxsize=4)
def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def view(out: Output, kind: str, namespace: str | None = None) -> Output:
    """The items of one ``kind`` (in ``namespace``, or any) of a :func:`snapshot_command` output, as
    ``kubectl get KIND [-n NAMESPACE] -o json`` prints them: what the one-kind parsers read. A failed
    or unreadable snapshot is passed on as it is (the parser reports it)."""
    doc = _decoded(out.text) if out.rc == 0 else None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return out
    picked = [
        i
        for i in doc["items"]
        if isinstance(i, dict)
        and i.get("kind") == kind
        and (namespace is None or (i.get("metadata") or {}).get("namespace") == namespace)
    ]
    return Output(0, json.dumps({"apiVersion": "v1", "kind": "List", "items": picked}), out.err)


def named(out: Output, kind: str, name: str) -> bool:
    """Whether a :func:`snapshot_command` output holds the (cluster-scoped) object ``kind`` ``name``;
    a failed snapshot is an error (KubectlError), never a "no"."""
    return any((i.get("metadata") or {}).get("name") == name for i in items(view(out, kind), kind))


def exists(out: Output, what: str) -> bool:
    """Whether ``kubectl get KIND NAME`` found the object: exit 0 yes, ``(NotFound)`` on stderr no;
    any other failure (API down, unauthorized, timeout) is an error, never a "no"."""
    if out.rc == 0:
        return True
    if "(NotFound)" in out.err:
        return False
    raise KubectlError(f"kubectl get {what} failed ({out.explain()})")


def deployment_status(doc: dict[str, Any]) -> tuple[int, int]:
    """(ready replicas, wanted replicas) of a Deployment; the API omits zero counts in ``status``."""
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    return int(status.get("readyReplicas") or 0), int(spec.get("replicas") or 0)


def deployments(out: Output, what: str = "deployments") -> dict[str, tuple[int, int]]:
    """``kubectl get deployments -o json`` -> name -> (ready replicas, wanted replicas)."""
    return {str((i.get("metadata") or {}).get("name")): deployment_status(i) for i in items(out, what)}


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
        why = (stderr.strip() or stdout.strip())[-800:]
        missing = _NAMESPACE_NOT_FOUND.search(stderr)
        if missing:
            raise NamespaceMissing(missing.group(1), f"kubectl diff failed (exit {rc}): {why}")
        raise KubectlError(f"kubectl diff failed (exit {rc}): {why}")

    @classmethod
    def of(cls, out: Output) -> DiffResult:
        return cls.parse(out.rc, out.text, out.err)


def diff_command(kubectl: str, path: str) -> str:
    """``kubectl diff -f PATH`` with full-context diffs (``path`` is shell text, e.g. ``"$m"``)."""
    return f"KUBECTL_EXTERNAL_DIFF={quote(FULL_CONTEXT_DIFF)} {kubectl} diff -f {path}"


def apply_command(kubectl: str, path: str) -> str:
    """``kubectl apply -f PATH``: objects in stream order; exit 1 if any failed; warnings on stderr."""
    return f"{kubectl} apply -f {path}"


def rollout_status_command(
    kubectl: str, name: str, namespace: str, timeout: int, kind: str = "deployment"
) -> str:
    return (
        f"{kubectl} rollout status {quote(f'{kind}/{name}')} -n {quote(namespace)} --timeout={int(timeout)}s"
    )


def rollout_problem(name: str, out: Output, timeout: int, kind: str = "deployment") -> str | None:
    """Why a ``rollout status`` did not end in "successfully rolled out" (None: it did).

    kubectl exits 1 with ``error: timed out waiting for the condition`` when ``--timeout`` passes,
    whatever the reason (a progress deadline longer than the timeout is never reached first).
    """
    if out.rc == 0:
        return None
    if ROLLOUT_TIMED_OUT in out.err:
        waiting = [line for line in out.text.splitlines() if line.strip()]
        last = f"; last status: {waiting[-1].strip()}" if waiting else ""
        return f"{kind} {name} did not finish its rollout within {timeout} s{last}"
    return f"rollout status of {kind} {name} failed ({out.explain()})"


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
