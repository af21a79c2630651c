"""Pure planning for the Redis Cluster: layout, slot ranges, redis.conf, membership changes.

Nothing in this module does I/O. The controller-side operations that talk to the instances live in
``tasks/redis_cluster.py``; the SSH side (packages, files, systemd units) lives in ``tasks/redis.py``.

The layout (see /work/shared/reference/redis-cluster.md), for hosts ``h1..hN`` (N >= 3) in inventory order
and ports ``P`` (first, master instance) and ``R`` (second, replica instance):

* ``hi:P`` is the master of shard ``i`` (shards are numbered from 1);
* ``hi:R`` replicates the master of shard ``i-1``; ``h1:R`` replicates shard ``N`` ("rotated replicas"),
  so a master and its replica never share a host;
* the 16384 slots are split into N contiguous ranges with redis-cli's formula
  (3 shards: 0-5460, 5461-10922, 10923-16383) and given to the masters with CLUSTER ADDSLOTSRANGE.

Secrets: the password is an argument of :func:`render_redis_conf` only; it appears verbatim (inside double
quotes) on the ``requirepass`` and ``masterauth`` lines and nowhere else, so the engine's diff masking
(replace the exact secret string) hides it. :func:`render_redis_conf_redacted` renders the same file with a
placeholder for previews.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

SLOT_COUNT = 16384
BUS_PORT_OFFSET = 10000
MAX_PORT = 65535
DEFAULT_MASTER_PORT = 7000
DEFAULT_REPLICA_PORT = 7003
MIN_HOSTS = 3
REDACTED = "<redacted>"

Role = Literal["master", "replica"]


class PlanError(ValueError):
    """The requested layout or change cannot be planned; the message says which host/field and why."""


# --------------------------------------------------------------------------------------------- slots


@dataclass(frozen=True, order=True)
class SlotRange:
    """An inclusive range of hash slots, ``start..end``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < SLOT_COUNT:
            raise PlanError(f"invalid slot range {self.start}-{self.end} (slots are 0-{SLOT_COUNT - 1})")

    @property
    def count(self) -> int:
        return self.end - self.start + 1

    def slots(self) -> range:
        return range(self.start, self.end + 1)

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def ranges_from_slots(slots: Iterable[int]) -> tuple[SlotRange, ...]:
    """Collapse slot numbers into sorted contiguous ranges."""
    ordered = sorted(set(slots))
    out: list[SlotRange] = []
    if not ordered:
        return ()
    start = prev = ordered[0]
    for slot in ordered[1:]:
        if slot != prev + 1:
            out.append(SlotRange(start, prev))
            start = slot
        prev = slot
    out.append(SlotRange(start, prev))
    return tuple(out)


def slots_of(ranges: Iterable[SlotRange]) -> frozenset[int]:
    return frozenset(slot for r in ranges for slot in r.slots())


def count_slots(ranges: Iterable[SlotRange]) -> int:
    return sum(r.count for r in ranges)


def format_ranges(ranges: Iterable[SlotRange], limit: int = 8) -> str:
    """``0-5460,5461`` (at most ``limit`` ranges, then ``… (+N more)``); ``none`` when empty."""
    items = [str(r) for r in ranges]
    if not items:
        return "none"
    if len(items) > limit:
        return ",".join(items[:limit]) + f",… (+{len(items) - limit} more ranges)"
    return ",".join(items)


