"""`nr backup` / `nr restore` where more than data is lost, on the lab (after test_06_backup.py):

1. the embedded-etcd path: the k3s cluster rebuilt with three servers, backed up (`k3s etcd-snapshot
   save`), an object deleted, restored by `--cluster-reset-restore-path` on the first server, the peers
   rejoined with their datastore cleared;
2. the whole site (keys written through the cluster, reservations through the app) restored onto a
   freshly created lab: new containers (new host keys, node passwords, empty disks), the same inventory,
   `nr run site`, then `nr restore`.

This module builds the site from nothing once (2), which is what makes it slow (minutes): it runs after
the modules that share the converged site, and leaves the site converged and restored for the next.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.lab.backup_helpers import (
    KEY_ENV,
    KEYS,
    KUBECTL,
    PASSPHRASE,
    adapter,
    lookup,
    missing_keys,
    write_data,
)
from tests.lab.conftest import LabEnv

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@dataclass(frozen=True)
class Backed:
    env: LabEnv
    path: Path  # the backup of the whole site, with its secrets sealed
    reservations: list[str]


@pytest.fixture(scope="module")
def backed_up(lab: LabEnv, images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Backed:
    res = lab.nr("run", "site", "--json", timeout=1800)  # converged already by the earlier modules
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    os.environ[KEY_ENV] = PASSPHRASE
    ids = write_data(lab)
    dest = tmp_path_factory.mktemp("backups")
    made = lab.nr(
        "backup", "--dest", str(dest), "--secrets-key", f"env:{KEY_ENV}", "--json", "-i", str(lab.inventory)
    )
    assert made.code == 0, made.stdout[-4000:] + made.stderr[-2000:]
    return Backed(lab, Path(made.json["backup"]["path"]), ids)


def test_embedded_etcd_is_restored_by_cluster_reset_and_the_peers_rejoin(
    backed_up: Backed, tmp_path: Path
) -> None:
    site = backed_up.env
    ha = site.state_dir / "inventory-ha"
    shutil.rmtree(ha, ignore_errors=True)
    shutil.copytree(site.inventory, ha, ignore=shutil.ignore_patterns(".nr.lock"))
    hosts = yaml.safe_load((ha / "hosts.yaml").read_text())
    for h in hosts.values():
        h["groups"] = ["k3s_servers" if g == "k3s_agents" else g for g in h["groups"]]
    (ha / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    assert site.nr("run", "k3s-reset").code == 0
    made = site.nr("run", "k3s", "-i", str(ha), timeout=1200)
    assert made.code == 0, made.stdout[-3000:]
    first = site.hosts[0]
    site.exec(first, f"{KUBECTL} apply -f - <<'EOF'\n" + json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept", "namespace": "default"}, "data": {"a": "1"}}) + "\nEOF\n")  # fmt: skip
    res = site.nr("backup", "--only", "k3s", "--dest", str(tmp_path), "--json", "-i", str(ha))
    assert res.code == 0, res.stdout[-3000:]
    part = json.loads((Path(res.json["backup"]["path"]) / "manifest.json").read_text())["components"]["k3s"]
    assert part["datastore"] == "etcd" and part["snapshot"].startswith(f"nr-lab-{first}-")
    site.exec(first, f"{KUBECTL} delete configmap kept")
    restored = site.nr("restore", res.json["backup"]["path"], "--yes", "--json", "-i", str(ha), timeout=1200)
    assert restored.code == 0, restored.stdout[-4000:]
    steps = [(r["task"], r["host"]) for r in restored.json["results"]]
    assert (
        steps.index(("k3s.reset", first))
        < steps.index(("k3s.start", first))
        < steps.index(("k3s.rejoin", site.hosts[1]))
    )
    assert json.loads(site.exec(first, f"{KUBECTL} get configmap kept -o json"))["data"] == {"a": "1"}
    assert "etcd-old-" in site.exec(first, "ls /var/lib/rancher/k3s/server/db")
    assert site.nr("drift", "k3s", "-i", str(ha)).code == 0


def test_the_site_is_restored_onto_a_fresh_lab(backed_up: Backed, tmp_path: Path) -> None:
    """New containers (new host keys, node passwords, empty disks), the same inventory (its folder kept
    aside, as an operator keeps it in git with its secrets in a vault)."""
    site, backup = backed_up.env, backed_up.path
    kept = tmp_path / "inventory"
    shutil.copytree(site.inventory, kept, ignore=shutil.ignore_patterns(".nr.lock"))
    site.lab.down()
    site.lab.up(3)
    shutil.copytree(kept, site.inventory, dirs_exist_ok=True)
    built = site.nr("run", "site", "--json", timeout=2400)
    assert built.code == 0, built.stdout[-5000:] + built.stderr[-2000:]
    assert len(missing_keys(site)) == KEYS
    res = site.nr("restore", str(backup), "--yes", "--json", "-i", str(site.inventory), timeout=1200)
    assert res.code == 0, res.stdout[-5000:] + res.stderr[-2000:]
    plan = res.json["restore"]["plan"]["k3s"]
    assert any("re-created hosts" in line for line in plan), plan
    assert missing_keys(site) == []
    assert all(lookup(adapter(site), rid) for rid in backed_up.reservations)
    assert site.nr("check").code == 0
    assert site.nr("drift").code == 0
