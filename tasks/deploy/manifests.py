"""The app's manifests (pure): the site overlay, the rendered objects, the Redis password Secret.

The kustomize base lives in ``k3s/base``; :func:`overlay` writes the site's overlay (image tags
or registry, REDIS_NODES, the Redis hosts allowed by the egress policy, the adapter's NodePort) and
:func:`render` builds it with :mod:`tasks.deploy.kustomize`. The Redis password never enters the
overlay: it stays a :class:`~nr.secrets.Secret` up to :func:`secret_manifest`, the one place it is
revealed (and :func:`digest_key`, a PBKDF2 of it for :func:`config_digest`), in memory only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nr.ops.kubediff import SAFE_DUMPER
from nr.secrets import REDACTOR, Secret
from tasks.deploy.kustomize import build

K3S_DIR = Path(__file__).resolve().parents[2] / "k3s"
BASE = K3S_DIR / "base"
NAMESPACE = "aeroalpes"
SECRET_NAME = "aeroalpes-redis"
DEFAULT_NODE_PORT = 30051
DEPLOYMENTS = ("aeroalpes", "aeroalpes-adapter")
IMAGES = ("aeroalpes", "aeroalpes-adapter")


@dataclass(frozen=True)
class AppSite:
    """What the overlay needs to know about the site (from the inventory)."""

    tag: str
    redis_nodes: tuple[tuple[str, int], ...]  # every instance: (address, port)
    node_port: int = DEFAULT_NODE_PORT
    registry: str | None = None  # pull from here instead of importing pushed images

    @property
    def redis_hosts(self) -> list[str]:
        return list(dict.fromkeys(a for a, _ in self.redis_nodes))

    @property
    def redis_ports(self) -> list[int]:
        return sorted({p for _, p in self.redis_nodes})

    def image(self, name: str) -> str:
        return f"{self.registry.rstrip('/')}/{name}:{self.tag}" if self.registry else f"{name}:{self.tag}"


def _cidr(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def overlay(site: AppSite, base: str = "../../base") -> dict[str, Any]:
    """The site overlay's kustomization.yaml (pure; valid for ``kubectl kustomize`` too)."""
    images = []
    for name in IMAGES:
        rule: dict[str, Any] = {"name": name, "newTag": site.tag}
        if site.registry:
            rule["newName"] = f"{site.registry.rstrip('/')}/{name}"
        images.append(rule)
    egress_to = [{"ipBlock": {"cidr": _cidr(a)}} for a in site.redis_hosts]
    egress_ports = [{"port": p, "protocol": "TCP"} for p in site.redis_ports]
    nodes = ",".join(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in site.redis_nodes)
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "configMapGenerator": [{"name": "aeroalpes-config", "behavior": "replace", "literals": [f"REDIS_NODES={nodes}"]}],
        "generatorOptions": {"disableNameSuffixHash": True},
        "images": images,
        "patches": [
            {
                "target": {"kind": "NetworkPolicy", "name": "aeroalpes-egress"},
                "patch": yaml.safe_dump([
                    {"op": "replace", "path": "/spec/egress/0/to", "value": egress_to},
                    {"op": "replace", "path": "/spec/egress/0/ports", "value": egress_ports},
                ]),
            },
            {
                "target": {"kind": "Service", "name": "aeroalpes-adapter"},
                "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/ports/0/nodePort", "value": site.node_port}]),
            },
        ],
    }  # fmt: skip


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the patches) as literal blocks, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _str)


def overlay_yaml(site: AppSite, base: str = "../../base") -> str:
    text = yaml.dump(overlay(site, base), Dumper=_BlockDumper, sort_keys=False)
    return "# Rendered by nr (deploy play) from the inventory; do not edit.\n" + text


def render(site: AppSite, base: Path = BASE) -> list[dict[str, Any]]:
    """The manifests to apply: the base with the site overlay (pure apart from a temp folder)."""
    with tempfile.TemporaryDirectory(prefix="nr-overlay-") as tmp:
        folder = Path(tmp) / "site"
        folder.mkdir()
        rel = os.path.relpath(base.resolve(), folder)  # kustomize refuses absolute resource paths
        (folder / "kustomization.yaml").write_text(overlay_yaml(site, rel))
        return build(folder)


def secret_manifest(password: Secret) -> dict[str, Any]:
    """The Secret holding the Redis password (built in memory only; never written to git)."""
    encoded = base64.b64encode(password.reveal().encode()).decode()
    REDACTOR.add(encoded)  # the Secret's data field, should kubectl ever print it in an error
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "aeroalpes", "app.kubernetes.io/managed-by": "nr"},
        },
        "data": {"password": encoded},
    }


CONFIG_DIGEST = "nr.io/config-digest"


def digest_key(password: Secret) -> bytes:
    """What the password gives :func:`config_digest`: a PBKDF2 of it (100,000 rounds, ~60 ms of CPU;
    hashlib lets other threads run meanwhile)."""
    return hashlib.pbkdf2_hmac("sha256", password.reveal().encode(), b"nr/aeroalpes/config-digest", 100_000)


def config_digest(config: dict[str, str], key: bytes) -> str:
    """A digest of what the aeroalpes pods read only when they start (its ConfigMap and the Redis
    password, through its :func:`digest_key`, so the digest does not give the password away)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode() + key).hexdigest()[:16]


def with_config_digest(objects: list[dict[str, Any]], key: bytes) -> list[dict[str, Any]]:
    """The objects, the aeroalpes Deployment's pod template annotated with :func:`config_digest`:
    a new password or Redis node list is then a template change, and the pods roll to it (a
    ConfigMap or Secret change alone restarts nothing in Kubernetes)."""
    config = next(
        o["data"] for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "aeroalpes-config"
    )
    out: list[dict[str, Any]] = json.loads(json.dumps(objects))
    for obj in out:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "aeroalpes":
            meta = obj["spec"]["template"].setdefault("metadata", {})
            meta.setdefault("annotations", {})[CONFIG_DIGEST] = config_digest(config, key)
    return out


def manifests_yaml(objects: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.dump(o, Dumper=SAFE_DUMPER, sort_keys=True) for o in objects)


def site_objects(site: AppSite, password: Secret) -> list[dict[str, Any]]:
    """Everything deploy applies, in order (the Namespace first): the rendered overlay with the
    config digest, then the Secret. The digest's key is derived on another thread while the overlay
    renders (on another core when there is one)."""
    with ThreadPoolExecutor(1, thread_name_prefix="nr-digest-key") as pool:
        key = pool.submit(digest_key, password)
        objects = render(site)
        return [*with_config_digest(objects, key.result()), secret_manifest(password)]


def namespace_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Namespace objects among ``objects`` (applied first on a cluster that lacks them)."""
    return [o for o in objects if o.get("kind") == "Namespace"]
