"""What ``kubectl get nodes,namespaces,deployments --all-namespaces -o json`` prints (nr.ops.kubectl
snapshot_command), for facts fixtures: one List whose items carry their kind (kubectl get.go printGeneric)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any


def snapshot(
    *,
    nodes: Iterable[Mapping[str, Any]] = (),
    namespaces: Iterable[str] = (),
    deployments: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
) -> str:
    """``deployments``: namespace -> Deployment objects (their metadata gets the namespace)."""
    items: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Node", **n} for n in nodes]
    items += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces]
    for ns, found in (deployments or {}).items():
        items += [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                **d,
                "metadata": {**d.get("metadata", {}), "namespace": ns},
            }
            for d in found
        ]
    return json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
    )


def ctr_images(images: Mapping[str, Mapping[str, str]]) -> str:
    """What ``k3s ctr images ls`` prints for ref -> labels (containerd cmd/ctr/commands/images/images.go:
    a tabwriter table, padding 1, every cell padded, so rows end in spaces; SIZE holds a space)."""
    rows = [["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]]
    for ref, labels in images.items():
        pairs = ",".join(sorted(f"{k}={v}" for k, v in labels.items())) or "-"
        digest = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        rows.append(
            [ref, "application/vnd.oci.image.index.v1+json", digest, "24.6 MiB", "linux/amd64", pairs]
        )
    widths = [max(len(r[i]) for r in rows) + 1 for i in range(len(rows[0]))]
    return "\n".join("".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
