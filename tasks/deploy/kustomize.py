"""A small, pure kustomize: build a kustomization folder into a list of Kubernetes objects.

The orchestrator renders the site overlay on the controller and applies plain YAML with
``k3s kubectl apply -f -``, so neither the controller nor the hosts need kustomize or kubectl.
It supports the subset ``k3s/`` uses and the tests compare its output with ``kubectl kustomize``:
``resources`` (files and folders), ``namespace``, ``labels`` (pairs, without selectors),
``configMapGenerator`` (literals; ``behavior`` create/replace/merge; with
``generatorOptions.disableNameSuffixHash``), ``images`` (newName/newTag) and ``patches`` as JSON
6902 operations with a ``target`` (kind, name). Anything else is refused with an error naming it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nr.ops.kubediff import SAFE_DUMPER, SAFE_LOADER

SUPPORTED = {
    "apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "generatorOptions",
    "images", "patches",
}  # fmt: skip
NAMESPACED_EXCEPTIONS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                         "PersistentVolume", "StorageClass", "IngressClass", "PriorityClass"}  # fmt: skip


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is malformed."""


@dataclass(frozen=True)
class ObjectKey:
    kind: str
    namespace: str
    name: str


def key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


def _load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.load_all(path.read_text(), Loader=SAFE_LOADER) if d]
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: not valid YAML: {exc}") from None
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object with a kind")
    return docs


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer '{path}' must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_op(doc: Any, op: dict[str, Any]) -> None:
    kind = op.get("op")
    parts = _pointer(str(op.get("path", "")))
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    last = parts[-1]
    if kind in ("add", "replace"):
        value = copy.deepcopy(op["value"])
        if isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif kind == "add":
                parent.insert(int(last), value)
            else:
                parent[int(last)] = value
        else:
            if kind == "replace" and last not in parent:
                raise KustomizeError(f"replace: path {op['path']} does not exist")
            parent[last] = value
    elif kind == "remove":
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    else:
        raise KustomizeError(f"patch operation '{kind}' is not supported (add, replace, remove)")


def _set_images(obj: dict[str, Any], images: list[dict[str, Any]]) -> None:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") if obj.get("kind") != "Pod" else spec
    if not pod:
        return
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        image = str(c.get("image", ""))
        name, tag = image, None
        if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
            name, tag = image.rsplit(":", 1)
        for rule in images:
            if rule.get("name") == name:
                new_name = rule.get("newName", name)
                new_tag = rule.get("newTag", tag)
                c["image"] = f"{new_name}:{new_tag}" if new_tag else str(new_name)


def _generate(kfile: Path, k: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """``configMapGenerator`` (literals, without name suffix hashes), into ``objects``."""
    disable_hash = bool((k.get("generatorOptions") or {}).get("disableNameSuffixHash"))
    for gen in k.get("configMapGenerator") or []:
        if not disable_hash and not (gen.get("options") or {}).get("disableNameSuffixHash"):
            raise KustomizeError(
                f"{kfile}: configMapGenerator {gen.get('name')}: name suffix hashes are not supported"
            )
        data = dict(line.split("=", 1) for line in gen.get("literals") or [])
        behavior = gen.get("behavior", "create")
        existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == gen["name"]]
        if behavior not in ("create", "replace", "merge"):
            raise KustomizeError(f"{kfile}: configMapGenerator behavior '{behavior}' is not supported")
        if behavior == "create" and existing:
            raise KustomizeError(f"{kfile}: ConfigMap {gen['name']} already exists (use behavior: replace)")
        if behavior != "create" and not existing:
            raise KustomizeError(f"{kfile}: ConfigMap {gen['name']} to {behavior} does not exist")
        if behavior == "create":
            objects.append(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
            )
        else:
            cm = existing[0]
            cm["data"] = data if behavior == "replace" else {**(cm.get("data") or {}), **data}


def _patch(kfile: Path, k: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """``patches``: JSON 6902 operations on the objects their ``target`` (kind, name) names."""
    for patch in k.get("patches") or []:
        target = patch.get("target") or {}
        ops = patch.get("patch")
        ops = yaml.load(ops, Loader=SAFE_LOADER) if isinstance(ops, str) else ops
        if not isinstance(ops, list):
            raise KustomizeError(f"{kfile}: only JSON 6902 patches (a list of operations) are supported")
        hits = [
            o
            for o in objects
            if o["kind"] == target.get("kind") and o["metadata"]["name"] == target.get("name")
        ]
        if not hits:
            raise KustomizeError(f"{kfile}: patch target {target.get('kind')}/{target.get('name')} not found")
        for o in hits:
            for op in ops:
                _apply_op(o, op)


def _label(kfile: Path, k: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """``namespace`` and ``labels`` (pairs, without selectors or templates)."""
    if k.get("namespace"):
        for o in objects:
            if o["kind"] not in NAMESPACED_EXCEPTIONS:
                o["metadata"]["namespace"] = k["namespace"]
    for rule in k.get("labels") or []:
        if rule.get("includeSelectors") or rule.get("includeTemplates"):
            raise KustomizeError(f"{kfile}: labels with includeSelectors/includeTemplates are not supported")
        for o in objects:
            o["metadata"].setdefault("labels", {}).update(rule.get("pairs") or {})


def build(folder: Path) -> list[dict[str, Any]]:
    """Objects of the kustomization in ``folder`` (pure: reads files, touches nothing)."""
    kfile = folder / "kustomization.yaml"
    if not kfile.exists():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    k = yaml.load(kfile.read_text(), Loader=SAFE_LOADER) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported field(s) {', '.join(sorted(unknown))}")
    objects: list[dict[str, Any]] = []
    for res in k.get("resources") or []:
        path = (folder / res).resolve()
        objects += build(path) if path.is_dir() else _load_yaml_docs(path)
    _generate(kfile, k, objects)
    _patch(kfile, k, objects)
    for o in objects if k.get("images") else []:
        _set_images(o, k["images"])
    _label(kfile, k, objects)
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.dump(o, Dumper=SAFE_DUMPER, sort_keys=True) for o in objects)
