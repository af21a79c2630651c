"""The k3s component's part of ``nr restore``: the datastore back on the first server, the rest rejoins.

Plan (read-only): k3s must be installed (on a new site: ``nr run site`` first, with the backup's token:
``nr restore --only secrets``), with the same kind of datastore as the backup (embedded etcd with
several servers, SQLite with one), and the inventory's token must be the one the backup's datastore is
encrypted with (compared by fingerprint). Each node's identity (its node password) is compared with the
backup's: a re-created host is named, and handled below.

Embedded etcd (docs cli/etcd-snapshot.md, "Multiple Servers"):

1. the snapshot goes to the first server; k3s stops on every server;
2. ``k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>`` on the first server: it
   restores, keeps itself as the only etcd member, logs "Managed etcd cluster membership has been
   reset, restart without --cluster-reset flag now" and exits; nr checks the exit and that line;
3. k3s starts there (its next start clears the reset flag and its own node-password secret);
4. every other server, one at a time: its ``/var/lib/rancher/k3s/server/db`` removed, k3s started, Ready.

SQLite (docs datastore/backup-restore.md): k3s stops, ``state.db`` (with its -wal/-shm) is moved aside
to ``state.db.nr-old-<time>``, the copy put in its place (0600), k3s starts.

Then: the node-password secrets of re-created hosts are deleted and their k3s restarted (they join with
their new password); agents of unchanged hosts are untouched. nr waits (bounded) until every node is
Ready, the packaged kube-system deployments are available, and so is every Deployment the restored
datastore holds (the app comes back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from shlex import quote
from typing import Any

from nornir.core.inventory import Host

from nr.backup.api import RestorePlan, Restoring
from nr.backup.folder import stamp
from nr.backup.secretbox import fingerprint
from nr.changes import Change
from nr.errors import NrError
from nr.facts import FileState, gather
from nr.ops import kubectl
from nr.ops.files import plan_upload
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.transport import CommandFailed
from tasks.k3s.backup import DATASTORE_CMD, DB_DIR, IDENTITY_CMD, SNAPSHOTS, STATE_DB, token_source
from tasks.k3s.contract import BINARY, KUBECTL
from tasks.k3s.prepare import cluster_of, ready_timeout
from tasks.k3s.render import CONFIG, secrets_in_config
from tasks.k3s.spec import ClusterSpec, NodeSpec
from tasks.k3s.status import ExpectedNode
from tasks.k3s.wait import Clock, Waiter

RESET_DONE = "restart without --cluster-reset flag now"
RESET_TIMEOUT = 900.0
APPS_CMD = kubectl.get_command(KUBECTL, "deployments") + " -A"
RESTORED_DB = f"{DB_DIR}/.nr-restore-state.db"


@dataclass
class Facts:
    datastore: str = "none"
    installed: bool = False
    running_token: str | None = field(default=None, repr=False)
    identity: str = ""


def _facts(ctx: PlayContext, node: NodeSpec) -> Facts:
    f = gather(
        ctx.remote(node.name), files=[CONFIG], commands={"datastore": DATASTORE_CMD, "id": IDENTITY_CMD}
    )
    tokens = secrets_in_config(f.file(CONFIG).text)
    return Facts(
        f.out("datastore").strip(), f.file(CONFIG).exists, tokens[0] if tokens else None, f.out("id").strip()
    )


def _token_problems(
    ctx: PlayContext, backup: Restoring, cluster: ClusterSpec, hosts: Mapping[str, Host], first: Facts
) -> list[str]:
    entry = backup.secret_entry("token") or {}
    token, reference, _ = token_source(ctx, hosts[cluster.first.name])
    if token is None:
        token = backup.secret("token")
        reference = "the backup's secrets file"
    if token is None:
        return [f"no k3s token: the inventory keeps none; restore it first (`nr restore {backup.backup.root} "
                "--secrets-key ... --only secrets`) or set data.k3s_token"]  # fmt: skip
    problems = []
    if fingerprint(token.reveal()) != entry.get("fingerprint"):
        problems.append(f"the backup's datastore is encrypted with another token than {reference}; set "
                        f"data.k3s_token to the backup's ({entry.get('reference')})")  # fmt: skip
    if first.running_token is not None and first.running_token != token.reveal():
        problems.append(
            f"{cluster.first.name} runs with another token than {reference}: run `nr run k3s` first"
        )
    return problems


def plan(ctx: PlayContext, backup: Restoring) -> RestorePlan:
    part = backup.part
    found = cluster_of(ctx)
    if found is None or not part.get("datastore"):
        return RestorePlan(problems=["the backup or the inventory has no k3s cluster"])
    cluster, hosts = found
    facts = {n.name: _facts(ctx, n) for n in cluster.nodes}
    first = facts[cluster.first.name]
    want = "etcd" if cluster.ha else "sqlite"
    problems = []
    if not first.installed:
        problems.append(
            f"k3s is not installed on {cluster.first.name}: run `{ctx.fix_command('site')}` first"
        )
    if part["datastore"] != want:
        problems.append(f"the backup holds a {part['datastore']} datastore; the inventory's {len(cluster.servers)} "
                        f"server(s) run {want}: restore onto as many servers as the backup had "
                        f"({len(part.get('servers') or [])})")  # fmt: skip
    problems += _token_problems(ctx, backup, cluster, hosts, first)
    if problems:
        return RestorePlan(problems=problems)
    old = part.get("nodes") or {}
    renewed = [
        n.name
        for n in cluster.nodes
        if n.name in old and facts[n.name].identity != old[n.name]["password_sha256"]
    ]
    return RestorePlan(lines=_lines(cluster, part, renewed, [n for n in old if n not in {x.name for x in cluster.nodes}]),
                       data=renewed)  # fmt: skip


def _lines(cluster: ClusterSpec, part: Mapping[str, Any], renewed: list[str], gone: list[str]) -> list[str]:
    first, others = cluster.first.name, [n.name for n in cluster.servers[1:]]
    if part["datastore"] == "etcd":
        lines = [
            f"k3s stops on every server ({', '.join(n.name for n in cluster.servers)})",
            f"{first}: k3s server --cluster-reset --cluster-reset-restore-path=<the backup's snapshot "
            f"{part.get('snapshot')}>, then k3s starts",
            *(
                [f"{', '.join(others)}: {DB_DIR} removed, k3s started, one at a time (each rejoins)"]
                if others
                else []
            ),
        ]
    else:
        lines = [
            f"{first}: k3s stops, {STATE_DB} is moved aside and replaced by the backup's copy, k3s starts"
        ]
    agents = [n.name for n in cluster.agents if n.name not in renewed]
    if agents:
        lines.append(f"agents untouched: {', '.join(agents)}")
    if renewed:
        lines.append(f"re-created hosts (their node password is not the backup's): {', '.join(renewed)}: their "
                     "node-password secret is deleted and their k3s restarted after the restore")  # fmt: skip
    lines += [
        f"node {n} of the backup is not in the inventory: it stays NotReady (`{KUBECTL} delete node {n}`)"
        for n in gone
    ]
    lines.append("then: every node Ready, kube-system and every restored Deployment available")
    return lines


# -- restore -------------------------------------------------------------------------------------------
def _fail(ctx: PlayContext, step: str) -> None:
    failed = [h.name for h in ctx.all_hosts() if ctx.failed(h)]
    if failed:
        raise NrError(f"the restore stopped at step {step}: {', '.join(failed)} failed (see above)")


def _systemctl(verb: str, unit: str, before: str = "") -> Change:
    return Change(
        f"service {unit}", verb, "", f"{before}systemctl {verb} {quote(unit)}", f"~ {verb} {unit}\n"
    )


@dataclass
class K3sRestorer:
    ctx: PlayContext
    backup: Restoring
    renewed: Sequence[str]
    clock: Clock = field(default_factory=Clock)

    def run(self) -> None:
        found = cluster_of(self.ctx)
        assert found is not None
        self.cluster, self.hosts = found
        self.waiter = Waiter(
            self.ctx, self.cluster, ready_timeout(self.hosts[self.cluster.first.name]), self.clock
        )
        first = self.hosts[self.cluster.first.name]
        self.file = self.backup.file(str(self.backup.part["file"]))
        servers = [self.hosts[n.name] for n in self.cluster.servers]
        if self.backup.part["datastore"] == "etcd":
            self._step(
                "upload",
                [first],
                lambda r: r.apply([self._upload(f"{SNAPSHOTS}/nr-restore-{self.file.name}")]),
            )
            self._step("stop", servers, lambda r: r.apply([_systemctl("stop", "k3s")]))
            self._step("reset", [first], self._reset)
            self._step("start", [first], lambda r: r.apply([_systemctl("start", "k3s")]))
        else:
            self._step("upload", [first], lambda r: r.apply([self._upload(RESTORED_DB)]))
            self._step("swap", [first], self._swap)
        self._ready([self.cluster.first])
        self._step("node-passwords", [first], self._forget_passwords)
        rejoin = _systemctl("start", "k3s", f"rm -rf {DB_DIR}\n")
        for node in self.cluster.servers[1:]:  # one at a time: etcd adds one member at a time
            self._step("rejoin", [self.hosts[node.name]], lambda r: r.apply([rejoin]))
            self._ready([node])
        agents = [self.hosts[n.name] for n in self.cluster.agents if n.name in self.renewed]
        if agents:
            self._step("rejoin-agents", agents, lambda r: r.apply([_systemctl("restart", "k3s-agent")]))
        self._ready(self.cluster.nodes, deployments=True)
        self._step("apps", [first], self._apps)

    def _step(self, name: str, hosts: Sequence[Host], fn: Any) -> None:
        self.ctx.run(name, fn, hosts=hosts)
        _fail(self.ctx, name)

    def _upload(self, dest: str) -> Change:
        change = plan_upload(self.file, dest, FileState(dest, False), mode=0o600, stamp=False)
        assert change is not None
        return change

    def _reset(self, run: HostRun) -> Outcome[None]:
        path = f"{SNAPSHOTS}/nr-restore-{self.file.name}"
        cmd = f"{BINARY} server --cluster-reset --cluster-reset-restore-path={quote(path)}"
        try:
            res = run.remote.run(cmd, timeout=RESET_TIMEOUT)
        except CommandFailed as exc:
            lines = (exc.result.stderr.strip() or exc.result.stdout.strip()).splitlines()
            raise NrError(
                f"k3s server --cluster-reset failed (exit {exc.result.exited}): {(lines or [''])[-1][-400:]}"
            ) from None
        if RESET_DONE not in res.stdout + res.stderr:
            raise NrError(
                f"k3s server --cluster-reset ended without saying it reset the cluster: {res.stderr.strip()[-300:]!r}"
            )
        run.remote.run(f"rm -f {quote(path)}", check=False)
        return Outcome(changes=(Change("datastore", "restored", "", cmd, f"~ {cmd}: {RESET_DONE}\n"),))

    def _swap(self, run: HostRun) -> Outcome[None]:
        aside = f"{STATE_DB}.nr-old-{stamp()}"
        script = "\n".join([
            "systemctl stop k3s",
            *[f"if [ -e {STATE_DB}{s} ]; then mv {STATE_DB}{s} {aside}{s}; fi" for s in ("", "-wal", "-shm")],
            f"mv {RESTORED_DB} {STATE_DB}", f"chmod 0600 {STATE_DB}", "systemctl start k3s",
        ])  # fmt: skip
        return run.apply([Change(f"datastore {STATE_DB}", "the backup's", "", script,
                                 f"~ {STATE_DB}: replaced by the backup's copy (the old one: {aside})\n")])  # fmt: skip

    def _forget_passwords(self, run: HostRun) -> Outcome[None]:
        gone = []
        for name in self.renewed:
            res = run.remote.run(
                f"{KUBECTL} -n kube-system delete secret {quote(name + '.node-password.k3s')}", check=False
            )
            if res.ok:
                gone.append(name)
            elif "NotFound" not in res.stderr:
                raise NrError(f"deleting the node-password secret of {name}: {res.stderr.strip()[-300:]}")
        return Outcome(summary=f"node-password secrets deleted: {', '.join(gone) or 'none'}")

    def _ready(self, nodes: Sequence[NodeSpec], deployments: bool = False) -> None:
        want = [ExpectedNode(n.name, n.role, None) for n in nodes]
        found = self.waiter.wait(want, deployments=deployments, restarted=[n.name for n in nodes])
        for name, message in found.problems.items():
            self.ctx.fail_host(self.hosts[name], "ready", message)
        if found.deployments:
            self.ctx.fail_host(self.hosts[self.cluster.first.name], "ready", "kube-system deployments not available: "
                               + "; ".join(f"{d}: {why}" for d, why in found.deployments.items()))  # fmt: skip
        _fail(self.ctx, "ready")

    def _apps(self, run: HostRun) -> Outcome[None]:
        deadline = self.clock.now() + self.waiter.timeout
        while True:
            out = gather(run.remote, commands={"apps": APPS_CMD}).outputs["apps"]
            pending = unavailable(kubectl.items(out, "deployments"))
            if not pending:
                return Outcome(summary="every restored Deployment is available")
            if self.clock.now() > deadline:
                raise NrError(f"Deployments not available after the restore: {'; '.join(pending)}")
            self.clock.sleep(2.0)


def unavailable(items: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for d in items:
        meta, spec, status = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
        want, have = int(spec.get("replicas", 1)), int(status.get("availableReplicas", 0))
        if have < want:
            out.append(f"{meta.get('namespace')}/{meta.get('name')}: {have}/{want} available")
    return out


def restore(ctx: PlayContext, backup: Restoring, plan_: RestorePlan, clock: Clock | None = None) -> None:
    K3sRestorer(ctx, backup, list(plan_.data or []), clock or Clock()).run()
