"""The k3s play on the operator's machine: the cluster token file and the kubeconfig.

* :func:`load_token` / :func:`store_token`: a generated token lives in ``<inventory>/secrets/k3s_token``
  (0600); it is written once and reused (changing it later takes ``k3s token rotate`` on the cluster).
* :func:`rewrite_kubeconfig` / :func:`merge_kubeconfig` (pure) and :func:`update_kubeconfig`: merge
  the fetched k3s.yaml into the operator's kubeconfig (0600), leaving every other cluster, user and
  context alone, writing only when the content changes.
"""

from __future__ import annotations

import copy
import os
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nr.errors import NrError
from nr.secrets import Secret, SecretRef, write_secret_file

TOKEN_FILE = "secrets/k3s_token"


# -- the token -------------------------------------------------------------------------------------
def token_path(inventory_dir: Path) -> Path:
    return inventory_dir / TOKEN_FILE


def load_token(inventory_dir: Path) -> Secret | None:
    """The token kept in the inventory folder, if there is one (refused if not 0600)."""
    path = token_path(inventory_dir)
    if not path.exists():
        return None
    return SecretRef("file", str(path)).resolve()


def new_token() -> Secret:
    return Secret(secrets.token_hex(32), "generated")


def store_token(inventory_dir: Path, token: Secret) -> Path:
    """Write the token 0600; the secrets folder gets a .gitignore so it is never committed."""
    path = token_path(inventory_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_secret_file(path, token.reveal())
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Written by nr: secrets are never committed.\n*\n", encoding="utf-8")
    return path


# -- kubeconfig ------------------------------------------------------------------------------------
def rewrite_kubeconfig(doc: Mapping[str, Any], server: str, name: str) -> dict[str, Any]:
    """k3s.yaml as fetched (127.0.0.1, everything named ``default``) -> reachable and named ``name``."""
    out = copy.deepcopy(dict(doc))
    renames: dict[str, dict[Any, str]] = {}
    for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        for entry in out.get(section) or []:
            renames.setdefault(section, {})[entry.get("name")] = name
            entry["name"] = name
            if section == "clusters":
                entry.setdefault(inner, {})["server"] = server
    for entry in out.get("contexts") or []:
        ctx = entry.setdefault("context", {})
        ctx["cluster"] = renames.get("clusters", {}).get(ctx.get("cluster"), name)
        ctx["user"] = renames.get("users", {}).get(ctx.get("user"), name)
    out["current-context"] = name
    return out


def merge_kubeconfig(existing: Mapping[str, Any] | None, new: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``existing`` with the cluster, user and context ``name`` taken from ``new`` (pure).

    Every other cluster, user and context is kept as it is; current-context is set only when the
    existing file has none. The same cluster moved (same CA) or rebuilt at the same address is
    replaced; a cluster ``name`` with another server AND another CA is another site with the same
    name: ValueError, nothing is replaced.
    """

    def entry(doc: Mapping[str, Any]) -> tuple[str, str] | None:
        found = [e.get("cluster") or {} for e in doc.get("clusters") or [] if e.get("name") == name]
        return (
            (str(found[0].get("server")), str(found[0].get("certificate-authority-data"))) if found else None
        )

    old, now = entry(existing or {}), entry(new)
    if old and now and old[0] != now[0] and old[1] != now[1]:
        raise ValueError(
            f"it already has a cluster named {name!r} for another cluster ({old[0]}, another CA): give this "
            "site another data.site_name, or remove that entry"
        )
    out: dict[str, Any] = copy.deepcopy(dict(existing or {}))
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    out.setdefault("preferences", {})
    for section in ("clusters", "users", "contexts"):
        entries = [e for e in out.get(section) or [] if e.get("name") != name]
        entries += [copy.deepcopy(e) for e in new.get(section) or [] if e.get("name") == name]
        out[section] = entries
    if not out.get("current-context"):
        out["current-context"] = name
    return out


# -- the kubeconfig file --------------------------------------------------------------------------------------
def kubeconfig_target(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the operator's kubeconfig is: ``explicit``, else $KUBECONFIG's first path, else ~/.kube/config."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ if env is None else env
    for part in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if part.strip():
            return Path(part.strip()).expanduser()
    return Path("~/.kube/config").expanduser()


def use_hint(path: Path, context: str, env: Mapping[str, str] | None = None) -> str:
    """How to use a kubeconfig that is not the one kubectl reads by default ("" when it is)."""
    if path.expanduser().resolve() == kubeconfig_target(None, env).resolve():
        return ""
    return f"; use it: KUBECONFIG={shlex.quote(str(path))} kubectl --context {shlex.quote(context)} get nodes"


def update_kubeconfig(path: Path, new: Mapping[str, Any], name: str) -> bool:
    """Merge context ``name`` of ``new`` into the kubeconfig at ``path``; True when the file changed."""
    old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        existing = yaml.safe_load(old_text) if old_text.strip() else {}
    except yaml.YAMLError as exc:
        raise NrError(f"{path}: not a valid kubeconfig ({exc}); not touching it") from None
    if not isinstance(existing, dict):
        raise NrError(f"{path}: not a kubeconfig mapping; not touching it")
    try:
        merged = merge_kubeconfig(existing, new, name)
    except ValueError as exc:
        raise NrError(f"kubeconfig {path}: {exc}") from None
    if merged == existing and old_text and (path.stat().st_mode & 0o077) == 0:
        return False
    text = yaml.safe_dump(merged, default_flow_style=False, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.nr-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True
