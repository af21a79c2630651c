"""The deploy component against scripted hosts: images on the nodes (arch, import, pin), the app on
the cluster (a fresh cluster, diffs with masked Secrets, rollouts), check and drift, fix commands.
kubectl's and ctr's answers follow their real behaviour (see tests/fakes/k3s for the sources)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nr.facts import Output
from nr.inventory.validate import InventoryError
from nr.ops.kubectl import FULL_CONTEXT_DIFF
from nr.ops.kubediff import LAST_APPLIED, object_name
from nr.report import RunReport
from nr.secrets import Secret
from tasks.deploy import cluster, nodes, play
from tasks.deploy.manifests import (
    CONFIG_DIGEST,
    AppSite,
    config_digest,
    digest_key,
    render,
    site_objects,
    with_config_digest,
)
from tasks.deploy.nodes import Image, NodeImages, plan_images
from tasks.deploy.site import load_site, redis_endpoints
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context
from tests.support.kube import ctr_images, snapshot

PASSWORD = "unit-test-Pa55word-0123456789"
HOSTS = {
    "vm1": {"hostname": "198.18.0.11", "groups": ["k3s_servers", "redis"]},
    "vm2": {"hostname": "198.18.0.12", "groups": ["k3s_agents", "redis"]},
    "vm3": {"hostname": "198.18.0.13", "groups": ["k3s_agents", "redis"]},
}
DEFAULTS = {"data": {"redis_password": "env:NR_UNIT_REDIS_PASSWORD"}}
IDS = {"aeroalpes": "sha256:" + "ab" * 32, "aeroalpes-adapter": "sha256:" + "cd" * 32}
PIN = "io.cri-containerd.pinned"
NS_MISSING = 'Error from server (NotFound): namespaces "aeroalpes" not found'
MEMCACHE = (
    "E0413 02:18:01.018146  2329 memcache.go:287] couldn't get resource list for metrics.k8s.io/v1beta1"
)


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NR_UNIT_REDIS_PASSWORD", PASSWORD)


class FakeBuilder:
    """tasks.deploy.local.Builder without Docker: images 'built' for ``ARCH`` into tarballs."""

    ARCH = "amd64"
    TARBALLS: Path = Path()
    calls: list[bool] = []

    def __init__(self, app: AppSite, base_image: str, *, dry_run: bool) -> None:
        self.app, self.dry_run = app, dry_run

    def arch(self) -> str:
        return self.ARCH

    def images(self) -> list[Image]:
        FakeBuilder.calls.append(self.dry_run)
        out = []
        for name in ("aeroalpes", "aeroalpes-adapter"):
            tarball = self.TARBALLS / f"{name}.tar"
            tarball.write_bytes(b"x" * 4096)
            out.append(Image(name, self.app.image(name), IDS[name], tarball))
        return out


@pytest.fixture(autouse=True)
def builder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeBuilder]:
    FakeBuilder.TARBALLS, FakeBuilder.calls, FakeBuilder.ARCH = tmp_path, [], "amd64"
    monkeypatch.setattr(play, "Builder", FakeBuilder)
    return FakeBuilder


def tag() -> str:
    ctx, _ = scripted_context(HOSTS, {}, defaults=DEFAULTS)
    return load_site(ctx).app.tag


def node_outputs(
    *, uname: str = "x86_64", have: bool = True, pinned: bool = True, **override: Any
) -> dict[str, Any]:
    refs = [f"docker.io/library/{n}:{tag()}" for n in IDS] if have else []
    out: dict[str, Any] = {
        "arch": uname,
        "images": ctr_images(
            {
                **{
                    r: {"io.cri-containerd.image": "managed", **({PIN: "pinned"} if pinned else {})}
                    for r in refs
                },
                "sha256:" + "ef" * 32: {"io.cri-containerd.image": "managed"},
            }
        ),
        **{f"id {n}": IDS[n] if have else "" for n in IDS},
    }
    out.update(override)
    return out


def cluster_json(ready: int = 2, *, namespace: bool = True) -> str:
    """The first server's snapshot: the app's namespace and Deployments (when it exists), kube-system's."""
    app = [
        {
            "metadata": {"name": n},
            "spec": {"replicas": 2},
            "status": {"readyReplicas": ready} if ready else {},
        }
        for n in ("aeroalpes", "aeroalpes-adapter")
    ]
    system = [{"metadata": {"name": "coredns"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}]
    found = {"aeroalpes": app, "kube-system": system} if namespace else {"kube-system": system}
    return snapshot(namespaces=["aeroalpes", "kube-system"][0 if namespace else 1 :], deployments=found)


def cluster_outputs(
    *, namespace: bool = True, diff: tuple[int, str, str] = (0, "", ""), ready: int = 2
) -> dict[str, Any]:
    return {
        "k3s": "yes",
        "cluster": (0, cluster_json(ready, namespace=namespace), MEMCACHE),
        "diff": diff if namespace else (2, "", NS_MISSING),  # kubectl stops at the first object (#114141)
    }


ROLLED_OUT = {
    f"rollout {d}": (0, f'deployment "{d}" successfully rolled out')
    for d in ("aeroalpes", "aeroalpes-adapter")
}


def run_deploy(remotes: dict[str, ScriptedRemote], mode: str = "apply", *, dry_run: bool = False,
               inventory_arg: str | None = None) -> RunReport:  # fmt: skip
    ctx, report = scripted_context(HOSTS, remotes, defaults=DEFAULTS, dry_run=dry_run, component="deploy")
    ctx.inventory_arg = report.inventory_arg = inventory_arg
    getattr(play.component, mode)(ctx)
    return report


def converged_nodes() -> dict[str, ScriptedRemote]:
    return {h: ScriptedRemote(h, [facts_reply(outputs=node_outputs())]) for h in ("vm2", "vm3")}


# -- the inventory -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("adapter_node_port", 8080, "a NodePort (30000-32767)"),
        ("adapter_node_port", 32768, "a NodePort (30000-32767)"),
        ("image_registry", "registry.lan/team:1.0", "must be a registry"),
        ("image_registry", "registry.lan;id", "must be a registry"),
        ("image_registry", "-oProxyCommand=id", "must be a registry"),
        ("image_registry", "registry.lan@sha256:" + "a" * 64, "must be a registry"),
        ("image_base", "python 3.11", "must be an image reference"),
        ("image_base", "--privileged", "must be an image reference"),
    ],
)
def test_values_with_a_format_are_refused_naming_the_field(key: str, value: Any, problem: str) -> None:
    with pytest.raises(InventoryError, match=rf"data\.{key}: .*{re.escape(problem)}"):
        scripted_context(HOSTS, {}, defaults={"data": {**DEFAULTS["data"], key: value}})


