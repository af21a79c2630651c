"""What ``kubectl diff`` prints, made safe to show: parsed per object, Secrets masked by structure.

kubectl diff writes each object twice (``LIVE-*/`` and ``MERGED-*/``, one YAML file per object named
``<group.>v1.Kind.namespace.name``) and runs ``diff`` on the two folders (kubectl cmd/diff
``Differ``, ``InfoObject.Name``). It masks a Secret's ``data`` values itself (``Masker``), but not
``stringData`` nor the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, which holds the
whole applied Secret; older kubectls mask nothing. So nr asks for full-context diffs
(:data:`nr.ops.kubectl.FULL_CONTEXT_DIFF`), parses every object back from them, masks every
Secret's ``data``, ``stringData`` and last-applied annotation, whatever their values, and renders
the diff again (3 lines of context). A Secret's diff that cannot be parsed back is never shown.
The last-applied annotation of other objects (the whole object again, as one long line of JSON)
is shown as a short note: the object itself is diffed as YAML.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it (same results)
SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when PyYAML has it

MASK, MASK_BEFORE, MASK_AFTER = "***", "*** (before)", "*** (after)"  # kubectl diff's own masks
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SECRET_FIELDS = ("data", "stringData")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class ObjectDiff:
    """One object's part of a ``kubectl diff``: both versions when they could be read back."""

    name: str  # kubectl's file name, e.g. apps.v1.Deployment.shop.web (group.version.Kind.namespace.name)
    old: str | None  # the LIVE YAML ("" for a new object); None: not a full-context diff
    new: str | None
    raw: str  # the section as printed

    @property
    def is_secret(self) -> bool:
        if ".Secret." in f".{self.name}":
            return True
        return any(re.match(r"^[ +-]kind: Secret\s*$", line) for line in self.raw.splitlines())


def _hunks(lines: list[str], i: int) -> tuple[list[str] | None, list[str] | None, int]:
    """Read the hunks from ``lines[i]``: (old lines, new lines) if one hunk holds both whole files."""
    old: list[str] = []
    new: list[str] = []
    count = 0
    whole = True
    while i < len(lines) and (m := _HUNK.match(lines[i])):
        count += 1
        a_start, a_len = int(m[1]), int(m[2] if m[2] is not None else 1)
        b_start, b_len = int(m[3]), int(m[4] if m[4] is not None else 1)
        whole = whole and a_start <= 1 and b_start <= 1
        i += 1
        while i < len(lines) and (a_len > 0 or b_len > 0 or lines[i].startswith("\\")):
            tag, text = lines[i][:1], lines[i][1:]
            if tag in (" ", ""):
                old.append(text)
                new.append(text)
                a_len, b_len = a_len - 1, b_len - 1
            elif tag == "-":
                old.append(text)
                a_len -= 1
            elif tag == "+":
                new.append(text)
                b_len -= 1
            i += 1
    if count != 1 or not whole:
        return None, None, i
    return old, new, i


def parse(text: str) -> list[ObjectDiff]:
    """The objects of a unified diff of two kubectl diff folders (lines outside them are dropped)."""
    lines = text.splitlines()
    out: list[ObjectDiff] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            start = i
            name = lines[i][4:].split("\t")[0].rstrip("/").rsplit("/", 1)[-1]
            old, new, i = _hunks(lines, i + 2)
            raw = "\n".join(lines[start:i])
            out.append(
                ObjectDiff(name, "\n".join(old) if old is not None else None,
                           "\n".join(new) if new is not None else None, raw)
            )  # fmt: skip
        else:
            i += 1
    return out


def _masked_values(a: Any, b: Any) -> tuple[Any, Any]:
    """kubectl's Masker rule for one mapping of secret values, on both sides of a diff."""
    if not isinstance(a, dict | None) or not isinstance(b, dict | None):  # not a mapping: all of it
        return (MASK if a is not None else None), (MASK if b is not None else None)
    a, b = a or {}, b or {}
    old = {k: (MASK_BEFORE if k in b and b[k] != v else MASK) for k, v in a.items()}
    new = {k: (MASK_AFTER if k in a and a[k] != v else MASK) for k, v in b.items()}
    return old, new


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    return ann if isinstance(ann, dict) else {}


