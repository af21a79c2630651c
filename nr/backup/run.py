"""``nr backup`` and ``nr restore`` over the components of the site play (the engine names none).

Backup: a new folder (:mod:`nr.backup.folder`), the inventory's files, each component's ``backup``
(progress per host, failures recorded like a run's), the secrets file when a key was given, the
manifest, then the rename that marks it complete and the retention. Restore: the backup checked
(complete, every sha256), each component's read-only ``restore_plan`` (any problem stops everything
before a host is touched), the plan shown, then the secrets written back and each component's
``restore``, in site order; a component that fails stops the ones after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nornir.core import Nornir
from rich.console import Console

from nr.backup.api import BacksUp, RestorePlan, Restores, Restoring
from nr.backup.folder import (
    SECRETS_FILE,
    Backup,
    BackupError,
    Writer,
    manifest_doc,
    new_folder,
    prune,
    write_manifest,
)
from nr.backup.secretbox import fingerprint, seal, unseal
from nr.play import Component, PlayContext, host_groups
from nr.registry import registry
from nr.report import RunReport
from nr.runner import execute
from nr.secrets import Secret, write_secret_file

DEFAULT_SITE = "nr"
SECRETS_STEP = "secrets"  # --only secrets: the encrypted secrets only (to rebuild a site from scratch)


def site_name(ctx: PlayContext) -> str:
    hosts = ctx.all_hosts()
    return str((hosts[0].get("site_name") if hosts else None) or DEFAULT_SITE)


def participants(kind: type) -> list[Component]:
    """The components of the site play that implement ``kind`` (BacksUp or Restores), in order."""
    reg = registry()
    comps = [reg.component(n) for n in reg.default_play]
    return [c for c in comps if isinstance(c, kind)]


def inventory_summary(nr: Nornir) -> dict[str, Any]:
    return {
        name: {"address": str(h.hostname or ""), "groups": sorted(host_groups(h))}
        for name, h in nr.inventory.hosts.items()
    }


def copy_inventory(folder: Path, writer: Writer) -> list[str]:
    """The inventory's own files (YAML and known_hosts at its top level; never its secrets folder)."""
    names = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.is_file() and not p.is_symlink() and (p.suffix in (".yaml", ".yml") or p.name == "known_hosts"):
            writer.write(f"inventory/{p.name}", p.read_bytes())
            names.append(f"inventory/{p.name}")
    return names


@dataclass
class BackupResult:
    path: Path
    complete: bool
    seconds: float
    files: int
    size: int
    removed: list[Path] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "complete": self.complete,
            "seconds": round(self.seconds, 2),
            "files": self.files,
            "bytes": self.size,
            "removed": [str(p) for p in self.removed],
            "components": self.components,
        }


@dataclass(frozen=True)
class BackupRequest:
    dest: Path
    keep: int | None
    key: Secret | None
    only: Sequence[str] = ()


def run_backup(
    nr: Nornir, ctx: PlayContext, report: RunReport, comps: list[Component], req: BackupRequest, err: Console
) -> tuple[BackupResult, dict[str, dict[str, Any]]]:
    t0 = time.time()
    site = site_name(ctx)
    partial, final = new_folder(req.dest.expanduser(), site, t0)
    writer = Writer(partial)
    inv_files = copy_inventory(ctx.inventory_dir, writer)
    parts: dict[str, Any] = {}

    def action(c: Component, cctx: PlayContext) -> None:
        assert isinstance(c, BacksUp)
        parts[c.name] = dict(c.backup(cctx, writer.part(c.name)))

    stats = execute(nr, ctx, report, comps, action, err)
    complete = report.ok and set(parts) == {c.name for c in comps}
    if req.key is not None and writer.values:
        writer.write(SECRETS_FILE, seal({k: v.reveal() for k, v in writer.values.items()}, req.key))
    failed = {**report.failed_reasons, **dict(e.partition(": ")[::2] for e in report.errors)}
    if report.interrupted:
        failed["interrupted"] = "Ctrl-C"
    doc = manifest_doc(
        writer,
        site=site,
        created=t0,
        complete=complete,
        seconds=round(time.time() - t0, 2),
        inventory={"path": str(ctx.inventory_dir), "files": inv_files, "hosts": inventory_summary(nr)},
        secrets_file=SECRETS_FILE if SECRETS_FILE in writer.files else None,
        components=parts,
        **({"failed": failed} if not complete else {}),
    )
    write_manifest(partial, doc)
    path, removed = partial, []
    if complete:
        partial.rename(final)
        path = final
        removed = prune(final.parent, site, req.keep) if req.keep else []
    size = sum(int(m["size"]) for m in writer.files.values())
    summary = {name: part.get("summary", "") for name, part in parts.items()}
    return BackupResult(path, complete, time.time() - t0, len(writer.files), size, removed, summary), stats