@pytest.mark.parametrize(
    ("key", "value"),
    [("adapter_node_port", 30000), ("adapter_node_port", 32767), ("image_registry", "registry.lan:5000/"),
     ("image_registry", "registry.lan/team"), ("image_base", "nr-lab-base:bookworm-2"),
     ("image_base", "python:3.11-slim@sha256:" + "0" * 64)],
)  # fmt: skip
def test_values_of_the_right_format_are_accepted(key: str, value: Any) -> None:
    scripted_context(HOSTS, {}, defaults={"data": {**DEFAULTS["data"], key: value}})


def test_the_redis_site_comes_from_the_redis_hosts_and_the_password_stays_a_secret() -> None:
    hosts = {**HOSTS, "vm3": {**HOSTS["vm3"], "data": {"node_ip": "10.0.0.3"}}}
    defaults = {"data": {**DEFAULTS["data"], "redis_ports": [7100, 7103]}}
    ctx, _ = scripted_context(hosts, {}, defaults=defaults)
    redis = redis_endpoints(ctx)  # the redis component's own site model (tasks.redis.site)
    assert redis.nodes == (("198.18.0.11", 7100), ("198.18.0.11", 7103), ("198.18.0.12", 7100),
                           ("198.18.0.12", 7103), ("10.0.0.3", 7100), ("10.0.0.3", 7103))  # fmt: skip
    assert isinstance(redis.password, Secret) and redis.password.reveal() == PASSWORD
    site = load_site(ctx)
    assert PASSWORD not in repr(site) and PASSWORD not in repr(redis)


