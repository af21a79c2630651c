"""The k3s component's part of ``nr backup``: the cluster's datastore, and what a restore must check.

* **embedded etcd** (several servers: the first has ``cluster-init``): ``k3s etcd-snapshot save --name
  nr-<site>`` on the first server. It asks the running server, which writes
  ``/var/lib/rancher/k3s/server/db/snapshots/<name>-<node>-<unix time>`` (0600) and the command logs
  ``Snapshot <name> saved.`` on stderr (docs cli/etcd-snapshot.md; pkg/cli/etcdsnapshot). nr fetches
  the file and deletes the on-demand snapshot (k3s never prunes those).
* **SQLite** (one server, kine: ``/var/lib/rancher/k3s/server/db/state.db``): upstream's advice is a
  copy of the db folder (docs datastore/backup-restore.md), but a file copy of a database k3s is
  writing (WAL mode) is not consistent. nr copies it with SQLite's online backup API (python3's
  ``sqlite3``, else the ``sqlite3`` shell's ``.backup``) while k3s runs, checks the copy here
  (``PRAGMA integrity_check``) and fetches it (in rollback-journal mode: one self-contained file).
* **the token**: the datastore's confidential data is encrypted with it, so a restore needs the same
  token (docs: "you must also back up the server token"). nr never writes it into a backup in clear:
  the manifest records where the inventory keeps it and a fingerprint; with ``--secrets-key`` its value
  goes into the encrypted ``secrets.enc`` (:mod:`nr.backup.secretbox`).
* **node identities**: the sha256 of each node's ``/etc/rancher/node/password``. A restore compares it
  with the host's: a host that was re-created has another one, and the node-password secret restored
  with the datastore would lock it out ("Node password rejected").
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from shlex import quote
from typing import Any

from nornir.core.inventory import Host

from nr.backup.folder import Part
from nr.errors import NrError
from nr.facts import gather
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.secrets import Secret, SecretError, SecretRef
from nr.transport import CommandFailed
from tasks.k3s.contract import BINARY
from tasks.k3s.local import load_token, token_path
from tasks.k3s.prepare import cluster_of
from tasks.k3s.render import CONFIG, secrets_in_config
from tasks.k3s.spec import ClusterSpec
from tasks.k3s.versions import VERSION_CMD

DB_DIR = "/var/lib/rancher/k3s/server/db"
STATE_DB = f"{DB_DIR}/state.db"
ETCD_DIR = f"{DB_DIR}/etcd"
SNAPSHOTS = f"{DB_DIR}/snapshots"
NODE_PASSWORD = "/etc/rancher/node/password"
DATASTORE_CMD = (
    f"if [ -d {ETCD_DIR} ]; then echo etcd; elif [ -f {STATE_DB} ]; then echo sqlite; else echo none; fi"
)
IDENTITY_CMD = f"if [ -f {NODE_PASSWORD} ]; then sha256sum {NODE_PASSWORD} | cut -d ' ' -f 1; fi"
SAVED = re.compile(r"Snapshot (\S+) saved\.")
SNAPSHOT_TIMEOUT = 300.0
COPY = f"{DB_DIR}/.nr-backup-state.db"
COPY_SCRIPT = f"""set -e
db={STATE_DB}; out={COPY}
rm -f "$out"
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sqlite3, sys
src = sqlite3.connect(sys.argv[1], timeout=60); dst = sqlite3.connect(sys.argv[2])
src.backup(dst); dst.execute("PRAGMA journal_mode=DELETE"); dst.close(); src.close()' "$db" "$out"
elif command -v sqlite3 >/dev/null 2>&1; then
  sqlite3 "$db" ".timeout 60000" ".backup '$out'"
  sqlite3 "$out" "PRAGMA journal_mode=DELETE" >/dev/null
else
  echo "neither python3 nor sqlite3 is installed: the SQLite datastore cannot be copied consistently while \
k3s runs (install python3)" >&2
  exit 4
fi
chmod 0600 "$out"
"""


def token_source(ctx: PlayContext, first: Host) -> tuple[Secret | None, str, str | None]:
    """The token the inventory gives the cluster: (value or None, its reference, where a restore may write it)."""
    value = first.get("k3s_token")
    if value:
        ref = SecretRef.parse(value, ctx.inventory_dir)
        return ctx.secret(first, "k3s_token"), str(ref), str(ref.path) if ref.kind == "file" else None
    path = token_path(ctx.inventory_dir)
    try:
        return load_token(ctx.inventory_dir), f"file:{path} (kept by nr)", str(path)
    except SecretError as exc:
        raise NrError(f"k3s token: {exc}") from None


def identities(ctx: PlayContext, cluster: ClusterSpec) -> dict[str, dict[str, str]]:
    """Each node's role and the sha256 of its node password (one command per node, in parallel)."""

    def read(run: HostRun) -> Outcome[str]:
        out = run.remote.run(IDENTITY_CMD).stdout.strip()
        return Outcome(value=out, summary="node password read" if out else "no node password yet")

    hosts = [h for h in ctx.all_hosts() if h.name in {n.name for n in cluster.nodes}]
    found = ctx.run("identity", read, hosts=hosts).values
    return {n.name: {"role": n.role.value, "password_sha256": found.get(n.name, "")} for n in cluster.nodes}