# -- restore -------------------------------------------------------------------------------------------
@dataclass
class SecretWrite:
    path: Path
    value: str = field(repr=False)


def plan_secrets(
    backup: Backup, values: Mapping[str, str], inventory: Path
) -> tuple[list[str], list[SecretWrite]]:
    """What the secrets step does: write each secret the inventory keeps in a file it lacks (0600)."""
    lines: list[str] = []
    writes: list[SecretWrite] = []
    if not values:  # no key given: the inventory's secrets are used (components compare fingerprints)
        return lines, writes
    for key, entry in (backup.manifest.get("secrets") or {}).items():
        where = entry.get("keep_at")
        value = values.get(key)
        if value is None:
            lines.append(
                f"  {key}: not in the secrets file (the inventory's {entry.get('reference')} is used)"
            )
            continue
        if not where:
            lines.append(f"  {key}: {entry.get('reference')} is not a file nr writes: set it from your vault")
            continue
        path = (inventory / where).resolve()
        if not path.exists():
            lines.append(f"  + {key}: write {path} (0600) from the backup")
            writes.append(SecretWrite(path, value))
        elif fingerprint(path.read_text(encoding="utf-8").rstrip("\r\n")) == entry.get("fingerprint"):
            lines.append(f"  = {key}: {path} already holds the backup's value")
        else:
            lines.append(f"  ! {key}: {path} holds another value than the backup's; it is left as it is")
    return lines, writes


def write_secrets(writes: Sequence[SecretWrite]) -> None:
    for w in writes:
        w.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret_file(w.path, w.value)


def open_values(backup: Backup, key: Secret | None) -> dict[str, str]:
    """The secrets file's values (empty without a key); a key given for a backup without one is refused."""
    if key is None:
        return {}
    name = backup.manifest.get("secrets_file")
    if not name:
        raise BackupError(f"{backup.root}: --secrets-key given, but this backup has no {SECRETS_FILE}")
    return unseal(backup.file(str(name)).read_bytes(), key, str(backup.root / str(name)))


@dataclass
class RestoreSelection:
    comps: list[Component]
    plans: dict[str, RestorePlan]
    views: dict[str, Restoring]
    secret_lines: list[str]
    writes: list[SecretWrite]

    def problems(self) -> list[str]:
        return [f"{name}: {p}" for name, plan in self.plans.items() for p in plan.problems]

    def lines(self) -> dict[str, list[str]]:
        out = {"secrets": self.secret_lines} if self.secret_lines else {}
        return out | {name: plan.lines for name, plan in self.plans.items()}


def select_restore(backup: Backup, only: str | None) -> tuple[list[Component], list[str]]:
    """The components to restore (in the backup, with a restore method), or the problems (exit 2)."""
    comps = [c for c in participants(Restores) if c.name in backup.components]
    names = [c.name for c in comps]
    if only is None or only == SECRETS_STEP:
        return ([] if only == SECRETS_STEP else comps), []
    if only not in names:
        known = ", ".join([*names, SECRETS_STEP]) or SECRETS_STEP
        return [], [f"--only {only}: this backup has no part to restore by that name (known: {known})"]
    return [c for c in comps if c.name == only], []


def plan_restore(
    ctx: PlayContext, backup: Backup, comps: list[Component], values: Mapping[str, str]
) -> RestoreSelection:
    plans: dict[str, RestorePlan] = {}
    views: dict[str, Restoring] = {}
    for c in comps:
        assert isinstance(c, Restores)
        views[c.name] = Restoring(backup, c.name, values)
        plans[c.name] = c.restore_plan(ctx.for_component(c.name), views[c.name])
    lines, writes = plan_secrets(backup, values, ctx.inventory_dir)
    return RestoreSelection(comps, plans, views, lines, writes)


def run_restore(
    nr: Nornir, ctx: PlayContext, report: RunReport, sel: RestoreSelection, err: Console
) -> dict[str, dict[str, Any]]:
    write_secrets(sel.writes)
    for w in sel.writes:
        ctx.note(f"wrote {w.path} (0600) from the backup's secrets file")

    def action(c: Component, cctx: PlayContext) -> None:
        assert isinstance(c, Restores)
        c.restore(cctx, sel.views[c.name], sel.plans[c.name])

    return execute(nr, ctx, report, sel.comps, action, err)


def describe(backup: Backup) -> str:
    m = backup.manifest
    return f"{backup.root.name} (site {m.get('site')}, taken {m.get('created')} by nr {m.get('nr_version')})"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
