"""`nr backup` and `nr restore` as the engine runs them, with stand-in components (no hosts are touched:
their host functions write and read files only): exit codes, the partial backup that is never complete,
retention, secrets never in clear, and every reason a restore stops before anything changes."""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from nr.backup import run as backup_run
from nr.backup.api import RestorePlan, Restoring
from nr.backup.folder import Part
from nr.cli import cli
from nr.errors import NrError
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.secrets import Secret

TOKEN = "a-cluster-token-0123456789"
KEY = "a passphrase of more than sixteen"


class Store:
    """A component with data on every host: one file per host; its restore records what it got."""

    name = "store"

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.restored: dict[str, bytes] | None = None
        self.planned = 0

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def apply(self, ctx: PlayContext) -> None: ...

    def check(self, ctx: PlayContext) -> None: ...

    def drift(self, ctx: PlayContext) -> None: ...

    def backup(self, ctx: PlayContext, part: Part) -> Mapping[str, Any]:
        def save(run: HostRun) -> Outcome[None]:
            if run.name == self.fail:
                raise NrError("BGSAVE: disk full")
            part.write(f"{run.name}.dat", f"data of {run.name}".encode())
            return Outcome(summary="saved")

        ctx.run("save", save, hosts=ctx.all_hosts())
        part.secret("token", Secret(TOKEN, "test"), "file:secrets/token", "secrets/token")
        return {"summary": "one file per host", "hosts": [h.name for h in ctx.all_hosts()]}

    def restore_plan(self, ctx: PlayContext, backup: Restoring) -> RestorePlan:
        self.planned += 1
        now = [h.name for h in ctx.all_hosts()]
        if backup.part["hosts"] != now:
            return RestorePlan(
                problems=[f"the backup's hosts {backup.part['hosts']} are not the inventory's {now}"]
            )
        return RestorePlan(lines=[f"{h}: its file comes back" for h in now])

    def restore(self, ctx: PlayContext, backup: Restoring, plan: RestorePlan) -> None:
        self.restored = {h.name: backup.file(f"{h.name}.dat").read_bytes() for h in ctx.all_hosts()}


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    comp = Store()
    monkeypatch.setattr(backup_run, "participants", lambda kind: [comp])
    monkeypatch.setenv("NR_TEST_BACKUP_KEY", KEY)
    return comp


def inventory(folder: Path, hosts: tuple[str, ...] = ("vm1", "vm2")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    docs = {
        "hosts.yaml": {h: {"hostname": f"198.18.0.{11 + i}"} for i, h in enumerate(hosts)},
        "groups.yaml": {},
        "defaults.yaml": {"data": {"site_name": "demo"}},
    }
    for name, doc in docs.items():
        (folder / name).write_text(yaml.safe_dump(doc))
    (folder / "secrets").mkdir(exist_ok=True)
    return folder


def nr(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def backup(inv: Path, dest: Path, *more: str) -> Result:
    return nr("backup", "-i", str(inv), "--dest", str(dest), "--json", *more)


def test_a_backup_holds_each_component_the_inventory_and_a_manifest(tmp_path: Path, store: Store) -> None:
    inv = inventory(tmp_path / "inv")
    res = backup(inv, tmp_path / "b")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)["backup"]
    folder = Path(doc["path"])
    assert doc["complete"] and folder.name.startswith("demo-") and folder.name.endswith("Z")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"store/vm1.dat", "store/vm2.dat", "inventory/hosts.yaml",
                                      "inventory/groups.yaml", "inventory/defaults.yaml"}  # fmt: skip
    assert manifest["components"]["store"]["hosts"] == ["vm1", "vm2"]
    assert manifest["inventory"]["hosts"]["vm2"]["address"] == "198.18.0.12"
    assert not any(p.name == "secrets" for p in folder.rglob("*"))  # the inventory's secrets stay home
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")} <= {0o600, 0o700}


def test_the_text_output_shows_each_hosts_steps_and_the_verdict(tmp_path: Path, store: Store) -> None:
    res = nr("backup", "-i", str(inventory(tmp_path / "inv")), "--dest", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    assert "vm1: store.save" in res.output and "vm2: store.save" in res.output
    assert "BACKUP COMPLETE" in res.output and "failed" not in res.output


def test_a_failing_host_fails_the_backup_names_it_and_leaves_it_partial(tmp_path: Path, store: Store) -> None:
    store.fail = "vm2"
    res = backup(inventory(tmp_path / "inv"), tmp_path / "b")
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["failed_hosts"] == ["vm2"] and not doc["backup"]["complete"]
    folder = Path(doc["backup"]["path"])
    assert folder.name.endswith(".partial")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] is False and "BGSAVE: disk full" in manifest["failed"]["vm2"]
    text = nr("backup", "-i", str(tmp_path / "inv"), "--dest", str(tmp_path / "b"))
    assert text.exit_code == 1 and "BACKUP INCOMPLETE" in text.output and "vm2" in text.output
    refused = nr("restore", str(folder), "-i", str(tmp_path / "inv"), "--yes")
    assert (
        refused.exit_code == 2
        and "an incomplete backup (vm2: store.save: BGSAVE: disk full)" in refused.output
    )
    assert store.restored is None