def _f32(value: float) -> float:
    """Round to IEEE single precision, as C ``float`` arithmetic does."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _lround(value: float) -> int:
    """C ``lround``: half away from zero (Python's round() is half-to-even)."""
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def even_slot_ranges(shards: int) -> tuple[SlotRange, ...]:
    """Split the slots like ``redis-cli --cluster create`` (redis-cli.c, clusterManagerCommandCreate).

    redis-cli computes in C ``float``: ``slots_per_node = 16384 / (float) masters``, ``cursor += slots_per_node``
    and ``last = lround(cursor + slots_per_node - 1)``, the last master taking everything up to 16383. The
    single-precision rounding is reproduced so the ranges match redis-cli for every shard count.
    """
    if shards < 1:
        raise PlanError(f"cannot split slots over {shards} shards")
    per_node = _f32(SLOT_COUNT / shards)
    first = 0
    cursor = 0.0
    out: list[SlotRange] = []
    for i in range(shards):
        last = _lround(_f32(_f32(cursor + per_node) - 1))
        if last > SLOT_COUNT or i == shards - 1:
            last = SLOT_COUNT - 1
        last = max(last, first)
        out.append(SlotRange(first, last))
        first = last + 1
        cursor = _f32(cursor + per_node)
    return tuple(out)


# -------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class RedisHost:
    """A host of the ``redis`` inventory group: its inventory name and the address the instances bind."""

    name: str
    address: str


@dataclass(frozen=True)
class PlannedInstance:
    """One redis-server instance of the layout.

    ``shard`` is the shard it masters (role ``master``) or the shard whose master it replicates (``replica``).
    """

    host: str
    address: str
    port: int
    role: Role
    shard: int

    @property
    def endpoint(self) -> str:
        """``address:port`` as the cluster sees it (IPv6 addresses in brackets)."""
        return format_endpoint(self.address, self.port)

    @property
    def label(self) -> str:
        """``host:port`` as humans see it, e.g. ``lab1:7000``."""
        return f"{self.host}:{self.port}"

    @property
    def bus_port(self) -> int:
        return self.port + BUS_PORT_OFFSET

    def describe(self) -> str:
        return f"master of shard {self.shard}" if self.role == "master" else f"replica of shard {self.shard}"


def format_endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class Shard:
    """Shard ``number``: its planned master and replica, and the slots it gets when the cluster is formed."""

    number: int
    master: PlannedInstance
    replica: PlannedInstance
    slots: tuple[SlotRange, ...]


@dataclass(frozen=True)
class Layout:
    """The planned cluster: hosts in inventory order, the two ports and one shard per host."""

    hosts: tuple[RedisHost, ...]
    master_port: int
    replica_port: int
    shards: tuple[Shard, ...]

    @property
    def instances(self) -> tuple[PlannedInstance, ...]:
        """All instances, host by host: ``h1:P, h1:R, h2:P, h2:R, ...``."""
        out: list[PlannedInstance] = []
        for i in range(len(self.hosts)):
            out.append(self.shards[i].master)
            out.append(self.replica_on_host(i + 1))
        return tuple(out)

    def replica_on_host(self, host_number: int) -> PlannedInstance:
        """The second instance of host ``host_number`` (1-based): the replica of shard ``host_number - 1``."""
        n = len(self.hosts)
        return self.shards[(host_number - 2) % n].replica

    def shard(self, number: int) -> Shard:
        if not 1 <= number <= len(self.shards):
            raise PlanError(f"no shard {number}: the layout has shards 1-{len(self.shards)}")
        return self.shards[number - 1]

    def find(self, endpoint: str) -> PlannedInstance | None:
        """The planned instance at ``address:port``, or None."""
        for inst in self.instances:
            if inst.endpoint == endpoint:
                return inst
        return None

    def host_of(self, endpoint: str) -> str | None:
        inst = self.find(endpoint)
        return inst.host if inst else None

    def table(self) -> str:
        """The layout as the markdown table of the reference document."""
        lines = [
            f"| host | port {self.master_port} | port {self.replica_port} |",
            "|------|-----------|-----------|",
        ]
        for i, host in enumerate(self.hosts, start=1):
            master = self.shards[i - 1].master
            replica = self.replica_on_host(i)
            lines.append(f"| {host.name} | {master.describe()} | {replica.describe()} |")
        return "\n".join(lines)


def _check_port(field_name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise PlanError(f"{field_name} must be an integer port, got {port!r}")
    if port < 1:
        raise PlanError(f"{field_name} {port} is not a valid TCP port (1-{MAX_PORT - BUS_PORT_OFFSET})")
    if port + BUS_PORT_OFFSET > MAX_PORT:
        raise PlanError(
            f"{field_name} {port}: its cluster bus port {port + BUS_PORT_OFFSET} (port+{BUS_PORT_OFFSET}) "
            f"exceeds {MAX_PORT}; use a port <= {MAX_PORT - BUS_PORT_OFFSET}"
        )
    return port


def check_ports(master_port: int, replica_port: int) -> None:
    """Reject out-of-range ports and clashes between the two instances' client and bus ports."""
    _check_port("master_port", master_port)
    _check_port("replica_port", replica_port)
    if master_port == replica_port:
        raise PlanError(
            f"master_port and replica_port are both {master_port}; the two instances of a host need "
            "different ports"
        )
    if replica_port == master_port + BUS_PORT_OFFSET:
        raise PlanError(
            f"replica_port {replica_port} clashes with the cluster bus port of master_port {master_port} "
            f"({master_port}+{BUS_PORT_OFFSET})"
        )
    if master_port == replica_port + BUS_PORT_OFFSET:
        raise PlanError(
            f"master_port {master_port} clashes with the cluster bus port of replica_port {replica_port} "
            f"({replica_port}+{BUS_PORT_OFFSET})"
        )


def _check_address(host: RedisHost, position: int) -> None:
    if not host.address:
        raise PlanError(f"host {host.name or f'#{position}'}: address is empty")
    try:
        ip = ipaddress.ip_address(host.address)
    except ValueError:
        raise PlanError(
            f"host {host.name}: address {host.address!r} is not an IP address; CLUSTER MEET and nodes.conf "
            "need the IP the instances bind (put the IP in the inventory)"
        ) from None
    if ip.is_unspecified:
        raise PlanError(
            f"host {host.name}: address {host.address} is the unspecified address; bind and announce the "
            "host's routable address"
        )


def plan_layout(
    hosts: Sequence[RedisHost | tuple[str, str]],
    master_port: int = DEFAULT_MASTER_PORT,
    replica_port: int = DEFAULT_REPLICA_PORT,
) -> Layout:
    """Plan the rotated layout for ``hosts`` (in inventory order). Raises :class:`PlanError`."""
    parsed = tuple(h if isinstance(h, RedisHost) else RedisHost(name=h[0], address=h[1]) for h in hosts)
    if len(parsed) < MIN_HOSTS:
        names = ", ".join(h.name for h in parsed) or "none"
        raise PlanError(
            f"a Redis Cluster with rotated replicas needs at least {MIN_HOSTS} hosts in the redis group, "
            f"got {len(parsed)} ({names})"
        )
    names_seen: dict[str, int] = {}
    addresses_seen: dict[str, str] = {}
    for position, host in enumerate(parsed, start=1):
        if not host.name or not host.name.strip():
            raise PlanError(f"host #{position} (address {host.address or 'empty'}) has an empty name")
        if host.name in names_seen:
            raise PlanError(
                f"host name {host.name!r} appears twice (positions {names_seen[host.name]} and {position})"
            )
        names_seen[host.name] = position
        _check_address(host, position)
        canonical = str(ipaddress.ip_address(host.address))
        if canonical in addresses_seen:
            raise PlanError(
                f"hosts {addresses_seen[canonical]} and {host.name} share address {host.address}; each host "
                "needs its own address (a host runs both instances of the layout)"
            )
        addresses_seen[canonical] = host.name
    check_ports(master_port, replica_port)

    n = len(parsed)
    ranges = even_slot_ranges(n)
    shards: list[Shard] = []
    for i, host in enumerate(parsed, start=1):
        master = PlannedInstance(host.name, host.address, master_port, "master", i)
        replica_host = parsed[i % n]  # host i+1 (wrapping) replicates shard i
        replica = PlannedInstance(replica_host.name, replica_host.address, replica_port, "replica", i)
        shards.append(Shard(number=i, master=master, replica=replica, slots=(ranges[i - 1],)))
    return Layout(hosts=parsed, master_port=master_port, replica_port=replica_port, shards=tuple(shards))


# ------------------------------------------------------------------------------------------- config


_MANAGED_DIRECTIVES = frozenset(
    {
        "bind",
        "port",
        "requirepass",
        "masterauth",
        "masteruser",
        "user",
        "cluster-enabled",
        "cluster-config-file",
        "include",
        "rename-command",
        "dir",
        "pidfile",
        "logfile",
        "dbfilename",
    }
)


@dataclass(frozen=True)
class RedisConfigOptions:
    """Cluster-wide redis.conf settings and the on-host paths (defaults fit Debian's redis-server@.service).

    Debian bookworm's ``redis-server@.service`` (redis-server 7.0.15) runs
    ``/usr/bin/redis-server /etc/redis/redis-%i.conf --supervised systemd --daemonize no`` with ``Type=notify``,
    ``PIDFile=/run/redis-%i/redis-server.pid``, ``RuntimeDirectory=redis-%i``, ``User=redis``,
    ``ProtectSystem=strict`` and writable paths ``/var/lib/redis``, ``/var/log/redis``, ``/var/run/redis-%i``
    and ``/etc/redis``. So with ``%i`` = the port: the config is ``/etc/redis/redis-7000.conf``, the pidfile
    ``/run/redis-7000/redis-server.pid``, data under ``/var/lib/redis/7000`` (must exist, owned by redis),
    logs under ``/var/log/redis`` and the cluster state file ``/etc/redis/nodes-7000.conf`` (Redis rewrites
    it; /etc/redis is writable for the unit and owned by redis). ``daemonize no`` + ``supervised systemd``
    repeat what ExecStart forces, so the file also works when started by hand.
    """

    cluster_node_timeout_ms: int = 5000
    require_full_coverage: bool = True
    protected_mode: bool = True
    # Placement is managed by nr: do not let Redis move replicas to orphaned masters behind our back (a
    # transiently doubled replica during scale-out could otherwise land on its new master's host).
    allow_replica_migration: bool = False
    appendonly: bool = True
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    supervised: Literal["systemd", "no", "auto"] = "systemd"
    loglevel: Literal["debug", "verbose", "notice", "warning"] = "notice"
    conf_dir: str = "/etc/redis"
    data_root: str = "/var/lib/redis"
    log_dir: str = "/var/log/redis"
    run_dir_template: str = "/run/redis-{port}"
    extra_bind: tuple[str, ...] = ()
    # Announce the inventory address on the cluster bus (cluster-announce-ip) and originate bus and
    # replication connections from it (bind-source-addr, Redis >= 7.0). Without it a node records a peer under
    # the *source* address of the peer's connection, which is wrong on multi-homed hosts (and on loopback
    # aliases, where every peer would appear as 127.0.0.1).
    announce_address: bool = True
    maxmemory: str | None = None
    maxmemory_policy: str | None = None
    # Further "directive value" lines, rendered verbatim after the settings above (tuning, tests).
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.cluster_node_timeout_ms < 100:
            raise PlanError(
                f"cluster_node_timeout_ms {self.cluster_node_timeout_ms} is too small (use >= 100 ms; "
                "Redis's default is 15000, test setups use 2000-5000)"
            )
        for name, value in (
            ("conf_dir", self.conf_dir),
            ("data_root", self.data_root),
            ("log_dir", self.log_dir),
            ("run_dir_template", self.run_dir_template),
        ):
            if not value.startswith("/") or any(c.isspace() for c in value):
                raise PlanError(f"{name} {value!r} must be an absolute path without whitespace")
        for name, value in self.extra:
            if (
                not name
                or any(c.isspace() for c in name)
                or "\n" in value
                or "\r" in value
                or name.lower() in _MANAGED_DIRECTIVES
            ):
                raise PlanError(
                    f"extra redis.conf directive {name!r} is invalid or managed by nr (one line, not one of "
                    f"{', '.join(sorted(_MANAGED_DIRECTIVES))})"
                )
        for addr in self.extra_bind:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise PlanError(f"extra_bind {addr!r} is not an IP address") from None


@dataclass(frozen=True)
class InstanceConfig:
    """Everything needed to render one instance's redis.conf (no secret in here)."""

    host: str
    address: str
    port: int
    options: RedisConfigOptions = field(default_factory=RedisConfigOptions)

    @property
    def unit(self) -> str:
        return f"redis-server@{self.port}.service"

    @property
    def conf_path(self) -> str:
        return f"{self.options.conf_dir}/redis-{self.port}.conf"

    @property
    def cluster_config_file(self) -> str:
        return f"{self.options.conf_dir}/nodes-{self.port}.conf"

    @property
    def dir(self) -> str:
        return f"{self.options.data_root}/{self.port}"

    @property
    def dbfilename(self) -> str:
        return f"dump-{self.port}.rdb"

    @property
    def appendfilename(self) -> str:
        return f"appendonly-{self.port}.aof"

    @property
    def logfile(self) -> str:
        return f"{self.options.log_dir}/redis-server-{self.port}.log"

    @property
    def run_dir(self) -> str:
        return self.options.run_dir_template.format(port=self.port)

    @property
    def pidfile(self) -> str:
        return f"{self.run_dir}/redis-server.pid"


def instance_configs(layout: Layout, options: RedisConfigOptions | None = None) -> tuple[InstanceConfig, ...]:
    """One :class:`InstanceConfig` per instance, in :attr:`Layout.instances` order."""
    opts = options or RedisConfigOptions()
    return tuple(InstanceConfig(i.host, i.address, i.port, opts) for i in layout.instances)


_PASSWORD_FORBIDDEN = set(" \t\r\n\"'\\")


def validate_password(password: str) -> None:
    """Require a non-empty password that can sit verbatim inside double quotes in redis.conf.

    The message never contains the password.
    """
    if not isinstance(password, str) or not password:
        raise PlanError("the redis password is empty; requirepass and masterauth need a password")
    bad = [c for c in password if c in _PASSWORD_FORBIDDEN or not c.isprintable() or not c.isascii()]
    if bad:
        raise PlanError(
            "the redis password contains characters that redis.conf would need to escape (whitespace, "
            "quotes, backslash or non-printable/non-ASCII); use printable ASCII without those so it appears "
            "verbatim in redis.conf and can be masked"
        )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _render(config: InstanceConfig, secret_line: str) -> str:
    o = config.options
    bind = " ".join((config.address, *o.extra_bind))
    lines = [
        f"# Managed by nr (tasks/redis.py): redis-server@{config.port} on {config.host}. Do not edit by hand.",
        "# Cluster state lives in cluster-config-file and is rewritten by Redis itself; the role of this",
        "# instance (master/replica) is set at run time by nr and deliberately not part of this file.",
        f"bind {bind}",
        f"port {config.port}",
        f"protected-mode {_yes(o.protected_mode)}",
        "daemonize no",
        f"supervised {o.supervised}",
        f"pidfile {config.pidfile}",
        f"loglevel {o.loglevel}",
        f"logfile {config.logfile}",
        f"dir {config.dir}",
        f"dbfilename {config.dbfilename}",
        f"appendonly {_yes(o.appendonly)}",
        f'appendfilename "{config.appendfilename}"',
        f"appendfsync {o.appendfsync}",
        "cluster-enabled yes",
        f"cluster-config-file {config.cluster_config_file}",
        f"cluster-node-timeout {o.cluster_node_timeout_ms}",
        f"cluster-require-full-coverage {_yes(o.require_full_coverage)}",
        f"cluster-allow-replica-migration {_yes(o.allow_replica_migration)}",
        f"cluster-port {config.port + BUS_PORT_OFFSET}",
    ]
    if o.announce_address:
        lines.append(f"cluster-announce-ip {config.address}")
        lines.append(f"bind-source-addr {config.address}")
    if o.maxmemory:
        lines.append(f"maxmemory {o.maxmemory}")
    if o.maxmemory_policy:
        lines.append(f"maxmemory-policy {o.maxmemory_policy}")
    lines.extend(f"{name} {value}" for name, value in o.extra)
    lines.append(f'requirepass "{secret_line}"')
    lines.append(f'masterauth "{secret_line}"')
    return "\n".join(lines) + "\n"


def render_redis_conf(config: InstanceConfig, password: str) -> str:
    """The instance's redis.conf. ``password`` appears verbatim only in ``requirepass "…"`` and
    ``masterauth "…"`` (the last two lines), so replacing the exact string masks it in diffs."""
    validate_password(password)
    return _render(config, password)


def render_redis_conf_redacted(config: InstanceConfig) -> str:
    """The same file with ``<redacted>`` in place of the password (for previews and logs)."""
    return _render(config, REDACTED)


# ------------------------------------------------------------------------------- membership changes


@dataclass(frozen=True)
class Member:
    """A node as the running cluster sees it (input of :func:`plan_membership`)."""

    endpoint: str
    node_id: str
    role: Role
    master_id: str | None
    slots: tuple[SlotRange, ...] = ()
    # Whether this node is the layout's instance at `endpoint`. None: decide by endpoint. Set it when a stale
    # node id (an earlier incarnation of a reinstalled instance) shares the endpoint.
    in_layout: bool | None = None

    @property
    def slot_count(self) -> int:
        return count_slots(self.slots)


@dataclass(frozen=True)
class SlotMove:
    """Move ``slots`` online from master ``source`` to master ``target`` (endpoints)."""

    source: str
    target: str
    slots: tuple[SlotRange, ...]

    @property
    def count(self) -> int:
        return count_slots(self.slots)


@dataclass(frozen=True)
class Repoint:
    """Make ``replica`` replicate ``new_master``; ``current_master`` is the endpoint it follows now
    (None when it is a master without slots, e.g. a freshly started instance)."""

    replica: PlannedInstance
    current_master: str | None
    new_master: PlannedInstance


@dataclass(frozen=True)
class MembershipPlan:
    """What changes between the running cluster and the layout (after roles have been restored)."""

    new_shards: tuple[Shard, ...]
    repoints: tuple[Repoint, ...]
    slot_moves: tuple[SlotMove, ...]
    forget: tuple[Member, ...]

    @property
    def empty(self) -> bool:
        return not (self.new_shards or self.repoints or self.slot_moves or self.forget)


def plan_slot_moves(
    ownership: Mapping[str, Sequence[SlotRange]], masters: Sequence[str]
) -> tuple[SlotMove, ...]:
    """Give every master in ``masters`` that holds no slot an even share, taken proportionally from the
    masters that hold more than their even share.

    ``ownership`` maps a master to its slots; ``masters`` lists every master that should share the slots
    (existing and new). With N masters the targets are ``16384 // N`` or one more (the larger targets go to the
    masters holding most slots, so fewer slots move). The donated slots are the highest-numbered slots of each
    donor, so donors keep contiguous ranges. Returns no moves when no master is empty or no slot is assigned.
    """
    if len(set(masters)) != len(masters):
        raise PlanError("plan_slot_moves: duplicate master in the list")
    counts = {m: count_slots(ownership.get(m, ())) for m in masters}
    receivers = [m for m in masters if counts[m] == 0]
    total = sum(counts.values())
    if not receivers or total == 0:
        return ()
    n = len(masters)
    base, extra = divmod(total, n)
    by_size = sorted(masters, key=lambda m: (-counts[m], masters.index(m)))
    target = {m: base + (1 if k < extra else 0) for k, m in enumerate(by_size)}
    deficit = {m: target[m] for m in receivers}
    need = sum(deficit.values())
    surplus = {m: counts[m] - target[m] for m in masters if counts[m] > target[m]}
    available = sum(surplus.values())
    if available < need:  # cannot happen with the targets above; guard the arithmetic anyway
        raise PlanError(
            f"cannot find {need} slots for the new masters (only {available} above the even share)"
        )
    # Largest-remainder apportionment of `need` over the donors, proportional to their surplus.
    donors = [m for m in masters if m in surplus]
    shares = {m: need * surplus[m] // available for m in donors}
    remainder = need - sum(shares.values())
    for m in sorted(donors, key=lambda d: (-(need * surplus[d] % available), masters.index(d)))[:remainder]:
        shares[m] += 1
    moves: list[SlotMove] = []
    receiver_iter = iter(receivers)
    current = next(receiver_iter)
    still_needed = deficit[current]
    for donor in donors:
        give = sorted(slots_of(ownership.get(donor, ())))[counts[donor] - shares[donor] :]
        while give:
            take, give = give[:still_needed], give[still_needed:]
            moves.append(SlotMove(source=donor, target=current, slots=ranges_from_slots(take)))
            still_needed -= len(take)
            if still_needed == 0:
                nxt = next(receiver_iter, None)
                if nxt is None:
                    break
                current, still_needed = nxt, deficit[nxt]
    return tuple(moves)


def removal_error(member: Member, via: str) -> PlanError:
    """The refusal for a node that is not in the layout but still holds slots, with the way out."""
    prefix = member.node_id[:12]
    return PlanError(
        f"{member.endpoint} (node {member.node_id}) is not in the layout but is a master holding "
        f"{member.slot_count} slots ({format_ranges(member.slots)}); refusing to drop it (its keys would be "
        "lost). Move its slots away first, keeping the host in the inventory, e.g. "
        f"`REDISCLI_AUTH=… redis-cli --cluster rebalance {via} --cluster-weight {prefix}=0` (drains it) or "
        f"`redis-cli --cluster reshard {via} --cluster-from {member.node_id} --cluster-to <master id> "
        f"--cluster-slots {member.slot_count} --cluster-yes`; then remove the host from the inventory and run "
        "`nr run redis` again (it forgets the emptied instances)."
    )


def plan_membership(layout: Layout, members: Sequence[Member]) -> MembershipPlan:
    """Compare the running membership with ``layout`` (call it once every planned master is a master).

    * new shards: planned masters holding no slot while the cluster has slots -> slot moves to them;
    * repoints: planned replicas not replicating their planned master (re-rotation after a host was added
      or removed); replicas that are still masters without slots (fresh) come first, so no existing master
      is left without a replica while others are re-pointed;
    * forget: nodes not in the layout that hold no slot; a node not in the layout that holds slots is refused
      with :func:`removal_error`.
    """
    planned_endpoints = {i.endpoint for i in layout.instances}

    def planned(m: Member) -> bool:
        return m.endpoint in planned_endpoints if m.in_layout is None else m.in_layout

    by_endpoint = {m.endpoint: m for m in members if planned(m)}
    by_id = {m.node_id: m for m in members}
    via = layout.shards[0].master.endpoint
    foreign = [m for m in members if not planned(m)]
    for m in foreign:
        if m.role == "master" and m.slots:
            raise removal_error(m, via)
    for shard in layout.shards:
        got = by_endpoint.get(shard.master.endpoint)
        if got is not None and got.role != "master":
            raise PlanError(
                f"shard {shard.number}: planned master {shard.master.label} is a replica; restore roles "
                "(CLUSTER FAILOVER) before planning membership changes"
            )
        rep = by_endpoint.get(shard.replica.endpoint)
        if rep is not None and rep.role == "master" and rep.slots:
            raise PlanError(
                f"{shard.replica.label} is planned as the replica of shard {shard.number} but is a master "
                f"holding {rep.slot_count} slots; it must give its slots to a planned master before it can "
                "replicate (restore roles with CLUSTER FAILOVER on the planned master)"
            )

    ownership = {
        s.master.endpoint: by_endpoint[s.master.endpoint].slots
        for s in layout.shards
        if s.master.endpoint in by_endpoint
    }
    masters = [s.master.endpoint for s in layout.shards]
    moves = plan_slot_moves(ownership, masters)
    receiving = {mv.target for mv in moves}
    new_shards = tuple(s for s in layout.shards if s.master.endpoint in receiving)

    fresh: list[Repoint] = []
    moving: list[Repoint] = []
    for shard in layout.shards:
        rep = by_endpoint.get(shard.replica.endpoint)
        master = by_endpoint.get(shard.master.endpoint)
        if rep is not None and master is not None and rep.master_id == master.node_id:
            continue
        current = None
        if rep is not None and rep.role == "replica" and rep.master_id is not None:
            cur = by_id.get(rep.master_id)
            current = cur.endpoint if cur else rep.master_id
        (moving if current else fresh).append(Repoint(shard.replica, current, shard.master))
    forget = tuple(m for m in foreign if not (m.role == "master" and m.slots))
    return MembershipPlan(
        new_shards=new_shards, repoints=tuple(fresh + moving), slot_moves=moves, forget=forget
    )