def test_a_redis_host_named_by_dns_is_refused_before_any_host_is_touched() -> None:
    hosts = {**HOSTS, "vm2": {**HOSTS["vm2"], "hostname": "redis2.lan"}}
    ctx, _ = scripted_context(hosts, {}, defaults=DEFAULTS)
    (problem,) = play.component.validate(ctx)  # the redis site model refuses it, for every play using it
    assert "host vm2" in problem and "'redis2.lan' is not an IP address" in problem


# -- images on the nodes ------------------------------------------------------------------------------------
def images(tmp_path: Path) -> list[Image]:
    tarball = tmp_path / "a.tar"
    tarball.write_bytes(b"x" * 4096)
    return [Image("aeroalpes", "aeroalpes:1.0-abc", IDS["aeroalpes"], tarball)]


def node(listed: bool, marker: str, pinned: bool, error: str = "") -> NodeImages:
    ref = frozenset({"docker.io/library/aeroalpes:1.0-abc"})
    return NodeImages("x86_64", ref if listed else frozenset(), ref if pinned else frozenset(), {"aeroalpes": marker},
                      error)  # fmt: skip


def test_a_node_with_the_image_imported_and_pinned_is_left_alone(tmp_path: Path) -> None:
    assert plan_images(images(tmp_path), node(True, IDS["aeroalpes"], True)) == []


def test_a_node_without_the_image_gets_it_pushed_imported_and_pinned(tmp_path: Path) -> None:
    for listed, marker in [(False, ""), (True, "sha256:old"), (False, IDS["aeroalpes"])]:
        (change,) = plan_images(
            images(tmp_path), node(listed, marker, False), fix="nr run deploy --limit vm2"
        )
        s = change.script
        assert change.upload is not None and change.fix == "nr run deploy --limit vm2"
        assert s.index("[ -x /usr/local/bin/k3s ]") < s.index(
            "ctr images import /var/lib/nr/images/aeroalpes.tar"
        )
        assert (
            s.index("ctr images import")
            < s.index("ctr images label docker.io/library/aeroalpes:1.0-abc io.cri-containerd.pinned=pinned")
            < s.index(f"echo {IDS['aeroalpes']} > /var/lib/nr/images/aeroalpes.id")
        )
        assert "(sha256:abababababab, 4 KiB) and pin it" in change.diff


def test_an_imported_image_that_is_not_pinned_gets_pinned_only(tmp_path: Path) -> None:
    """kubelet's image GC deletes unpinned images no pod uses; `ctr images import` does not pin."""
    (change,) = plan_images(images(tmp_path), node(True, IDS["aeroalpes"], False))
    assert change.upload is None and "import" not in change.script
    assert change.script == (
        "/usr/local/bin/k3s ctr images label docker.io/library/aeroalpes:1.0-abc io.cri-containerd.pinned=pinned"
        " >/dev/null"
    )


def test_ctr_that_cannot_list_says_why_and_stderr_is_never_parsed() -> None:
    outputs = {
        **node_outputs(),
        "images": (1, "", 'ctr: failed to dial "/run/k3s/containerd/containerd.sock"'),
    }
    state = nodes.observe({k: Output(*v) if isinstance(v, tuple) else Output(0, v) for k, v in outputs.items()},
                          IDS)  # fmt: skip
    assert state.listed == frozenset() and state.pinned == frozenset() and "failed to dial" in state.ctr_error


def test_ctr_images_ls_is_read_as_refs_and_pinned_labels() -> None:
    """One `ctr images ls` table (not two -q lists): the ref, then the labels among the comma-separated
    words; the size's space, trailing padding and a "-" (no labels) do not confuse it."""
    text = ctr_images({
        "docker.io/library/aeroalpes:1": {"io.cri-containerd.image": "managed", PIN: "pinned"},
        "docker.io/library/adapter:1": {"io.cri-containerd.image": "managed"},
        "docker.io/rancher/mirrored-pause:3.6": {PIN: "pinned"},
        "sha256:" + "ab" * 32: {},
    })  # fmt: skip
    listed, pinned = nodes.parse_images(text + "\n")
    assert listed == {"docker.io/library/aeroalpes:1", "docker.io/library/adapter:1",
                      "docker.io/rancher/mirrored-pause:3.6", "sha256:" + "ab" * 32}  # fmt: skip
    assert pinned == {"docker.io/library/aeroalpes:1", "docker.io/rancher/mirrored-pause:3.6"}
    assert nodes.parse_images("REF TYPE DIGEST SIZE PLATFORMS LABELS \n") == (frozenset(), frozenset())