def test_keep_removes_the_oldest_backups(tmp_path: Path, store: Store) -> None:
    inv = inventory(tmp_path / "inv")
    paths = [
        Path(json.loads(backup(inv, tmp_path / "b", "--keep", "2").output)["backup"]["path"])
        for _ in range(3)
    ]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(p.name for p in paths[1:])
    assert nr("backup", "-i", str(inv), "--keep", "0").exit_code == 2


def test_secret_values_are_never_in_clear_and_only_sealed_with_a_key(tmp_path: Path, store: Store) -> None:
    inv = inventory(tmp_path / "inv")
    plain = Path(json.loads(backup(inv, tmp_path / "plain").output)["backup"]["path"])
    sealed = Path(
        json.loads(backup(inv, tmp_path / "sealed", "--secrets-key", "env:NR_TEST_BACKUP_KEY").output)[
            "backup"
        ]["path"]
    )
    for folder in (plain, sealed):
        assert not [p for p in folder.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
        entry = json.loads((folder / "manifest.json").read_text())["secrets"]["store.token"]
        assert entry["reference"] == "file:secrets/token" and len(entry["fingerprint"]) == 32
    assert not (plain / "secrets.enc").exists() and (sealed / "secrets.enc").exists()
    short = backup(inv, tmp_path / "x", "--secrets-key", "env:NOT_SET_ANYWHERE")
    assert short.exit_code == 2 and "environment variable NOT_SET_ANYWHERE is not set" in short.output


def test_restore_shows_the_plan_asks_and_restores(tmp_path: Path, store: Store) -> None:
    inv = inventory(tmp_path / "inv")
    folder = json.loads(backup(inv, tmp_path / "b").output)["backup"]["path"]
    dry = nr("restore", folder, "-i", str(inv), "--dry-run")
    assert dry.exit_code == 0 and "vm1: its file comes back" in dry.output and "DRY RUN" in dry.output
    assert store.restored is None
    asked = nr("restore", folder, "-i", str(inv))  # no terminal to ask on
    assert asked.exit_code == 2 and "pass --yes" in asked.output and store.restored is None
    done = nr("restore", folder, "-i", str(inv), "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["restore"]["plan"]["store"] == [
        "vm1: its file comes back",
        "vm2: its file comes back",
    ]
    assert store.restored == {"vm1": b"data of vm1", "vm2": b"data of vm2"}


def test_a_modified_file_or_another_inventory_stops_the_restore_before_anything(
    tmp_path: Path, store: Store
) -> None:
    inv = inventory(tmp_path / "inv")
    folder = Path(json.loads(backup(inv, tmp_path / "b").output)["backup"]["path"])
    other = inventory(tmp_path / "other", ("vm1", "vm2", "vm3"))
    res = nr("restore", str(folder), "-i", str(other), "--yes")
    assert (
        res.exit_code == 2
        and "store: the backup's hosts ['vm1', 'vm2'] are not the inventory's" in res.output
    )
    unknown = nr("restore", str(folder), "-i", str(inv), "--only", "nope")
    assert unknown.exit_code == 2 and "--only nope" in unknown.output
    (folder / "store" / "vm2.dat").write_bytes(b"tampered")
    res = nr("restore", str(folder), "-i", str(inv), "--yes")
    assert res.exit_code == 2 and "store/vm2.dat: sha256 differs from the manifest" in res.output
    assert store.restored is None and store.planned == 1  # the damaged backup was refused before planning


def test_secrets_come_back_only_with_the_key_and_only_where_missing(tmp_path: Path, store: Store) -> None:
    inv = inventory(tmp_path / "inv")
    folder = json.loads(backup(inv, tmp_path / "b", "--secrets-key", "env:NR_TEST_BACKUP_KEY").output)[
        "backup"
    ]["path"]
    wrong = nr("restore", folder, "-i", str(inv), "--only", "secrets", "--yes", "--secrets-key", "env:HOME")
    assert wrong.exit_code == 2
    res = nr(
        "restore",
        folder,
        "-i",
        str(inv),
        "--only",
        "secrets",
        "--yes",
        "--secrets-key",
        "env:NR_TEST_BACKUP_KEY",
    )
    assert res.exit_code == 0, res.output
    written = inv / "secrets" / "token"
    assert written.read_text().strip() == TOKEN and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert store.restored is None  # --only secrets restores no component
    again = nr("restore", folder, "-i", str(inv), "--dry-run", "--secrets-key", "env:NR_TEST_BACKUP_KEY")
    assert "already holds the backup's value" in again.output
    assert TOKEN not in res.output + again.output
