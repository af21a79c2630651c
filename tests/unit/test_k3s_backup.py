"""The k3s component's backup and restore against scripted hosts (tests/fakes/remote.py): which datastore
is saved how, what a failure says and where, what the plan refuses (another token, another kind of
datastore, k3s missing), re-created hosts, and the order of the restore on every host."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from nr.backup.api import Restoring
from nr.backup.folder import Backup, Writer
from nr.backup.secretbox import fingerprint
from nr.play import PlayContext
from nr.report import RunReport
from nr.secrets import Secret
from tasks.k3s import backup as k3s_backup
from tasks.k3s import restore as k3s_restore
from tasks.k3s.render import CONFIG
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context
from tests.unit.test_k3s_play import FakeClock

TOKEN = "0123456789abcdef0123456789abcdef"
ENV = "NR_TEST_K3S_TOKEN"
SNAP = "nr-lab-s1-1767225600"


def node_item(name: str, server: bool) -> dict[str, Any]:
    labels = {"node-role.kubernetes.io/control-plane": "true"} if server else {}
    return {"metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1"}}}  # fmt: skip


def deployments(*names: str, ns: str = "kube-system", available: int = 1) -> str:
    items = [{"metadata": {"name": n, "namespace": ns}, "spec": {"replicas": 1}, "status": {"availableReplicas": available}}
             for n in names]  # fmt: skip
    return json.dumps({"items": items})


class Site:
    """Servers and agents, each a ScriptedRemote; ``log`` records what each host was asked to do."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, servers: list[str], agents: list[str], datastore: str
    ) -> None:
        monkeypatch.setenv(ENV, TOKEN)
        self.servers, self.agents, self.datastore = servers, agents, datastore
        self.identity = {n: hashlib.sha256(n.encode()).hexdigest() for n in servers + agents}
        self.running_token = TOKEN
        self.apps_available = 1
        self.remotes = {n: ScriptedRemote(n) for n in servers + agents}
        for name, r in self.remotes.items():
            r.expect(self.facts(name), Reply("sha256sum /etc/rancher/node/password", lambda _s, n=name: self.identity[n], times=None),
                     Reply("systemctl show -p NRestarts", "ActiveState=active\nSubState=running\nNRestarts=0\nNow=100\nUp=100\n", times=None))  # fmt: skip

    def facts(self, name: str) -> Reply:
        nodes = {"items": [node_item(n, n in self.servers) for n in self.servers + self.agents]}
        kube = deployments("coredns", "traefik", "metrics-server", "local-path-provisioner")

        def answer(script: str) -> str:
            config = f"token: {self.running_token}\n" if name in self.servers else None
            outputs = {"datastore": self.datastore, "id": self.identity[name], "version": "k3s version v1.31.4+k3s1",
                       "nodes": json.dumps(nodes), "deploy": kube,
                       "apps": deployments("api", ns="app", available=self.apps_available)}  # fmt: skip
            return facts_reply(
                {CONFIG: config, "/etc/rancher/k3s/k3s.yaml": "apiVersion: v1\n"}, outputs, strict=False
            ).stdout(script)  # type: ignore[operator]

        return Reply('printf "%s end\\n" "$M"', answer, times=None)

    def context(self) -> tuple[PlayContext, RunReport]:
        hosts = {
            s: {"hostname": f"10.0.0.{i + 1}", "groups": ["k3s_servers"]} for i, s in enumerate(self.servers)
        }
        hosts |= {
            a: {"hostname": f"10.0.1.{i + 1}", "groups": ["k3s_agents"]} for i, a in enumerate(self.agents)
        }
        defaults = {"data": {"k3s_token": f"env:{ENV}", "site_name": "lab", "k3s_binary": __file__}}
        return scripted_context(hosts, self.remotes, defaults=defaults, component="k3s")

    def scripts(self, host: str) -> list[str]:
        return [s for s in self.remotes[host].scripts if 'printf "%s end' not in s and "NRestarts" not in s]


def sqlite_file(path: Path) -> bytes:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE kine (name TEXT, value TEXT)")
    con.execute("INSERT INTO kine VALUES ('/registry/x', 'y')")
    con.commit()
    con.close()
    return path.read_bytes()


def staging(remote: ScriptedRemote, content: bytes) -> None:
    def stage(script: str) -> str:
        staged = script.split("cp ", 1)[1].split()[1]
        remote.files[staged] = content
        return f"{hashlib.sha256(content).hexdigest()}\n{len(content)}\n"

    remote.expect(Reply("umask 077", stage), Reply("rm -f .nr-upload-get-", times=None))