def test_images_are_read_then_pushed_only_where_missing(
    builder: type[FakeBuilder],
) -> None:
    r2 = ScriptedRemote("vm2", [facts_reply(outputs=node_outputs(have=False)), Reply("set -e")])
    r3 = ScriptedRemote("vm3", [facts_reply(outputs=node_outputs())])
    r1 = ScriptedRemote("vm1", [facts_reply(outputs=node_outputs()), facts_reply(outputs=cluster_outputs())])
    report = run_deploy({"vm1": r1, "vm2": r2, "vm3": r3})
    assert report.ok, report.failed_reasons
    assert [(r.host, r.task) for r in report.rows if r.changed] == [("vm2", "deploy.images")]
    assert len(r2.puts) == 2 and "ctr images label" in r2.scripts[1] and len(r3.scripts) == 1
    assert not r3.unused() and not r1.unused()


def test_a_node_of_another_architecture_is_refused_naming_host_and_archs(builder: type[FakeBuilder]) -> None:
    r2 = ScriptedRemote("vm2", [facts_reply(outputs=node_outputs(have=False, uname="aarch64"))])
    r3 = ScriptedRemote("vm3", [facts_reply(outputs=node_outputs(have=False)), Reply("set -e")])
    r1 = ScriptedRemote("vm1", [facts_reply(outputs=node_outputs()), facts_reply(outputs=cluster_outputs())])
    report = run_deploy({"vm1": r1, "vm2": r2, "vm3": r3})
    assert report.failed_hosts == ["vm2"]
    why = report.failed_reasons["vm2"]
    assert "node vm2 is arm64 (uname -m: aarch64)" in why and "built on this machine for amd64" in why
    assert len(r2.scripts) == 1 and not r2.puts  # nothing sent to it
    assert len(r3.puts) == 2  # the others go on


# -- the app on the cluster -------------------------------------------------------------------------------
def first(*replies: Reply) -> ScriptedRemote:
    return ScriptedRemote("vm1", [facts_reply(outputs=node_outputs()), *replies])


def test_the_first_deploy_on_a_fresh_cluster_creates_the_namespace_first() -> None:
    """kubectl diff fails (exit 2) while the namespace does not exist (kubernetes#114141)."""
    r1 = first(facts_reply(outputs=cluster_outputs(namespace=False, ready=0)), Reply("set -e"),
               facts_reply(outputs=ROLLED_OUT))  # fmt: skip
    report = run_deploy({"vm1": r1, **converged_nodes()})
    assert report.ok, report.failed_reasons
    apply = r1.scripts[2]
    ns_at = apply.index(
        "/usr/local/bin/k3s kubectl apply -f - <<'NR_NS'\n---\napiVersion: v1\nkind: Namespace"
    )
    assert ns_at < apply.index('/usr/local/bin/k3s kubectl apply -f "$m"')
    assert "rollout status deployment/aeroalpes-adapter -n aeroalpes --timeout=180s" in r1.scripts[3]
    (row,) = [r for r in report.rows if r.task == "deploy.apply"]
    assert row.changed and "+++ MERGED/apps.v1.Deployment.aeroalpes.aeroalpes" in row.diff


@pytest.mark.parametrize("mode", ["dry-run", "drift", "check"])
def test_a_fresh_cluster_reads_as_everything_new_without_applying(mode: str) -> None:
    r1 = first(facts_reply(outputs=cluster_outputs(namespace=False, ready=0)))
    report = run_deploy(
        {"vm1": r1, **converged_nodes()}, "apply" if mode == "dry-run" else mode, dry_run=True
    )
    assert report.ok and not r1.unused() and len(r1.scripts) == 2  # no apply, no rollout wait
    if mode == "dry-run":
        (row,) = [r for r in report.rows if r.task == "deploy.apply"]
        assert row.changed and "+kind: Namespace" in row.diff and "+  password: '***'" in row.diff
        assert base64.b64encode(PASSWORD.encode()).decode() not in row.diff
    assert [(d.host, d.what, d.actual) for d in report.drift] == [
        ("vm1", "manifests (namespace aeroalpes)", "namespace aeroalpes does not exist yet")
    ]
    if mode == "check":
        failed = [(c.host, c.name) for c in report.checks if not c.ok]
        assert failed == [("vm1", "manifests (namespace aeroalpes)")]


