"""The ``redis`` play: a Redis Cluster with two instances per host and rotated replicas.

Steps of ``nr run redis``:

1. validate (before any host is touched): the layout plans (>= 3 hosts, distinct addresses, ports
   that do not clash), the password resolves, and every instance that already runs accepts it —
   a wrong password is refused here, so nothing is changed;
2. install, on every host in parallel (one facts round trip, one apply round trip): Debian's
   redis-server package, one config per instance (0640 redis, password masked in diffs), its data
   folder, the ``redis-server@PORT`` units enabled and started, the stock ``redis-server`` service
   stopped and disabled;
3. restart, host by host, the running instances whose config changed (never all at once);
4. cluster, from the controller over TCP (redis-py; the password never reaches a shell): observe,
   plan the exact actions (MEET, ADDSLOTSRANGE, REPLICATE, FAILOVER to restore planned roles, online
   slot moves for a new host), execute them and verify. See :mod:`tasks.redis.cluster`.

``nr check`` and ``nr drift`` read the same state without changing anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nornir.core.inventory import Host
from nornir.core.task import Result, Task

from nr.changes import Change
from nr.connection import quote, remote
from nr.errors import NrError
from nr.facts import Facts, gather
from nr.legacy import apply_changes
from nr.ops.files import FileSpec, plan_files
from nr.play import CheckItem, PlayContext
from nr.secrets import SecretError, SecretRef
from tasks.redis.cluster import (
    Access,
    AccessError,
    ClusterError,
    ClusterObservation,
    Finding,
    Severity,
    execute,
    findings,
    observe,
    plan_actions,
    redis_connector,
)
from tasks.redis.contract import GROUP as REDIS
from tasks.redis.plan import (
    DEFAULT_MASTER_PORT,
    DEFAULT_REPLICA_PORT,
    InstanceConfig,
    Layout,
    PlanError,
    RedisConfigOptions,
    RedisHost,
    instance_configs,
    plan_layout,
    render_redis_conf,
    validate_password,
)

PACKAGE = "redis-server"
STOCK_UNIT = "redis-server.service"
UP_TIMEOUT = 30.0  # seconds for freshly started instances to answer
CLUSTER_TIMEOUT = 120.0


@dataclass(frozen=True)
class RedisSite:
    """Everything the play needs, resolved from the inventory (the password stays in memory)."""

    layout: Layout
    options: RedisConfigOptions
    password: str
    configs: dict[str, list[InstanceConfig]]  # host name -> its two instances

    def files(self, host: str) -> list[FileSpec]:
        return [
            FileSpec.text(
                c.conf_path,
                render_redis_conf(c, self.password),
                0o640,
                "redis",
                "redis",
                secrets=[self.password],
            )
            for c in self.configs[host]
        ]


def host_address(host: Host) -> str:
    return str(host.get("node_ip") or host.hostname)


def load_site(ctx: PlayContext) -> RedisSite:
    """Plan the site from the inventory; raises NrError with a message naming host and field."""
    hosts = ctx.all_hosts(REDIS)
    if not hosts:
        raise NrError("the inventory has no host in group 'redis' (the redis play needs at least 3)")
    ports = {
        h.name: tuple(h.get("redis_ports") or (DEFAULT_MASTER_PORT, DEFAULT_REPLICA_PORT)) for h in hosts
    }
    if len(set(ports.values())) > 1:
        detail = ", ".join(f"{h}: {list(p)}" for h, p in ports.items())
        raise NrError(f"data.redis_ports must be the same on every redis host ({detail})")
    master_port, replica_port = next(iter(ports.values()))
    timeouts = {h.get("redis_node_timeout") for h in hosts}
    if len(timeouts) > 1:
        raise NrError("data.redis_node_timeout must be the same on every redis host")
    timeout = timeouts.pop() or 5000
    ref_text = hosts[0].get("redis_password")
    if not ref_text or any(h.get("redis_password") != ref_text for h in hosts):
        raise NrError("data.redis_password must be set, to the same secret reference, on every redis host")
    try:
        password = SecretRef.parse(ref_text).resolve().reveal()
    except SecretError as exc:
        raise NrError(f"data.redis_password ({ref_text}): {exc}") from None
    try:
        validate_password(password)
        layout = plan_layout([RedisHost(h.name, host_address(h)) for h in hosts], master_port, replica_port)
        # Each master has exactly one replica, so waiting 5 s (Redis's default) for more replicas to
        # share a full sync only delays the first sync after forming or repairing the cluster.
        options = RedisConfigOptions(
            cluster_node_timeout_ms=int(timeout), extra=(("repl-diskless-sync-delay", "0"),)
        )
    except PlanError as exc:
        raise NrError(f"redis: {exc}") from None
    configs: dict[str, list[InstanceConfig]] = {}
    for c in instance_configs(layout, options):
        configs.setdefault(c.host, []).append(c)
    return RedisSite(layout, options, password, configs)


# -- the SSH side (one host) --------------------------------------------------------------------------


def facts_commands(configs: list[InstanceConfig]) -> dict[str, str]:
    cmds = {
        "package": f"dpkg-query -W -f='${{db:Status-Status}}' {PACKAGE} 2>/dev/null || echo not-installed",
        "stock": f"echo $(systemctl is-active {STOCK_UNIT}) $(systemctl is-enabled {STOCK_UNIT} 2>/dev/null)",
    }
    for c in configs:
        cmds[f"unit {c.port}"] = (
            f"echo $(systemctl is-active {c.unit}) $(systemctl is-enabled {c.unit} 2>/dev/null)"
        )
        cmds[f"dir {c.port}"] = f"stat -c '%U:%G %a' {quote(c.dir)} 2>/dev/null || echo missing"
    return cmds


@dataclass(frozen=True)
class HostPlan:
    changes: list[Change]
    start: list[str]  # units to enable + start now (not running yet)
    restart: list[str]  # running units whose config changed: restarted one host at a time


def plan_host(site: RedisSite, host: str, facts: Facts) -> HostPlan:
    """What the install step changes on ``host`` (pure)."""
    configs = site.configs[host]
    changes: list[Change] = []
    installed = facts.out("package").strip() == "installed"
    if not installed:
        script = (
            "export DEBIAN_FRONTEND=noninteractive\n"
            "apt-get update -qq\n"
            f"apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold {PACKAGE} >/dev/null"
        )
        changes.append(
            Change(f"package {PACKAGE}", "installed", "not installed", script, f"+ package {PACKAGE}")
        )
    stock_active, _, stock_enabled = facts.out("stock").strip().partition(" ")
    if not installed or stock_active == "active" or stock_enabled == "enabled":
        changes.append(
            Change(
                f"service {STOCK_UNIT}",
                "stopped, disabled",
                "running/enabled" if installed else "(starts with the package)",
                f"systemctl disable --now {STOCK_UNIT} >/dev/null 2>&1",
                f"- stop and disable {STOCK_UNIT} (the single-instance default)",
            )
        )
    for c in configs:
        have = facts.out(f"dir {c.port}").strip()
        if have != "redis:redis 750":
            changes.append(
                Change(
                    f"folder {c.dir}",
                    "redis:redis 750",
                    have,
                    f"install -d -o redis -g redis -m 0750 {quote(c.dir)}",
                    f"+ folder {c.dir} (redis:redis 0750)",
                )
            )
    file_changes = plan_files(site.files(host), facts.files)
    changes += file_changes
    changed_confs = {ch.what.removeprefix("file ") for ch in file_changes}
    start: list[str] = []
    restart: list[str] = []
    for c in configs:
        active, _, enabled = facts.out(f"unit {c.port}").strip().partition(" ")
        if active == "active" and c.conf_path in changed_confs:
            restart.append(c.unit)
            changes.append(
                Change(
                    f"service {c.unit}",
                    "restarted with the new config",
                    "running with the old config",
                    "",
                    f"~ restart {c.unit} (config changed; one host at a time)",
                )
            )
        elif enabled != "enabled" or active != "active":
            start.append(c.unit)  # `enable --now`: a running instance is not bounced
            changes.append(
                Change(
                    f"service {c.unit}",
                    "enabled, running",
                    f"{active or 'unknown'}, {enabled or 'not enabled'}",
                    "",
                    f"+ enable and start {c.unit}",
                )
            )
    return HostPlan(changes, start, restart)


def _start_script(units: list[str]) -> str:
    if not units:
        return ""
    names = " ".join(units)
    return f"systemctl daemon-reload\nsystemctl enable --now {names} >/dev/null 2>&1"


def _install(task: Task, site: RedisSite) -> Result:
    conn = remote(task)
    configs = site.configs[task.host.name]
    facts = gather(conn, files=[c.conf_path for c in configs], commands=facts_commands(configs))
    hp = plan_host(site, task.host.name, facts)
    result = apply_changes(task, hp.changes, after=_start_script(hp.start), conn=conn)
    result.restart = hp.restart  # type: ignore[attr-defined]
    return result


RESTART_WAIT_S = 30


def restart_script(units: list[str], instances: list[tuple[str, int]]) -> str:
    """Restart ``units``, then for each instance (address, port): wait until it answers PING, and, if it
    belongs to a formed cluster, until it sees cluster_state:ok again; fail after RESTART_WAIT_S.
    REDISCLI_AUTH must be in the environment (the caller puts it there from stdin, never argv)."""
    tries = RESTART_WAIT_S * 5
    lines = [f"systemctl enable {' '.join(units)} >/dev/null 2>&1", f"systemctl restart {' '.join(units)}"]
    for address, port in instances:
        cli = f"redis-cli -h {quote(address)} -p {port}"
        where = f"{address}:{port}"
        lines += [
            f"ok=; for i in $(seq 1 {tries}); do {cli} ping 2>/dev/null | grep -q PONG && {{ ok=1; break; }}; sleep 0.2; done",
            f'[ -n "$ok" ] || {{ echo "redis-server {where} does not answer PING {RESTART_WAIT_S} s after its restart" >&2; exit 1; }}',
            f"ok=; for i in $(seq 1 {tries}); do info=$({cli} cluster info 2>/dev/null | tr -d '\\r'); "
            "echo \"$info\" | grep -qx 'cluster_state:ok' && { ok=1; break; }; "
            "echo \"$info\" | grep -qx 'cluster_known_nodes:1' && { ok=1; break; }; sleep 0.2; done",
            f'[ -n "$ok" ] || {{ echo "the cluster is not ok as seen from {where} {RESTART_WAIT_S} s after its restart: '
            'no further host is restarted" >&2; exit 1; }',
        ]
    return "\n".join(lines)


def _restart(task: Task, units: list[str], instances: list[tuple[str, int]], password: str) -> Result:
    """Restart ``units`` on this host and wait until its instances are back in a healthy cluster."""
    script = f"export REDISCLI_AUTH={quote(password)}\n{restart_script(units, instances)}"
    remote(task).run(script)
    return Result(host=task.host, changed=True, diff="".join(f"~ restarted {u}\n" for u in units))


# -- the controller side (the cluster) ------------------------------------------------------------------


def wait_reachable(site: RedisSite, timeout: float) -> ClusterObservation:
    """Observe until every instance answers (freshly started units need a moment) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        obs = observe(site.layout, site.password, timeout=3.0)
        if all(i.access is Access.OK for i in obs.instances) or time.monotonic() > deadline:
            return obs
        if any(i.access is Access.WRONG_PASSWORD for i in obs.instances):
            return obs
        time.sleep(0.5)


