"""`nr backup` and `nr restore` of the whole site on the lab (the site of test_05: base, redis, k3s with the
stand-in running the app's pods on the Docker socket, deploy, checks), end to end:

1. 10,000 keys written through the cluster and reservations created through the app; a backup taken
   while a client keeps writing (no write fails; its latency with and without the backup is printed);
   the folder 0700, its files 0600, no secret in it in clear;
2. the data destroyed (FLUSHALL on every master, the app's Deployments deleted), the backup restored,
   every key and reservation read back, nothing left as drift;
3. a damaged backup, and backups that do not fit the site (fewer shards, another slot split, another
   k3s token), refused with exit 2 and why, before anything changes.

The embedded-etcd path and a restore onto a site rebuilt from nothing: test_07_backup_rebuild.py.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from tests.lab.backup_helpers import (
    KEY_ENV,
    KEYS,
    KUBECTL,
    PASSPHRASE,
    RESERVATIONS,
    LatencyWriter,
    adapter,
    client,
    lookup,
    missing_keys,
    password,
    write_data,
)
from tests.lab.conftest import LabEnv

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@dataclass
class State:
    reservations: list[str] = field(default_factory=list)
    backup: Path | None = None


STATE = State()


@pytest.fixture(scope="module")
def site(lab: LabEnv, images: list[str]) -> LabEnv:
    res = lab.nr("run", "site", "--json", timeout=1800)  # converged already after test_05: a no-op then
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    os.environ[KEY_ENV] = PASSPHRASE
    return lab


def test_a_backup_under_load_fails_no_write_and_holds_no_secret(
    site: LabEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    STATE.reservations = write_data(site)
    dest = tmp_path_factory.mktemp("backups")
    with LatencyWriter(site) as idle:
        time.sleep(8)
    with LatencyWriter(site) as busy:
        res = site.nr(
            "backup",
            "--dest",
            str(dest),
            "--secrets-key",
            f"env:{KEY_ENV}",
            "--json",
            "-i",
            str(site.inventory),
        )
    print(
        f"\nclient writes without a backup: {idle.figures()}\nclient writes during nr backup: {busy.figures()}"
    )
    assert res.code == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert busy.errors == [] and idle.errors == [], busy.errors[:3]
    doc = res.json["backup"]
    assert doc["complete"]
    folder = STATE.backup = Path(doc["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    shards = manifest["components"]["redis"]["shards"]
    assert len(shards) == 3 and all(s["saved_on"]["role"] == "replica" for s in shards)
    assert sum(s["keys"] for s in shards) >= KEYS + RESERVATIONS
    assert manifest["components"]["k3s"]["datastore"] == "sqlite"
    assert {oct(p.stat().st_mode & 0o777) for p in folder.rglob("*")} <= {"0o600", "0o700"}
    token = (site.inventory / "secrets" / "k3s_token").read_text().strip()
    blob = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for secret in (password(site), token):
        for form in (secret.encode(), base64.b64encode(secret.encode())):
            assert form not in blob


def test_destroyed_data_comes_back_from_the_backup(site: LabEnv) -> None:
    assert STATE.backup is not None
    rc = client(site)
    try:
        rc.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        rc.close()
    first = site.hosts[0]
    for name in ("aeroalpes", "aeroalpes-adapter"):
        site.exec(first, f"{KUBECTL} -n aeroalpes delete deployment {name}")
    assert len(missing_keys(site)) == KEYS
    dry = site.nr("restore", str(STATE.backup), "--dry-run", "-i", str(site.inventory))
    assert dry.code == 0 and "shard 1:" in dry.stdout and "DRY RUN" in dry.stdout, dry.stdout + dry.stderr
    t0 = time.monotonic()
    res = site.nr("restore", str(STATE.backup), "--yes", "--json", "-i", str(site.inventory), timeout=1200)
    print(f"\nnr restore (Redis and k3s): {time.monotonic() - t0:.1f} s")
    assert res.code == 0, res.stdout[-5000:] + res.stderr[-2000:]
    assert missing_keys(site) == []
    assert all(lookup(adapter(site), rid) for rid in STATE.reservations)
    drift = site.nr("drift", "--json")
    assert drift.code == 0, drift.stdout[-3000:]


def test_a_damaged_backup_is_refused_before_anything_changes(site: LabEnv, tmp_path: Path) -> None:
    assert STATE.backup is not None
    copy = tmp_path / STATE.backup.name
    shutil.copytree(STATE.backup, copy)
    shard = copy / "redis" / "shard-2.rdb"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    res = site.nr("restore", str(copy), "--yes", "-i", str(site.inventory))
    assert res.code == 2 and "redis/shard-2.rdb: sha256 differs from the manifest" in res.stderr
    assert missing_keys(site) == []


def _other_site(folder: Path, edit: str) -> None:
    """Make ``folder`` (a copy of the backup) the backup of a site that does not fit this one."""
    path = folder / "manifest.json"
    doc = json.loads(path.read_text())
    shards = doc["components"]["redis"]["shards"]
    if edit == "fewer shards":
        del shards[-1]
    else:  # another split of the slots: shard 1 ends one slot earlier, shard 2 starts one earlier
        shards[0]["ranges"][-1][1] -= 1
        shards[1]["ranges"][0][0] -= 1
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ("fewer shards", "the backup has 2 shard(s), the cluster 3"),
        ("another slot split", "shard 1 (slots"),
        ("another token", "the backup's datastore is encrypted with another token than"),
    ],
)
def test_a_backup_that_does_not_fit_the_site_is_refused_naming_why(
    site: LabEnv, tmp_path: Path, edit: str, why: str
) -> None:
    """The restore's plan reads the live cluster (its masters' slots, the inventory's token) and refuses,
    exit 2, before anything changes."""
    assert STATE.backup is not None
    copy = tmp_path / STATE.backup.name
    shutil.copytree(STATE.backup, copy)
    inventory = site.state_dir / "inventory-unfit"  # beside the lab's: it names ../secrets, ../id_ed25519
    shutil.rmtree(inventory, ignore_errors=True)
    shutil.copytree(site.inventory, inventory, ignore=shutil.ignore_patterns(".nr.lock"))
    if edit == "another token":
        token = inventory / "secrets" / "k3s_token"
        token.write_text("K10another-token-than-the-backups\n")
        token.chmod(0o600)
    else:
        _other_site(copy, edit)
    res = site.nr("restore", str(copy), "--yes", "-i", str(inventory))
    assert res.code == 2 and why in res.stderr, res.stdout[-2000:] + res.stderr[-2000:]
    assert missing_keys(site) == []