def kubectl_diff(tmp_path: Path, live: list[dict[str, Any]], merged: list[dict[str, Any]]) -> str:
    """What kubectl diff prints with nr's KUBECTL_EXTERNAL_DIFF: the real diff on kubectl's folders."""
    for side, objs in (("LIVE-1", live), ("MERGED-2", merged)):
        (tmp_path / side).mkdir()
        for o in objs:
            (tmp_path / side / object_name(o)).write_text(yaml.safe_dump(o))
    argv = [*FULL_CONTEXT_DIFF.split(), str(tmp_path / "LIVE-1"), str(tmp_path / "MERGED-2")]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def applied_secret(password: str) -> dict[str, Any]:
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aeroalpes-redis", "namespace": "aeroalpes"},
           "data": {"password": base64.b64encode(password.encode()).decode()}, "type": "Opaque"}  # fmt: skip
    annotated = json.loads(json.dumps(doc))
    annotated["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(doc, separators=(",", ":")) + "\n"}
    return annotated


def test_a_rotated_password_is_applied_and_no_value_of_it_is_printed(tmp_path: Path) -> None:
    """kubectl masks a Secret's data in diffs, not its last-applied annotation: nr masks both."""
    old = "old-rotated-Pa55word-42"
    text = kubectl_diff(tmp_path, [applied_secret(old)], [applied_secret(PASSWORD)])
    r1 = first(facts_reply(outputs=cluster_outputs(diff=(1, text, ""))), Reply("set -e"),
               facts_reply(outputs=ROLLED_OUT))  # fmt: skip
    report = run_deploy({"vm1": r1, **converged_nodes()})
    assert report.ok, report.failed_reasons
    printed = json.dumps(report.to_json()) + repr(report.drift)
    for value in (old, PASSWORD):
        assert value not in printed and base64.b64encode(value.encode()).decode() not in printed
    (row,) = [r for r in report.rows if r.task == "deploy.apply"]
    assert "-  password: '*** (before)'\n+  password: '*** (after)'" in row.diff
    assert f"-    {LAST_APPLIED}: '*** (before)'" in row.diff


def test_a_rollout_that_times_out_names_the_deployment() -> None:
    waiting = 'Waiting for deployment "aeroalpes-adapter" rollout to finish: 1 of 2 updated replicas are available...'
    rollouts = {
        **ROLLED_OUT,
        "rollout aeroalpes-adapter": (1, waiting, "error: timed out waiting for the condition"),
    }
    text = "--- /tmp/LIVE-1/v1.ConfigMap.aeroalpes.c\n+++ /tmp/MERGED-2/v1.ConfigMap.aeroalpes.c\n@@ -1 +1 @@\n-a: 1\n+a: 2\n"
    r1 = first(facts_reply(outputs=cluster_outputs(diff=(1, text, ""))),
               Reply("set -e", stderr="Warning: resource configmaps/c is missing the kubectl.kubernetes.io/"
                     "last-applied-configuration annotation"),
               facts_reply(outputs=rollouts))  # fmt: skip
    report = run_deploy({"vm1": r1, **converged_nodes()})
    why = report.failed_reasons["vm1"]
    assert "deployment aeroalpes-adapter did not finish its rollout within 180 s" in why
    assert "1 of 2 updated replicas are available" in why and "describe deployments -n aeroalpes" in why
    assert "deployment aeroalpes " not in why  # the one that rolled out is not blamed


def test_an_applied_but_unfinished_rollout_is_awaited_on_a_real_run_only() -> None:
    r1 = first(facts_reply(outputs=cluster_outputs(ready=1)), facts_reply(outputs=ROLLED_OUT))
    assert run_deploy({"vm1": r1, **converged_nodes()}).ok and not r1.unused()
    dry = first(facts_reply(outputs=cluster_outputs(ready=1)))
    assert run_deploy({"vm1": dry, **converged_nodes()}, dry_run=True).ok and len(dry.scripts) == 2


def test_an_api_that_does_not_answer_fails_the_first_server_with_kubectls_reason() -> None:
    refused = (
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
    )
    outputs = {**cluster_outputs(), "cluster": (1, "", MEMCACHE + "\n" + refused)}
    report = run_deploy({"vm1": first(facts_reply(outputs=outputs)), **converged_nodes()})
    assert report.failed_hosts == ["vm1"] and "was refused" in report.failed_reasons["vm1"]


def test_without_k3s_a_real_run_fails_and_a_dry_run_says_what_comes_first() -> None:
    outputs = {
        "k3s": "no",
        "cluster": (3, "", "k3s is not installed"),
        "diff": (127, "", ""),
    }
    r1 = first(facts_reply(outputs=outputs))
    report = run_deploy({"vm1": r1, **converged_nodes()})
    assert "k3s is not installed on vm1: run `nr run k3s` first" in report.failed_reasons["vm1"]
    dry = run_deploy({"vm1": first(facts_reply(outputs=outputs)), **converged_nodes()}, dry_run=True,
                     inventory_arg="inventories/my site")  # fmt: skip
    assert dry.ok and [r.host for r in dry.rows if r.changed] == ["vm1"]
    (item,) = dry.drift
    assert item.fix == "nr run k3s -i 'inventories/my site' && nr run deploy -i 'inventories/my site'"


def test_drift_and_check_share_their_rules_and_print_quoted_fixes() -> None:
    """An unpinned image on vm3 and a hand edit in the cluster: failed checks and the same drift items."""
    text = "--- /tmp/LIVE-1/v1.ConfigMap.aeroalpes.c\n+++ /tmp/MERGED-2/v1.ConfigMap.aeroalpes.c\n@@ -1 +1 @@\n-a: 1\n+a: 2\n"
    for mode in ("check", "drift"):
        r1 = first(facts_reply(outputs=cluster_outputs(diff=(1, text, ""))))
        r2 = ScriptedRemote("vm2", [facts_reply(outputs=node_outputs())])
        r3 = ScriptedRemote("vm3", [facts_reply(outputs=node_outputs(pinned=False))])
        report = run_deploy({"vm1": r1, "vm2": r2, "vm3": r3}, mode, dry_run=True, inventory_arg="inv dir")
        assert report.ok and all(len(r.scripts) == 1 for r in (r2, r3)) and len(r1.scripts) == 2
        items = sorted((d.host, d.what, d.fix) for d in report.drift)
        assert items == [
            ("vm1", "manifests (namespace aeroalpes)", "nr run deploy -i 'inv dir'"),
            ("vm3", f"image aeroalpes-adapter:{tag()} pinned", "nr run deploy -i 'inv dir' --limit vm3"),
            ("vm3", f"image aeroalpes:{tag()} pinned", "nr run deploy -i 'inv dir' --limit vm3"),
        ]
        if mode == "check":
            assert sorted((c.host, c.name) for c in report.checks if not c.ok) == [
                (h, w) for h, w, _ in items
            ]
            assert ("vm2", "service images pinned") in {(c.host, c.name) for c in report.checks if c.ok}
    assert FakeBuilder.calls and all(FakeBuilder.calls)  # check and drift never build


def test_every_planned_change_carries_its_script(tmp_path: Path) -> None:
    site = load_site(scripted_context(HOSTS, {}, defaults=DEFAULTS)[0])
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "aeroalpes"}}]
    for state in (cluster.Cluster(True), cluster.Cluster(True, True, cluster.kubectl.DiffResult(True, "x"))):
        assert all(c.script.strip() for c in cluster.plan(state, objects, "---\n", "nr run deploy"))
    for n in (node(False, "", False), node(True, IDS["aeroalpes"], False)):
        assert all(c.script.strip() for c in plan_images(images(tmp_path), n))
    assert site.app.tag == tag()