def _etcd(run: HostRun, part: Part, site: str) -> dict[str, Any]:
    try:
        res = run.remote.run(
            f"{BINARY} etcd-snapshot save --name {quote('nr-' + site)}", timeout=SNAPSHOT_TIMEOUT
        )
    except CommandFailed as exc:
        tail = exc.result.stderr.strip().splitlines()[-1:] or [f"exit {exc.result.exited}"]
        raise NrError(f"k3s etcd-snapshot save failed: {tail[0][-400:]}") from None
    names = SAVED.findall(res.stderr) or SAVED.findall(res.stdout)
    if not names:
        raise NrError(f"k3s etcd-snapshot save named no snapshot (stderr: {res.stderr.strip()[-300:]!r})")
    name = names[-1]
    got = part.fetch(run.remote, f"{SNAPSHOTS}/{name}", "etcd-snapshot")
    run.remote.run(f"{BINARY} etcd-snapshot delete {quote(name)}", check=False, timeout=SNAPSHOT_TIMEOUT)
    return {"datastore": "etcd", "file": part.name("etcd-snapshot"), "snapshot": name, "size": got.size}


def _sqlite(run: HostRun, part: Part) -> dict[str, Any]:
    try:
        run.remote.run(COPY_SCRIPT, timeout=SNAPSHOT_TIMEOUT)
        got = part.fetch(run.remote, COPY, "state.db")
    except CommandFailed as exc:
        raise NrError(f"copying {STATE_DB}: {exc.result.stderr.strip()[-400:]}") from None
    finally:
        run.remote.run(f"rm -f {COPY}", check=False)
    check = integrity(part.path("state.db"))
    if check != "ok":
        raise NrError(f"the copy of {STATE_DB} is not a sound SQLite database: {check}")
    return {"datastore": "sqlite", "file": part.name("state.db"), "size": got.size}


def integrity(path: Path) -> str:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)  # writes nothing beside it
        try:
            return str(con.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error as exc:
        return str(exc)


def backup(ctx: PlayContext, part: Part) -> Mapping[str, Any]:
    found = cluster_of(ctx)
    if found is None:
        return {"summary": "no k3s hosts"}
    cluster, hosts = found
    first = cluster.first.name
    token, reference, keep_at = token_source(ctx, hosts[first])
    nodes = identities(ctx, cluster)
    done: dict[str, Any] = {}

    def snapshot(run: HostRun) -> Outcome[None]:
        facts = gather(
            run.remote, files=[CONFIG], commands={"datastore": DATASTORE_CMD, "version": VERSION_CMD}
        )
        running = secrets_in_config(facts.file(CONFIG).text)
        datastore_token = Secret(running[0], "the running cluster") if running else token
        if datastore_token is None:
            raise NrError(f"the cluster token is unknown: {CONFIG} holds none and the inventory keeps none")
        if token is not None and token != datastore_token:
            raise NrError(
                f"{first} runs with another token than the inventory's ({reference}): fix that first"
            )
        part.secret("token", datastore_token, reference, keep_at)
        kind = facts.out("datastore").strip()
        if kind == "etcd":
            done.update(_etcd(run, part, cluster.site_name))
        elif kind == "sqlite":
            done.update(_sqlite(run, part))
        else:
            raise NrError(
                f"no k3s datastore on {first} ({DB_DIR} holds neither etcd nor state.db): nothing to back up"
            )
        done["version"] = facts.out("version").strip()
        return Outcome(summary=f"{done['datastore']} datastore, {done['size']} bytes")

    ctx.run("snapshot", snapshot, hosts=[hosts[first]])
    what = "etcd snapshot" if done.get("datastore") == "etcd" else "SQLite copy"
    return {
        "summary": f"{what} of {first}" if done else f"no snapshot of {first}",
        "server": first,
        "servers": [n.name for n in cluster.servers],
        "agents": [n.name for n in cluster.agents],
        "nodes": nodes,
        **done,
    }