def finding_change(f: Finding, host: str) -> Change:
    return Change(f.what, f.expected, f.actual, "", f"{f.severity}: {f.message}", fix=f.fix)


def _cluster(task: Task, site: RedisSite, dry_run: bool) -> Result:
    obs = wait_reachable(site, 2.0 if dry_run else UP_TIMEOUT)
    down = [i for i in obs.instances if i.access is not Access.OK]
    if dry_run and down and all(i.access is Access.UNREACHABLE for i in down):
        labels = ", ".join(i.label for i in down)
        diff = f"(instances not running yet: {labels}; the cluster would be formed as planned)\n{site.layout.table()}\n"
        change = Change(
            "redis cluster", "formed as planned", f"{len(down)} instance(s) not running", "", diff
        )
        return Result(host=task.host, changed=True, diff=diff, changes=[change])
    try:
        actions = plan_actions(site.layout, obs)
    except (AccessError, PlanError) as exc:
        raise NrError(str(exc)) from None
    diff = "".join(f"~ {a.description}\n" for a in actions)
    changes = [
        Change(a.description, "done", "pending", "", a.description, fix="nr run redis") for a in actions
    ]
    if dry_run:
        return Result(host=task.host, changed=bool(actions), diff=diff, changes=changes)
    if actions:
        try:
            execute(actions, site.layout, site.password, timeout=CLUSTER_TIMEOUT)
        except (ClusterError, TimeoutError, PlanError) as exc:
            raise NrError(f"redis cluster: {exc}") from None
        obs = observe(site.layout, site.password)
    errors = [f for f in findings(site.layout, obs) if f.severity is Severity.ERROR]
    if errors:
        text = "; ".join(f.message for f in errors)
        return Result(
            host=task.host, changed=bool(actions), diff=diff, failed=True, result=f"redis cluster: {text}"
        )
    return Result(
        host=task.host, changed=bool(actions), diff=diff, result=site.layout.table(), changes=changes
    )


