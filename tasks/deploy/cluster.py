"""The app on the cluster: one round trip on the first server reads it, a pure plan says what to apply.

Every cluster command is ``k3s kubectl`` on the first server, over SSH: the operator's machine needs
no kubectl. The manifests (base + site overlay + the Redis password Secret) are rendered on the
controller and travel inside the script (never on a command line), into a private temp file.

``kubectl diff`` is a server-side dry run: for objects whose namespace does not exist yet it fails
(exit 2, ``namespaces "aeroalpes" not found``), even with the Namespace in the same stream
(kubernetes#114141). So the namespace is read first: when it is missing, every object is new and
is shown as such without a diff, and the apply creates the Namespace before the rest. What nr
prints of a diff has every Secret masked by structure (:mod:`nr.ops.kubediff`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nr import progress
from nr.changes import Change
from nr.errors import NrError
from nr.facts import Facts, gather
from nr.ops import kubectl, kubediff
from nr.play import HostRun
from nr.readahead import drop_reads
from tasks.deploy.manifests import DEPLOYMENTS, NAMESPACE, manifests_yaml, namespace_objects
from tasks.deploy.site import K3S_INSTALLED_CMD, KUBECTL
from tasks.k3s.observe import CLUSTER_CMD

ROLLOUT_TIMEOUT = 180  # seconds per Deployment
WHAT = f"manifests (namespace {NAMESPACE})"
EXPECTED = "as rendered from k3s/"


@dataclass(frozen=True)
class Cluster:
    """The app as the first server shows it."""

    installed: bool  # k3s is installed there
    namespace: bool = False  # the app's namespace exists
    diff: kubectl.DiffResult | None = None  # None: no diff (k3s or the namespace missing)
    deployments: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (ready, wanted)

    @property
    def unavailable(self) -> list[str]:
        return [
            d
            for d in DEPLOYMENTS
            if d in self.deployments and self.deployments[d][0] < self.deployments[d][1]
        ]


def facts_commands(manifests: str) -> dict[str, str]:
    return {
        "k3s": K3S_INSTALLED_CMD,
        "cluster": CLUSTER_CMD,  # the namespace and the Deployments (read once per run with k3s's facts)
        "diff": kubectl.manifest_script(manifests, kubectl.diff_command(KUBECTL, '"$m"')),
    }


def parse(facts: Facts) -> Cluster:
    """The observation (raises KubectlError when the API does not answer)."""
    if facts.out("k3s").strip() != "yes":
        return Cluster(installed=False)
    snapshot = facts.outputs["cluster"]
    if not kubectl.named(snapshot, "Namespace", NAMESPACE):
        return Cluster(installed=True)
    try:
        diff = kubectl.DiffResult.of(facts.outputs["diff"])
    except kubectl.NamespaceMissing:  # deleted between the two commands: nothing of the app is left
        return Cluster(installed=True)
    return Cluster(True, True, diff, kubectl.deployments(kubectl.view(snapshot, "Deployment", NAMESPACE)))


def observe(run: HostRun, manifests: str) -> Cluster:
    return parse(gather(run.remote, commands=facts_commands(manifests)))


def apply_script(objects: Sequence[dict[str, Any]], manifests: str, *, namespace_first: bool) -> str:
    """``kubectl apply`` of the manifests; on a cluster without the app's namespace, the Namespace first."""
    script = ""
    if namespace_first:
        ns = manifests_yaml(namespace_objects(list(objects)))
        script = f"{kubectl.apply_command(KUBECTL, '-')} <<'NR_NS'\n{ns}NR_NS\n"
    return script + kubectl.manifest_script(manifests, kubectl.apply_command(KUBECTL, '"$m"'))


def plan(cluster: Cluster, objects: Sequence[dict[str, Any]], manifests: str, fix: str) -> list[Change]:
    """The change that applies the manifests, if the cluster differs (k3s must be installed)."""
    if not cluster.namespace:
        return [
            Change(WHAT, EXPECTED, f"namespace {NAMESPACE} does not exist yet",
                   apply_script(objects, manifests, namespace_first=True), kubediff.show_new(objects), fix)
        ]  # fmt: skip
    if cluster.diff is not None and cluster.diff.changed:
        return [
            Change(WHAT, EXPECTED, "differs (kubectl diff)", apply_script(objects, manifests, namespace_first=False),
                   kubediff.show(cluster.diff.text), fix)
        ]  # fmt: skip
    return []


def rollout_commands() -> dict[str, str]:
    return {
        f"rollout {d}": kubectl.rollout_status_command(KUBECTL, d, NAMESPACE, ROLLOUT_TIMEOUT)
        for d in DEPLOYMENTS
    }


def rollout_problems(facts: Facts) -> list[str]:
    found = (kubectl.rollout_problem(d, facts.outputs[f"rollout {d}"], ROLLOUT_TIMEOUT) for d in DEPLOYMENTS)
    return [p for p in found if p]


def wait_rollouts(run: HostRun, *, applied: bool) -> None:
    """Wait (bounded) until every Deployment has rolled out; raise naming the ones that did not."""
    drop_reads(run.remote)  # the Deployments read ahead of the run (for checks) are older than this wait
    with progress.track(
        f"waiting for the rollouts of {', '.join(DEPLOYMENTS)} (at most {ROLLOUT_TIMEOUT} s)"
    ):
        problems = rollout_problems(gather(run.remote, commands=rollout_commands()))
    if problems:
        lead = "" if applied else "the manifests are applied but a rollout never completed: "
        raise NrError(
            lead + "; ".join(problems) + f"; look at: {KUBECTL} describe deployments -n {NAMESPACE} "
            f"(events, image pulls, probes) and {KUBECTL} get pods -n {NAMESPACE}"
        )
