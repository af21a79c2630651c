"""The k3s/ manifests: they render, validate against the Kubernetes schemas offline, and follow policy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nr.secrets import Secret
from tasks.deploy.kustomize import KustomizeError, build, key
from tasks.deploy.manifests import BASE, K3S_DIR, AppSite, overlay_yaml, render, secret_manifest

K8S_VERSION = "1.31.0"  # the minor of the pinned k3s release
SITE = AppSite(
    tag="0.1.0",
    redis_nodes=tuple((f"10.1.0.{i}", p) for i in (1, 2, 3, 4) for p in (7100, 7103)),
    node_port=31051,
)
EXAMPLE = AppSite("0.1.0", tuple((f"192.168.64.{i}", p) for i in (11, 12, 13) for p in (7000, 7003)))


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(SITE)


def by(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def pod_spec(deploy: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deploy["spec"]["template"]["spec"]
    return spec


def test_renders_every_object(objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("Namespace", "aeroalpes"), ("ConfigMap", "aeroalpes-config"),
        ("Deployment", "aeroalpes"), ("Service", "aeroalpes"), ("HorizontalPodAutoscaler", "aeroalpes"),
        ("PodDisruptionBudget", "aeroalpes"),
        ("Deployment", "aeroalpes-adapter"), ("Service", "aeroalpes-adapter"),
        ("HorizontalPodAutoscaler", "aeroalpes-adapter"), ("PodDisruptionBudget", "aeroalpes-adapter"),
        ("Ingress", "aeroalpes-adapter"),
        ("NetworkPolicy", "default-deny"), ("NetworkPolicy", "aeroalpes-from-adapter"),
        ("NetworkPolicy", "adapter-from-anywhere"), ("NetworkPolicy", "adapter-egress"),
        ("NetworkPolicy", "aeroalpes-egress"),
    ])  # fmt: skip
    assert all(o["metadata"].get("namespace") == "aeroalpes" for o in objects if o["kind"] != "Namespace")


def test_same_output_as_kubectl_kustomize(tmp_path: Path, objects: list[dict[str, Any]]) -> None:
    """Our renderer against real kustomize (kubectl's), where kubectl exists (the operator's machine need not)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: cannot compare with real kustomize")
    folder = tmp_path / "k3s" / "overlays" / "site"
    shutil.copytree(BASE, tmp_path / "k3s" / "base")
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(overlay_yaml(SITE))
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    theirs = {key(o): o for o in yaml.safe_load_all(out) if o}
    ours = {key(o): o for o in objects}
    assert set(theirs) == set(ours)
    for k, obj in ours.items():
        assert obj == theirs[k], k


def test_committed_example_overlay_is_current() -> None:
    path = K3S_DIR / "overlays" / "example" / "kustomization.yaml"
    assert path.read_text() == overlay_yaml(EXAMPLE), (
        "re-render k3s/overlays/example (see tests/unit/test_manifests.py)"
    )
    assert {key(o) for o in build(path.parent)} == {key(o) for o in render(EXAMPLE)}


def test_every_object_validates_against_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    for obj in [*objects, secret_manifest(Secret("example-password"))]:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_schema_validation_catches_mistakes(objects: list[dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(by(objects, "Deployment", "aeroalpes")))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", ["aeroalpes", "aeroalpes-adapter"])
def test_workload_policy(objects: list[dict[str, Any]], name: str) -> None:
    deploy = by(objects, "Deployment", name)
    assert "replicas" not in deploy["spec"]  # the HPA owns it: 2 to 6
    spec = pod_spec(deploy)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        assert c["image"] == f"{name}:0.1.0"
        assert set(c["resources"]["requests"]) == {"cpu", "memory"}
        assert set(c["resources"]["limits"]) == {"cpu", "memory"}
        assert c["livenessProbe"] and c["readinessProbe"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    hpa = by(objects, "HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_adapter_probes_use_grpc_health(objects: list[dict[str, Any]]) -> None:
    c = pod_spec(by(objects, "Deployment", "aeroalpes-adapter"))["containers"][0]
    assert c["livenessProbe"]["grpc"] == {"port": 50051}
    assert c["readinessProbe"]["grpc"] == {"port": 50051}
    rest = pod_spec(by(objects, "Deployment", "aeroalpes"))["containers"][0]
    assert rest["livenessProbe"]["httpGet"]["path"] == "/health"
    assert rest["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_aeroalpes_is_not_exposed_outside(objects: list[dict[str, Any]]) -> None:
    assert by(objects, "Service", "aeroalpes")["spec"]["type"] == "ClusterIP"
    for ing in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] != "aeroalpes"
    adapter = by(objects, "Service", "aeroalpes-adapter")
    assert adapter["spec"]["type"] == "NodePort"
    assert adapter["spec"]["ports"][0]["nodePort"] == 31051


def test_network_policies(objects: list[dict[str, Any]]) -> None:
    deny = by(objects, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    into_rest = by(objects, "NetworkPolicy", "aeroalpes-from-adapter")
    assert into_rest["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "aeroalpes"}
    assert into_rest["spec"]["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "aeroalpes-adapter"}}}],
        "ports": [{"port": 5000, "protocol": "TCP"}],
    }]  # fmt: skip
    ingress_rules = [
        o for o in objects if o["kind"] == "NetworkPolicy" and "Ingress" in o["spec"]["policyTypes"]
    ]
    for np in ingress_rules:  # nothing else opens AeroAlpes
        if np["metadata"]["name"] not in ("default-deny", "aeroalpes-from-adapter"):
            assert np["spec"]["podSelector"]["matchLabels"] != {"app.kubernetes.io/name": "aeroalpes"}
    egress = by(objects, "NetworkPolicy", "aeroalpes-egress")["spec"]["egress"][0]
    assert egress["to"] == [{"ipBlock": {"cidr": f"10.1.0.{i}/32"}} for i in (1, 2, 3, 4)]
    assert egress["ports"] == [{"port": 7100, "protocol": "TCP"}, {"port": 7103, "protocol": "TCP"}]


def test_config_map_and_secret(objects: list[dict[str, Any]]) -> None:
    cm = by(objects, "ConfigMap", "aeroalpes-config")
    assert cm["data"] == {
        "REDIS_NODES": ",".join(f"10.1.0.{i}:{p}" for i in (1, 2, 3, 4) for p in (7100, 7103))
    }
    assert not [o for o in objects if o["kind"] == "Secret"]  # the password never goes through the overlay
    secret = secret_manifest(Secret("pa55"))
    assert secret["data"] == {"password": "cGE1NQ=="}
    volumes = pod_spec(by(objects, "Deployment", "aeroalpes"))["volumes"]
    assert {
        "name": "redis-password",
        "secret": {
            "secretName": "aeroalpes-redis",
            "defaultMode": 0o440,
            "items": [{"key": "password", "path": "password"}],
        },
    } in volumes


def test_registry_images(objects: list[dict[str, Any]]) -> None:
    site = AppSite("0.2.0", SITE.redis_nodes, registry="registry.lan:5000/")
    images = [
        c["image"] for o in render(site) if o["kind"] == "Deployment" for c in pod_spec(o)["containers"]
    ]
    assert images == ["registry.lan:5000/aeroalpes:0.2.0", "registry.lan:5000/aeroalpes-adapter:0.2.0"]


def test_renderer_refuses_what_it_does_not_support(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nhelmCharts: []\n")
    with pytest.raises(KustomizeError, match="unsupported field"):
        build(tmp_path)