def instance_checks(site: RedisSite) -> dict[str, list[CheckItem]]:
    """Persistence and bind/password of every running instance (CONFIG GET), per host."""
    connect = redis_connector(site.password, timeout=3.0)
    out: dict[str, list[CheckItem]] = {}
    for inst in site.layout.instances:
        items = out.setdefault(inst.host, [])
        try:
            client = connect(inst.address, inst.port)
            try:
                conf = _config_get(client, "appendonly", "bind", "requirepass", "protected-mode")
            finally:
                client.close()
        except Exception as exc:
            items.append(
                CheckItem(
                    f"{inst.label} reachable with auth",
                    False,
                    type(exc).__name__,
                    f"start redis-server@{inst.port} on {inst.host}: nr run redis",
                )
            )
            continue
        items.append(CheckItem(f"{inst.label} reachable with auth", True, "PONG"))
        items.append(
            CheckItem(
                f"{inst.label} persistence",
                conf.get("appendonly") == "yes",
                f"appendonly {conf.get('appendonly')}",
                "nr run redis renders appendonly yes",
            )
        )
        binds = conf.get("bind", "").split()
        open_bind = any(b in ("0.0.0.0", "*", "::", "-::*") for b in binds)
        safe = not (open_bind and not conf.get("requirepass"))
        items.append(
            CheckItem(
                f"{inst.label} bind",
                safe and inst.address in " ".join(binds),
                f"bind {' '.join(binds)}, password {'set' if conf.get('requirepass') else 'NOT set'}",
                "bind the host address with requirepass: nr run redis",
            )
        )
    return out