def is_secret(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("kind") == "Secret"


def mask_pair(old: Any, new: Any) -> tuple[Any, Any]:
    """Both versions of an object with every Secret value masked (copies; other kinds unchanged).

    Masked: ``data`` and ``stringData`` values and the last-applied annotation, whatever they hold;
    a value that differs between the versions shows as ``*** (before)`` / ``*** (after)``.
    """
    if not (is_secret(old) or is_secret(new)):
        return old, new
    a = copy.deepcopy(old) if isinstance(old, dict) else {}
    b = copy.deepcopy(new) if isinstance(new, dict) else {}
    for field in SECRET_FIELDS:
        if field in a or field in b:
            ma, mb = _masked_values(a.get(field), b.get(field))
            if field in a:
                a[field] = ma
            if field in b:
                b[field] = mb
    ann_a, ann_b = _annotations(a), _annotations(b)
    if LAST_APPLIED in ann_a or LAST_APPLIED in ann_b:
        ma, mb = _masked_values(
            {LAST_APPLIED: ann_a.get(LAST_APPLIED)} if LAST_APPLIED in ann_a else {},
            {LAST_APPLIED: ann_b.get(LAST_APPLIED)} if LAST_APPLIED in ann_b else {},
        )
        ann_a.update(ma)
        ann_b.update(mb)
    return (a if isinstance(old, dict) else old), (b if isinstance(new, dict) else new)


def _dump(obj: Any) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, width=1 << 20).splitlines()


def _load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=SAFE_LOADER) if text.strip() else None
    except yaml.YAMLError:
        return _UNREADABLE


_UNREADABLE = object()


APPLIED_COPY = "(the applied object as JSON, diffed above as YAML)"


def without_applied_copy(obj: Any) -> Any:
    """``obj`` with its last-applied annotation (one line of JSON holding the whole object, which the
    diff shows as YAML anyway) replaced by a short note; a masked one is kept as it is."""
    ann = _annotations(obj) if isinstance(obj, dict) else {}
    value = ann.get(LAST_APPLIED)
    if not isinstance(value, str) or value in (MASK, MASK_BEFORE, MASK_AFTER):
        return obj
    out = copy.deepcopy(obj)
    _annotations(out)[LAST_APPLIED] = APPLIED_COPY
    return out


def render_object(name: str, old: Any, new: Any) -> str:
    """A unified diff of two versions of one object (either may be None) as YAML, Secrets masked."""
    old, new = mask_pair(old, new)
    old, new = without_applied_copy(old), without_applied_copy(new)
    lines = difflib.unified_diff(_dump(old), _dump(new), f"LIVE/{name}", f"MERGED/{name}", n=3, lineterm="")
    return "\n".join(lines)


def _safe(d: ObjectDiff) -> str:
    old = _load(d.old) if d.old is not None else _UNREADABLE
    new = _load(d.new) if d.new is not None else _UNREADABLE
    if old is _UNREADABLE or new is _UNREADABLE:
        if d.is_secret:
            return f"--- LIVE/{d.name}\n+++ MERGED/{d.name}\n(a Secret differs; its values are not shown)"
        return d.raw
    return render_object(d.name, old, new)


def show(text: str) -> str:
    """``kubectl diff`` output as nr prints it: per object, every Secret masked by structure."""
    return "\n".join(s for s in (_safe(d) for d in parse(text)) if s) + "\n"


def object_name(obj: dict[str, Any]) -> str:
    """kubectl diff's file name of an object: ``<group.>version.Kind.namespace.name``."""
    group, _, version = str(obj.get("apiVersion", "v1")).rpartition("/")
    meta = obj.get("metadata") or {}
    prefix = f"{group}." if group else ""
    return f"{prefix}{version}.{obj.get('kind')}.{meta.get('namespace', '')}.{meta.get('name')}"


def show_new(objects: Iterable[dict[str, Any]]) -> str:
    """Every object as new (what ``kubectl diff`` would print for objects that do not exist yet)."""
    return "\n".join(render_object(object_name(o), None, o) for o in objects) + "\n"