def test_one_server_is_copied_with_sqlites_backup_api_and_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1"], ["a1"], "sqlite")
    s1 = site.remotes["s1"]
    s1.expect(Reply("src.backup(dst)"), Reply(f"rm -f {k3s_backup.COPY}"))
    staging(s1, sqlite_file(tmp_path / "x.db"))
    ctx, report = site.context()
    part = Writer(tmp_path / "b").part("k3s")
    doc = k3s_backup.backup(ctx, part)
    assert report.ok, report.failed_reasons
    assert doc["datastore"] == "sqlite" and doc["file"] == "k3s/state.db" and doc["server"] == "s1"
    assert doc["nodes"]["a1"] == {"role": "agent", "password_sha256": site.identity["a1"]}
    entry = part.writer.secrets["k3s.token"]
    assert (
        entry.reference == f"env:{ENV}" and entry.fingerprint == fingerprint(TOKEN) and entry.keep_at is None
    )
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())


def test_a_copy_that_is_not_a_sound_database_fails_the_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1"], [], "sqlite")
    site.remotes["s1"].expect(Reply("src.backup(dst)"), Reply(f"rm -f {k3s_backup.COPY}"))
    staging(site.remotes["s1"], b"not a database at all" * 100)
    ctx, report = site.context()
    k3s_backup.backup(ctx, Writer(tmp_path / "b").part("k3s"))
    assert "is not a sound SQLite database" in report.failed_reasons["s1"]


def test_embedded_etcd_is_saved_with_etcd_snapshot_fetched_and_the_snapshot_deleted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1", "s2", "s3"], [], "etcd")
    s1 = site.remotes["s1"]
    noise = 'time="x" level=warning msg="Unknown flag --node-ip found in config.yaml, skipping"\n'
    s1.expect(Reply("etcd-snapshot save --name nr-lab", stderr=f'{noise}time="x" level=info msg="Snapshot {SNAP} saved."\n'),
              Reply(f"etcd-snapshot delete {SNAP}"))  # fmt: skip
    staging(s1, b'{"stand-in": "etcd snapshot"}')
    ctx, report = site.context()
    doc = k3s_backup.backup(ctx, Writer(tmp_path / "b").part("k3s"))
    assert report.ok and doc["datastore"] == "etcd" and doc["snapshot"] == SNAP
    assert f"/var/lib/rancher/k3s/server/db/snapshots/{SNAP}" in next(
        s for s in s1.scripts if "umask 077" in s
    )
    assert s1.unused() == [] and not site.remotes["s2"].gets  # only the first server saves


def test_a_failing_snapshot_or_a_token_mismatch_fails_and_names_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1", "s2", "s3"], [], "etcd")
    fatal = 'time="x" level=fatal msg="see server log for details: etcd datastore disabled"'
    site.remotes["s1"].expect(Reply("etcd-snapshot save", stderr=fatal, exited=1))
    ctx, report = site.context()
    k3s_backup.backup(ctx, Writer(tmp_path / "b").part("k3s"))
    assert (
        "k3s etcd-snapshot save failed: " in report.failed_reasons["s1"]
        and "etcd datastore disabled" in report.failed_reasons["s1"]
    )
    other = Site(monkeypatch, ["s1"], [], "sqlite")
    other.running_token = "another-token-0123456789"
    ctx, report = other.context()
    k3s_backup.backup(ctx, Writer(tmp_path / "c").part("k3s"))
    assert "s1 runs with another token than the inventory's" in report.failed_reasons["s1"]


def backup_of(tmp_path: Path, part: Mapping[str, Any], token: str = TOKEN) -> Restoring:
    w = Writer(tmp_path / "bk")
    w.write(part["file"], b"snapshot")
    w.part("k3s").secret("token", Secret(token, "t"), f"env:{ENV}")
    manifest = {"files": w.files, "components": {"k3s": dict(part)},
                "secrets": {k: {"reference": e.reference, "fingerprint": e.fingerprint} for k, e in w.secrets.items()}}  # fmt: skip
    return Restoring(Backup(w.root, manifest), "k3s")


def part(site: Site, datastore: str, **more: Any) -> dict[str, Any]:
    nodes = {n: {"role": "server" if n in site.servers else "agent", "password_sha256": site.identity[n]}
             for n in site.servers + site.agents}  # fmt: skip
    file = "k3s/etcd-snapshot" if datastore == "etcd" else "k3s/state.db"
    return {
        "datastore": datastore,
        "file": file,
        "snapshot": SNAP,
        "servers": site.servers,
        "nodes": nodes,
        **more,
    }


def test_the_plan_refuses_another_token_another_datastore_or_no_k3s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1"], ["a1"], "sqlite")
    ctx, _ = site.context()
    plan = k3s_restore.plan(ctx, backup_of(tmp_path, part(site, "sqlite"), token="another-token-987654321"))
    assert any("encrypted with another token than env:NR_TEST_K3S_TOKEN" in p for p in plan.problems)
    plan = k3s_restore.plan(ctx, backup_of(tmp_path, part(site, "etcd", servers=["s1", "s2", "s3"])))
    assert any(
        "the backup holds a etcd datastore; the inventory's 1 server(s) run sqlite" in p
        for p in plan.problems
    )
    site.remotes["s1"].replies.insert(
        0, facts_reply({CONFIG: None}, {"datastore": "none", "id": ""}, times=None)
    )
    plan = k3s_restore.plan(ctx, backup_of(tmp_path, part(site, "sqlite")))
    assert any("k3s is not installed on s1: run `nr run site` first" in p for p in plan.problems)