def _config_get(client: Any, *names: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        reply = client.execute_command("CONFIG", "GET", name)
        pairs = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
        values.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
    return values


# -- the component ----------------------------------------------------------------------------------------


class RedisComponent:
    name = "redis"

    def validate(self, ctx: PlayContext) -> list[str]:
        if not ctx.all_hosts(REDIS):
            return []
        try:
            site = load_site(ctx)
        except NrError as exc:
            return [str(exc)]
        obs = observe(site.layout, site.password, timeout=3.0)
        wrong = [i for i in obs.instances if i.access in (Access.WRONG_PASSWORD, Access.NO_PASSWORD)]
        if wrong:
            labels = ", ".join(f"{i.label} ({i.access.value})" for i in wrong)
            return [
                f"redis: the password from {ctx.all_hosts(REDIS)[0].get('redis_password')} is refused by the "
                f"running instance(s) {labels}; nothing was changed. Fix the secret (or change the password "
                f"on the instances first: CONFIG SET requirepass/masterauth on each, then update the secret)"
            ]
        return []

    def apply(self, ctx: PlayContext) -> None:
        if not ctx.all_hosts(REDIS):
            ctx.note("no host in group 'redis': nothing to do")
            return
        site = load_site(ctx)
        hosts = ctx.hosts(REDIS)
        if not hosts:
            return
        installed = ctx.run_nornir("install", lambda task: _install(task, site), hosts=hosts)
        pending = {h: getattr(r[0], "restart", []) for h, r in installed.items() if not r.failed}
        for host in hosts:  # one host at a time, each back in a healthy cluster before the next
            units = pending.get(host.name) or []
            if units and not ctx.dry_run:
                inst = [(c.address, c.port) for c in site.configs[host.name] if c.unit in units]
                ctx.run_nornir(
                    "restart",
                    lambda task, u=units, i=inst: _restart(task, u, i, site.password),
                    hosts=[host],
                )
                if ctx.failed(host):
                    ctx.note(f"restarts stopped at {host.name}: the hosts after it keep their old config")
                    break
        failed = [h.name for h in ctx.all_hosts(REDIS) if ctx.failed(h)]
        first = ctx.all_hosts(REDIS)[0]
        if failed:
            ctx.note(f"cluster step skipped: {', '.join(failed)} failed earlier")
            return
        ctx.run_nornir("cluster", lambda task: _cluster(task, site, ctx.dry_run), hosts=[first])

    def check(self, ctx: PlayContext) -> None:
        if not ctx.all_hosts(REDIS):
            return
        site = load_site(ctx)
        obs = observe(site.layout, site.password, timeout=3.0)
        problems = findings(site.layout, obs)
        per_instance = instance_checks(site)
        first = ctx.all_hosts(REDIS)[0].name

        def task(task: Task) -> Result:
            name = task.host.name
            configs = site.configs[name]
            facts = gather(
                remote(task), files=[c.conf_path for c in configs], commands=facts_commands(configs)
            )
            hp = plan_host(site, name, facts)
            items = [
                CheckItem(
                    "redis config and services",
                    not hp.changes,
                    "as desired" if not hp.changes else "; ".join(c.what for c in hp.changes),
                    "nr run redis",
                )
            ]
            items += per_instance.get(name, [])
            mine = [f for f in problems if f.host == name or (not f.host and name == first)]
            for f in mine:
                items.append(
                    CheckItem(
                        f.what,
                        False,
                        f"{f.actual} (plan: {f.expected})",
                        f.fix,
                        warning=f.severity is Severity.WARNING,
                    )
                )
            if name == first and not problems:
                items.append(CheckItem("cluster layout", True, "16384 slots ok, layout as planned, state ok"))
            return Result(host=task.host, result=f"{sum(i.ok for i in items)}/{len(items)}", checks=items)

        ctx.run_nornir("check", task, group=REDIS)

    def drift(self, ctx: PlayContext) -> None:
        if not ctx.all_hosts(REDIS):
            return
        site = load_site(ctx)
        hosts = ctx.hosts(REDIS)
        ctx.run_nornir("install", lambda task: _install(task, site), hosts=hosts)
        obs = observe(site.layout, site.password, timeout=3.0)
        problems = [f for f in findings(site.layout, obs) if f.severity in (Severity.ERROR, Severity.DRIFT)]
        by_host: dict[str, list[Change]] = {}
        first = ctx.all_hosts(REDIS)[0].name
        for f in problems:
            by_host.setdefault(f.host or first, []).append(finding_change(f, f.host or first))
        chosen = [h for h in ctx.all_hosts(REDIS) if h.name in by_host]
        if chosen:
            ctx.run_nornir(
                "cluster",
                lambda task: Result(
                    host=task.host,
                    changed=True,
                    changes=by_host[task.host.name],
                    diff="".join(c.diff + "\n" for c in by_host[task.host.name]),
                ),
                hosts=chosen,
            )


component = RedisComponent()