# -- manifests -------------------------------------------------------------------------------------------------
def test_config_digest_rolls_the_pods_on_a_new_password_or_node_list_and_hides_the_password() -> None:
    site = AppSite(tag="0.1.0", redis_nodes=(("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7000)))
    objects = render(site)
    one, two = digest_key(Secret("s3cret-one")), digest_key(Secret("s3cret-two"))

    def digest_of(objs: list[dict[str, Any]]) -> str:
        dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "aeroalpes")
        return str(dep["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST])

    first_digest = digest_of(with_config_digest(objects, one))
    assert first_digest == digest_of(with_config_digest(objects, digest_key(Secret("s3cret-one"))))  # stable
    assert first_digest != digest_of(with_config_digest(objects, two))
    bigger = AppSite(tag="0.1.0", redis_nodes=(*site.redis_nodes, ("10.0.0.4", 7000)))
    assert first_digest != digest_of(with_config_digest(render(bigger), one))
    assert "s3cret-one" not in json.dumps(with_config_digest(objects, one))
    assert config_digest({"REDIS_NODES": "a:1"}, one) != config_digest({"REDIS_NODES": "b:1"}, one)
    adapter = next(
        o for o in with_config_digest(objects, one) if o["metadata"]["name"] == "aeroalpes-adapter"
    )
    assert CONFIG_DIGEST not in json.dumps(adapter)  # the adapter reads neither: it does not restart
    assert objects == render(site)  # the input is not modified
    # the digest nr computed before the key moved to a thread of its own: an upgrade rolls no pods
    assert config_digest({"REDIS_NODES": "a:1"}, one) == "50690ba99da97468"
    assert site_objects(site, Secret("s3cret-one"))[:-1] == with_config_digest(objects, one)


def test_docker_save_asks_for_the_nodes_platform_only_from_containerds_image_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.deploy import local

    calls: list[tuple[str, ...]] = []
    status = {"driver": '[["driver-type","io.containerd.snapshotter.v1"]]'}

    def docker(*args: str, timeout: float = 600) -> str:
        calls.append(args)
        if args[0] == "info":
            return status["driver"]
        if args[0] == "save":
            Path(args[args.index("-o") + 1]).write_bytes(b"tar")
        return ""

    monkeypatch.setattr(local, "docker", docker)
    assert local.save_platform("arm64") == "linux/arm64"
    tarball = local.save("aeroalpes", "aeroalpes:1", "sha256:" + "a" * 64, "1", dry_run=False, cache=tmp_path,
                         platform=lambda: local.save_platform("amd64"))  # fmt: skip
    assert tarball is not None and tarball.read_bytes() == b"tar"
    assert calls[-1][:3] == ("save", "--platform", "linux/amd64")
    status["driver"] = '[["Backing Filesystem","extfs"],["Supports d_type","true"]]'  # overlay2
    assert local.save_platform("amd64") is None
    local.save("aeroalpes", "aeroalpes:2", "sha256:" + "b" * 64, "2", dry_run=False, cache=tmp_path,
               platform=lambda: local.save_platform("amd64"))  # fmt: skip
    assert calls[-1][:2] == ("save", "-o")


def test_saving_an_image_keeps_a_tarball_another_run_saved_lately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.deploy import local

    def docker_save(*args: str, **kw: Any) -> str:  # docker save -o FILE REF
        Path(args[2]).write_bytes(b"tar")
        return ""

    monkeypatch.setattr(local, "docker", docker_save)
    stale = tmp_path / "api-0.1.0-aaaaaaaaaaaa-1111111111111111.tar"
    lately = [tmp_path / f"api-0.1.0-{c * 12}-{c * 16}.tar" for c in "bde"]  # concurrent runs', just saved
    for p in (stale, *lately):
        p.write_bytes(b"tar")
    os.utime(stale, (time.time() - 3 * 3600,) * 2)  # hours ago
    saved = local.save(
        "api",
        "api:0.1.0-cccccccccccc",
        "sha256:" + "3" * 64,
        "0.1.0-cccccccccccc",
        dry_run=False,
        cache=tmp_path,
    )
    assert saved is not None and saved.read_bytes() == b"tar"
    # beyond the KEEP most recently used, only what is an hour old goes: the third of `lately` stays
    assert local.KEEP == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([saved.name, *(p.name for p in lately)])