def test_a_recreated_host_is_named_and_rejoins_with_its_new_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1"], ["a1", "a2"], "sqlite")
    described = part(site, "sqlite")
    described["nodes"]["gone1"] = {"role": "agent", "password_sha256": "x"}  # no longer in the inventory
    backup = backup_of(tmp_path, described)
    site.identity["a2"] = "a-new-host"
    ctx, report = site.context()
    plan = k3s_restore.plan(ctx, backup)
    assert not plan.problems and plan.data == ["a2"]
    assert "agents untouched: a1" in plan.lines and any(
        "re-created hosts" in line and "a2" in line for line in plan.lines
    )
    gone = "node gone1 of the backup is not in the inventory: it stays NotReady"
    assert any(line.startswith(gone) for line in plan.lines)
    s1 = site.remotes["s1"]
    s1.expect(
        Reply("set -e", times=None),
        Reply("delete secret a2.node-password.k3s", 'secret "a2.node-password.k3s" deleted'),
    )
    site.remotes["a2"].expect(Reply("systemctl restart k3s-agent"))
    k3s_restore.restore(ctx, backup, plan, FakeClock())
    assert report.ok, report.failed_reasons
    first = site.scripts("s1")
    upload = next(i for i, s in enumerate(first) if ".nr-restore-state.db" in s and "install" in s)
    swap = next(i for i, s in enumerate(first) if "state.db.nr-old-" in s)
    forget = next(i for i, s in enumerate(first) if "a2.node-password.k3s" in s)
    assert upload < swap < forget
    assert "systemctl stop k3s" in first[swap] and first[swap].index("systemctl stop k3s") < first[
        swap
    ].index("systemctl start k3s")
    assert site.scripts("a1") == [] and len(site.scripts("a2")) == 1  # an unchanged agent is untouched


def test_embedded_etcd_resets_the_first_server_then_peers_rejoin_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1", "s2", "s3"], [], "etcd")
    backup = backup_of(tmp_path, part(site, "etcd"))
    ctx, report = site.context()
    plan = k3s_restore.plan(ctx, backup)
    assert not plan.problems, plan.problems
    order: list[str] = []
    for name, r in site.remotes.items():
        r.expect(Reply("--cluster-reset", lambda s: order.append("reset") or "", stderr='msg="Managed etcd cluster membership has been reset, restart without --cluster-reset flag now."'),
                 Reply("set -e", lambda s, n=name: order.append(f"{n}:{'clear+start' if 'rm -rf /var/lib/rancher/k3s/server/db' in s else 'stop' if 'systemctl stop k3s' in s else 'start' if 'systemctl start k3s' in s else 'upload'}") or "", times=None),
                 Reply("rm -f /var/lib/rancher/k3s/server/db/snapshots/nr-restore-", times=None))  # fmt: skip
    k3s_restore.restore(ctx, backup, plan, FakeClock())
    assert report.ok, report.failed_reasons
    assert order[0] == "s1:upload" and {order[1], order[2], order[3]} == {"s1:stop", "s2:stop", "s3:stop"}
    assert order[4:] == ["reset", "s1:start", "s2:clear+start", "s3:clear+start"]


def test_a_failed_reset_stops_the_restore_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = Site(monkeypatch, ["s1", "s2", "s3"], [], "etcd")
    backup = backup_of(tmp_path, part(site, "etcd"))
    ctx, report = site.context()
    plan = k3s_restore.plan(ctx, backup)
    fatal = 'level=fatal msg="starting kubernetes: preparing server: start managed database: etcd: snapshot path does not exist: /x"'
    for r in site.remotes.values():
        r.expect(Reply("--cluster-reset", stderr=fatal, exited=1), Reply("set -e", times=None))
    with pytest.raises(Exception, match="the restore stopped at step reset: s1 failed"):
        k3s_restore.restore(ctx, backup, plan, FakeClock())
    assert "snapshot path does not exist" in report.failed_reasons["s1"]
    assert not any("systemctl start k3s" in s for r in site.remotes.values() for s in r.scripts)


def test_deployments_that_do_not_come_back_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    site = Site(monkeypatch, ["s1"], [], "sqlite")
    backup = backup_of(tmp_path, part(site, "sqlite"))
    ctx, report = site.context()
    plan = k3s_restore.plan(ctx, backup)
    site.apps_available = 0
    site.remotes["s1"].expect(Reply("set -e", times=None))
    with pytest.raises(Exception, match="the restore stopped at step apps"):
        k3s_restore.restore(ctx, backup, plan, FakeClock())
    assert (
        "Deployments not available after the restore: app/api: 0/1 available" in report.failed_reasons["s1"]
    )
